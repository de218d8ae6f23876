"""
``make mutations``: plant each guard's removal in a copy of the tree and run the fast tests there.

    python -m bench.mutations [--list] [--only NAME ...] [--timeout SECONDS]

Each mutation names a file, an exact snippet (found exactly once), its replacement, and the
guard it removes. For each one the tracked and new files of the repository (``git ls-files``)
are copied into a temporary directory beside a link to ``../shared``, the snippet is replaced
there (the working tree is never touched), and the tests run in the copy: first the tests that
should catch it (``catch``), then, when those pass, the unit and functional suites
(``-x -q -p no:cacheprovider``), each run within ``--timeout`` seconds. A mutation the tests do
not fail on *survived*; one whose snippet is not found exactly once is *stale* (the code moved:
refresh the snippet). Exit 0 only when every mutation was caught.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODULE = "_modules/proxysql_ha.py"
CONTROL = "_utils/proxysql_ha_proxysql.py"
GUARDS = "tests/functional/test_guards.py"
FAST_SUITES = ("tests/unit", "tests/functional")


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str
    snippet: str
    replacement: str
    guard: str
    catch: tuple  # the tests that should catch it, run first
    timeout: float = None  # seconds for those tests, when a caught mutation makes them hang


def _g(test):
    """A test of tests/functional/test_guards.py, as a pytest node id."""
    return f"{GUARDS}::{test}"


MUTATIONS = (
    Mutation("ship_no_role_reread", MODULE,
             'comment=f"not shipped: this node became {current}")\n                return report',
             'comment=f"not shipped: this node became {current}")',
             "ship re-reads the role after its backup, just before sending",
             catch=(_g("test_ship_rereads_the_role_after_the_backup_and_does_not_send_when_it_changed"),)),
    Mutation("backup_on_any_role", MODULE,
             'if current != "MASTER":\n            raise CommandExecutionError(\n'
             '                f"refused: this node is {current}; only the MASTER\'s database',
             'if False:\n            raise CommandExecutionError(\n'
             '                f"refused: this node is {current}; only the MASTER\'s database',
             "backup() refuses unless the node is MASTER",
             catch=(_g("test_backup_on_a_backup_node_is_refused_and_writes_nothing"),)),
    Mutation("snapshot_change_unchecked", "_utils/proxysql_ha_sqlite.py",
             "if changed or after != before:", "if False:",
             "the snapshot is discarded when the source changed while it was copied",
             catch=(_g("test_backup_discards_a_copy_when_the_source_changed_while_copying"),)),
    Mutation("no_backup_stale_alert", MODULE,
             "if master and stale:", "if False:",
             "check reports backup_stale",
             catch=(_g("test_check_reports_each_problem_kind_alone[backup_stale]"),)),
    Mutation("no_wait_after_start", CONTROL,
             "    start_command()\n    wait_serving(status, address, timeout, poll=poll or POLL)",
             "    start_command()",
             "ProxySQL's start is waited for",
             catch=(_g("test_promote_returns_only_once_a_slow_start_is_up"),)),
    Mutation("no_wait_after_stop", CONTROL,
             "    stop_command()\n    wait_stopped(status, timeout)", "    stop_command()",
             "ProxySQL's stop is waited for",
             catch=(_g("test_demote_returns_only_once_a_slow_stop_is_down"),)),
    Mutation("no_lock", MODULE,
             "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)", "pass",
             "every change on a node takes the lock",
             catch=(_g("test_an_operation_waits_for_the_lock_and_gives_up_with_a_clear_error"), _g("test_two_promotes_at_once_restore_exactly_once"),)),
    Mutation("outgoing_before_inbox", MODULE,
             'for directory in (conf["inbox_dir"], conf["backup_dir"]):',
             'for directory in (conf["backup_dir"], conf["inbox_dir"]):',
             "the choice of a backup tries the inbox before the outgoing dir",
             catch=(_g("test_take_over_prefers_the_inbox_to_its_own_outgoing_copies"),)),
    Mutation("split_brain_rule_ignored", MODULE,
             'stepped_down=facts["recorded"].get("since"))',
             "stepped_down=None)",
             "copies the peer shipped since this node stepped down win over its own generations",
             catch=(_g("test_after_a_split_brain_the_peers_copies_win_over_higher_own_generations"),)),
    Mutation("no_role_unreadable", MODULE,
             'problems.append({"kind": "role_unreadable", "message": str(exc)})', "pass",
             "check reports role_unreadable",
             catch=(_g("test_check_reports_each_problem_kind_alone[role_unreadable]"),)),
    Mutation("no_proxysql_unknown", MODULE,
             'report["proxysql_running"] = None\n        problems.append({"kind": "proxysql_unknown", "message": str(exc)})',
             'report["proxysql_running"] = None',
             "check reports proxysql_unknown",
             catch=(_g("test_check_reports_each_problem_kind_alone[proxysql_unknown]"),)),
    Mutation("no_master_proxysql_down", MODULE,
             "if master and running is False:", "if False:",
             "check reports master_proxysql_down",
             catch=(_g("test_check_reports_each_problem_kind_alone[master_proxysql_down]"),)),
    Mutation("no_backup_proxysql_up", MODULE,
             'if report["role"] in ("BACKUP", "INIT") and running and conf["stop_on_backup"]:',
             "if False:",
             "check reports backup_proxysql_up",
             catch=(_g("test_check_reports_each_problem_kind_alone[backup_proxysql_up]"),)),
    Mutation("backup_proxysql_up_ignores_stop_on_backup", MODULE,
             'and running and conf["stop_on_backup"]:', "and running:",
             "a BACKUP running ProxySQL is no problem without stop_on_backup",
             catch=(_g("test_a_backup_node_running_proxysql_is_no_problem_without_stop_on_backup"),)),
    Mutation("no_backup_invalid", MODULE,
             'if master and newest and not newest["valid"]:', "if False:",
             "check reports backup_invalid",
             catch=(_g("test_check_reports_each_problem_kind_alone[backup_invalid]"),)),
    Mutation("no_ship_failed", MODULE,
             'if master and last and not last.get("ok"):', "if False:",
             "check reports ship_failed",
             catch=(_g("test_check_reports_each_problem_kind_alone[ship_failed]"),)),
    Mutation("no_received_invalid", MODULE,
             'if received and not received["valid"]:', "if False:",
             "check reports received_invalid",
             catch=(_g("test_check_reports_each_problem_kind_alone[received_invalid]"),)),
    Mutation("ship_invalid_newest", MODULE,
             'if not verdict["valid"]:\n        _record_ship(', 'if False:\n        _record_ship(',
             "ship refuses a newest backup that fails verification",
             catch=(_g("test_ship_refuses_an_invalid_newest_backup_and_records_the_failure"),)),
    Mutation("ship_replaces_peer_file", MODULE,
             'raise CommandExecutionError(f"{existing} exists with other content: not replaced")',
             "pass",
             "a local ship never replaces a peer's file of the same name with other content",
             catch=(_g("test_ship_never_replaces_a_peer_file_of_the_same_name_with_other_content"),)),
    Mutation("ship_back_peer_configuration", MODULE,
             'if _u("proxysql_ha_store.parse_name")(base)[0] < live_generation:', "if False:",
             "a MASTER running the peer's newer configuration does not ship its own older copy",
             catch=(_g("test_a_master_never_ships_its_own_copy_older_than_the_peers_it_runs"),)),
    Mutation("wait_without_deadline", CONTROL,
             "if clock() >= deadline:\n            where =",
             "if False:\n            where =",
             "the wait for ProxySQL's start or stop gives up after service:timeout",
             catch=(_g("test_a_start_that_never_comes_up_is_a_bounded_error_and_the_next_promote_retries"),),
             timeout=120),
    Mutation("restore_without_stop", MODULE,
             'report["stopped"] = _stop(conf, running)', 'report["stopped"] = False',
             "restore stops a running ProxySQL before it replaces the live database",
             catch=(_g("test_restore_restarts_a_running_proxysql_so_it_serves_the_restored_db"),)),
    Mutation("own_copy_after_invalid_peer_copies", MODULE,
             "break  # the peer's newer copies are all invalid", "pass",
             "after a split brain, no own copy replaces the peer's invalid ones",
             catch=(_g("test_when_the_peers_copies_since_the_step_down_are_all_invalid_no_own_copy_is_restored"),)),
    Mutation("no_start_after_a_failed_restore", MODULE,
             '_start(conf, running=False if restored else running,',
             'restored and _start(conf, running=False,',
             "a take-over whose restore failed still starts ProxySQL on the current database",
             catch=(_g("test_a_take_over_whose_restore_fails_still_starts_proxysql_and_the_next_promote_retries"),)),
    Mutation("failed_promote_not_retried", MODULE,
             'if plan["takeover"] and up and not report.get("restore_failed"):', 'if plan["takeover"]:',
             "a promote that failed is tried again by the next one",
             catch=(_g("test_a_take_over_whose_restore_fails_still_starts_proxysql_and_the_next_promote_retries"),)),
    Mutation("absent_pid_file_trusted_unseen", MODULE,
             'if state == "absent" and _pidfile_known(conf, pidfile):', 'if state == "absent":',
             "no pid file reads as stopped only where ProxySQL was seen writing it",
             catch=(_g("test_a_pid_file_proxysql_never_writes_never_reads_as_stopped"),)),
    Mutation("stale_pid_file_trusted", MODULE,
             'if state == "running":', 'if state in ("running", "stale"):',
             "a stale pid file is decided by the status command",
             catch=(_g("test_a_stale_pid_file_falls_back_to_the_status_command"),)),
    Mutation("judged_sha256_not_rechecked", "_utils/proxysql_ha_sqlite.py",
             "if hashlib.sha256(data).hexdigest() != sha256:", "if False:",
             "the installed bytes are the ones judged (sha256 checked right before the install)",
             catch=(_g("test_bytes_changed_after_judgement_are_never_installed_on_the_stale_verdict"),)),
)


def stale(tree=REPO, mutations=MUTATIONS):
    """``{name: count}`` of the mutations whose snippet is not found exactly once in ``tree``."""
    found = {}
    for mutation in mutations:
        count = (Path(tree) / mutation.path).read_text(encoding="utf-8").count(mutation.snippet)
        if count != 1:
            found[mutation.name] = count
    return found


def plant(tree, mutation):
    """Replace the mutation's snippet in ``tree`` (a copy): it must be found exactly once."""
    path = Path(tree) / mutation.path
    text = path.read_text(encoding="utf-8")
    if text.count(mutation.snippet) != 1:
        raise ValueError(f"{mutation.name}: snippet found {text.count(mutation.snippet)} times in {path}")
    path.write_text(text.replace(mutation.snippet, mutation.replacement), encoding="utf-8")


def tracked_files(repo=REPO):
    """The repository's files as git knows them: tracked, and new ones not ignored."""
    out = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others",
                          "--exclude-standard"], capture_output=True, check=True, timeout=60)
    return sorted({name for name in out.stdout.decode().split("\0") if name})


def copy_tree(dest, repo=REPO):
    """Copy the repository's files into ``dest/repo`` with ``dest/shared`` linked to ``../shared``."""
    target = Path(dest) / "repo"
    for name in tracked_files(repo):
        source = Path(repo) / name
        if not source.is_file():  # deleted in the work tree, not yet in git
            continue
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / name, follow_symlinks=False)
    shared = Path(repo).resolve().parent / "shared"
    if shared.is_dir():
        os.symlink(shared, Path(dest) / "shared")
    return target


def run_tests(tree, paths, timeout):
    """``(outcome, seconds, tail)``: "passed", "failed" or "timeout" of pytest on ``paths``.

    pytest runs in a session of its own: on a time-out the whole session (stand-ins and
    other daemons a hanging test started) is killed, not pytest alone.
    """
    argv = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *paths]
    begin = time.monotonic()
    with subprocess.Popen(argv, cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, start_new_session=True) as proc:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return "timeout", time.monotonic() - begin, [f"no result within {timeout:g} s"]
    outcome = "passed" if proc.returncode == 0 else "failed"
    return outcome, time.monotonic() - begin, out.strip().splitlines()[-1:] or [""]


def baseline(mutations, timeout):
    """Run every mutation's catching tests on an unmutated copy: they must pass for a verdict to mean anything."""
    paths = sorted({test for m in mutations for test in m.catch})
    with tempfile.TemporaryDirectory(prefix="proxysql-ha-mutation-") as scratch:
        return run_tests(copy_tree(scratch), paths, timeout)


def try_mutation(mutation, timeout):
    """Plant ``mutation`` in a fresh copy; "caught" (with the stage that caught it) or "survived"."""
    with tempfile.TemporaryDirectory(prefix="proxysql-ha-mutation-") as scratch:
        tree = copy_tree(scratch)
        plant(tree, mutation)
        for stage, paths in (("catch", mutation.catch), ("fast suites", FAST_SUITES)):
            limit = mutation.timeout if stage == "catch" and mutation.timeout else timeout
            outcome, seconds, tail = run_tests(tree, paths, limit)
            if outcome != "passed":
                return {"verdict": "caught", "by": f"{stage} ({outcome})", "seconds": round(seconds, 1),
                        "tail": tail}
        return {"verdict": "survived", "by": None, "seconds": round(seconds, 1), "tail": tail}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutations")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds each test run may take (default 900)")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    if args.list:
        for m in chosen:
            print(f"{m.name:45} {m.path}: {m.guard}")
        return 0
    unknown = set(args.only or ()) - {m.name for m in MUTATIONS}
    if unknown:
        parser.error(f"unknown mutation(s): {', '.join(sorted(unknown))}")
    broken = stale(mutations=chosen)
    outcome, seconds, tail = baseline([m for m in chosen if m.name not in broken], args.timeout)
    print(f"baseline (no mutation): the catching tests {outcome} in {seconds:.1f} s", flush=True)
    if outcome != "passed":
        print(f"the unmutated tree fails its own tests: {tail}; no verdict", flush=True)
        return 2
    results = {}
    for m in chosen:
        if m.name in broken:
            print(f"STALE     {m.name}: snippet found {broken[m.name]} times in {m.path}", flush=True)
            continue
        results[m.name] = result = try_mutation(m, args.timeout)
        print(f"{result['verdict'].upper():9} {m.name} ({m.guard}) in {result['seconds']} s"
              + (f", by {result['by']}" if result["by"] else ""), flush=True)
    survivors = [name for name, r in results.items() if r["verdict"] == "survived"]
    print(f"\n{len(chosen)} mutations: {len(results) - len(survivors)} caught, "
          f"{len(survivors)} survived{': ' + ', '.join(survivors) if survivors else ''}, "
          f"{len(broken)} stale{': ' + ', '.join(broken) if broken else ''}")
    return 1 if survivors or broken else 0


if __name__ == "__main__":
    sys.exit(main())
