"""One test per guard on the failover and shipping paths: each fails when its check is removed.

``bench/mutations.py`` plants the removal of each guard in a copy of the tree and runs the fast
tests there; the guard's entry in its list names the test here that catches it.
"""

import fcntl
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from salt.exceptions import CommandExecutionError

from tests.functional.conftest import MASTER_VIP, HaNode
from standin.node import current_user_and_group

DELAYED = Path(__file__).resolve().parent / "delayed_service.py"
FLIP_VIP = "127.0.0.79"  # a VIP of this file's own on lo (the integration tests move 127.0.0.77)
SLOW = 2.0  # seconds a delayed start or stop lags behind its command


def kinds(report):
    return sorted(problem["kind"] for problem in report["problems"])


def delayed(node, delay, *verbs):
    """The node's pillar ``commands`` with ``verbs`` run ``delay`` s after their command returns."""
    commands = {verb: node.standin_argv(verb) for verb in ("start", "stop", "status")}
    for verb in verbs:
        commands[verb] = [sys.executable, str(DELAYED), str(delay), *commands[verb]]
    return commands


def wait_until(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def spoil(path):
    """Flip the last byte of ``path``: its sha256 no longer matches its manifest."""
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))


@pytest.fixture
def shipped_to_b(pair):
    """A's changed configuration shipped into B's inbox as generation 2: its name."""
    pair.a.ha.ship()
    pair.a.save_users(7)
    return pair.a.ha.ship()["name"]


# ---- backup and snapshot ------------------------------------------------------------------


def test_backup_on_a_backup_node_is_refused_and_writes_nothing(pair):
    b = pair.b

    with pytest.raises(CommandExecutionError, match="refused: this node is BACKUP"):
        b.ha.backup()

    assert b.backups() == []
    assert not (b.state_dir / "live.json").exists()


class SaveAsTheCopyBegins:
    """A ``SAVE ... TO DISK`` that lands in the live db just as the SQLite backup API starts copying.

    The module's snapshot runs in this thread; a profile hook sees the call of
    ``sqlite3.Connection.backup`` and commits a real write to the source first, once.
    """

    def __init__(self, node):
        self.node = node
        self.saved = False

    def hook(self, frame, event, arg):  # pylint: disable=unused-argument
        if (event == "c_call" and not self.saved and getattr(arg, "__name__", "") == "backup"
                and isinstance(getattr(arg, "__self__", None), sqlite3.Connection)):
            self.saved = True
            self.node.save_users(3)

    def __enter__(self):
        sys.setprofile(self.hook)
        return self

    def __exit__(self, *exc):
        sys.setprofile(None)


def test_backup_discards_a_copy_when_the_source_changed_while_copying(pair):
    a = pair.a

    with SaveAsTheCopyBegins(a) as save, pytest.raises(CommandExecutionError,
                                                       match="changed while it was copied"):
        a.ha.backup()

    assert save.saved
    assert a.backups() == []
    assert [p.name for p in a.backup_dir.iterdir()] == []  # no temporary file left either
    again = a.ha.backup()  # nothing lost: the next backup takes the saved configuration
    assert a.manifest(again["name"])["row_counts"]["mysql_users"] == 3


# ---- the lock -----------------------------------------------------------------------------


def test_an_operation_waits_for_the_lock_and_gives_up_with_a_clear_error(pair):
    a = pair.a
    a.configure(lock_timeout=0.5)
    first = a.ha.backup()
    a.save_users(4)
    fd = os.open(a.state_dir / "lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        begin = time.monotonic()
        with pytest.raises(CommandExecutionError, match="holds .*lock for more than 0.5 s"):
            a.ha.backup()
        waited = time.monotonic() - begin
    finally:
        os.close(fd)

    assert waited >= 0.5
    assert a.backups() == [first["name"]]


def test_two_promotes_at_once_restore_exactly_once(pair, node_loaders):
    a, b = pair.a, pair.b
    a.ha.ship()
    a.save_users(9)
    a.ha.ship()
    pair.fail_over()
    # a second handle on node B through the other loader: two minion processes' jobs at once
    twin = HaNode(b.node, node_loaders[a.node.name], b.vip, a.node)
    for handle in (b, twin):  # a slow start keeps each restore inside the lock for a while
        handle.configure(commands=delayed(b, 0.5, "start"))
    start = threading.Barrier(2)
    reports = {}

    def promote(key, handle):
        module = handle.ha
        start.wait(timeout=30)
        reports[key] = module.promote()

    threads = [threading.Thread(target=promote, args=(key, handle))
               for key, handle in (("b", b), ("twin", twin))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(reports) == ["b", "twin"]
    restored = [k for k, r in reports.items() if (r.get("restore") or {}).get("restored")]
    assert len(restored) == 1, reports
    other = reports["twin" if restored == ["b"] else "b"]
    assert other["acted"] is False
    assert b.shared_config() == a.shared_config()


# ---- the choice of a backup to restore -----------------------------------------------------


def test_take_over_prefers_the_inbox_to_its_own_outgoing_copies(pair):
    """A peer's copy in the inbox wins over a higher generation in this node's outgoing dir."""
    a, b = pair.a, pair.b
    older = a.ha.backup()["name"]
    from_peer = a.shared_config()
    a.save_users(9)
    newer = a.ha.backup()["name"]
    for name, directory in ((older, b.inbox_dir), (newer, b.backup_dir)):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for ext in (".db", ".json"):
            shutil.copy2(a.backup_dir / f"{name}{ext}", directory / f"{name}{ext}")
    pair.fail_over()

    report = b.ha.promote()

    assert report["restore"]["chosen"] == older
    assert b.shared_config() == from_peer


def test_after_a_split_brain_the_peers_copies_win_over_higher_own_generations(pair):
    """Copies the peer shipped since this node stepped down win, whatever their generation."""
    a, b = pair.a, pair.b
    pair.fail_over()  # B is MASTER: it numbers its own copies up to generation 3
    b.ha.promote()
    for users in (6, 7, 8):
        b.save_users(users)
        b.ha.backup()
    assert b.manifest(b.backups()[-1])["generation"] == 3
    pair.fail_over()  # B steps down; A, cut off meanwhile, ships its own generation 1
    b.ha.demote()
    a.ha.promote()
    a.save_users(11)
    shipped = a.ha.ship()
    assert shipped["shipped"] and shipped["name"] in b.backups(b.inbox_dir)
    pair.fail_over()

    report = b.ha.promote()

    assert report["restore"]["chosen"] == shipped["name"]
    assert b.shared_config() == a.shared_config()


def test_when_the_peers_copies_since_the_step_down_are_all_invalid_no_own_copy_is_restored(pair):
    """After a split brain this node's own copies are no fallback: it keeps its current database."""
    a, b = pair.a, pair.b
    a.ha.backup()
    a.save_users(9)
    stray = a.ha.backup()["name"]  # a valid copy in B's outgoing dir, newer than anything B runs
    pair.fail_over()  # B serves as MASTER for a while, then steps down
    b.ha.promote()
    pair.fail_over()
    assert b.ha.demote()["acted"]  # from now on, what arrives is the pair's configuration
    b.backup_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for ext in (".db", ".json"):
        shutil.copy2(a.backup_dir / f"{stray}{ext}", b.backup_dir / f"{stray}{ext}")
    time.sleep(0.05)
    shipped = a.ha.ship(backup=False)["name"]
    spoil(b.inbox_dir / f"{shipped}.db")
    before = b.shared_config()
    pair.fail_over()

    report = b.ha.promote()

    assert (report.get("restore") or {}).get("restored") is not True, report
    assert b.shared_config() == before
    assert b.running()


def test_restore_restarts_a_running_proxysql_so_it_serves_the_restored_db(pair, shipped_to_b):
    b = pair.b
    b.configure(stop_on_backup=False)
    assert b.standin("start").returncode == 0
    before = b.pidfile.read_text()

    report = b.ha.restore()

    assert (report["restored"], report["stopped"], report["started"]) == (True, True, True)
    assert b.running() and b.pidfile.read_text() != before


def test_a_take_over_whose_restore_fails_still_starts_proxysql_and_the_next_promote_retries(
        pair, shipped_to_b):
    a, b = pair.a, pair.b
    before = b.shared_config()
    pair.fail_over()
    b.configure(user="no-such-user-here")  # the restored file could not be given to ProxySQL

    report = b.ha.promote()

    assert any("no-such-user-here" in error for error in report["errors"]), report
    assert report["started"] is True and b.running()
    assert b.shared_config() == before
    b.configure(user=current_user_and_group()[0])  # fixed: the next promote takes over again
    again = b.ha.promote()
    assert (again["restore"]["chosen"], again["errors"]) == (shipped_to_b, [])
    assert b.shared_config() == a.shared_config()


# ---- the waits after start and stop -----------------------------------------------------------


def test_promote_returns_only_once_a_slow_start_is_up(pair):
    b = pair.b
    pair.fail_over()
    b.configure(commands=delayed(b, SLOW, "start"))

    report = b.ha.promote()

    assert (report["acted"], report["started"], report["errors"]) == (True, True, [])
    assert b.running()


def test_demote_returns_only_once_a_slow_stop_is_down(pair):
    a = pair.a
    a.ha.promote()
    assert a.running()
    pair.fail_over()
    a.configure(commands=delayed(a, SLOW, "stop"))

    report = a.ha.demote()

    assert (report["acted"], report["stopped"], report["errors"]) == (True, True, [])
    assert not a.running()


def test_a_start_that_never_comes_up_is_a_bounded_error_and_the_next_promote_retries(pair):
    b = pair.b
    pair.fail_over()
    b.configure(commands=delayed(b, "never", "start"), service={"timeout": 1})

    begin = time.monotonic()
    report = b.ha.promote()

    assert time.monotonic() - begin < 30  # service:timeout 1 s (health:grace 5 s for a restart): the wait gave up
    assert any("did not start" in error for error in report["errors"]), report
    assert not b.running()
    b.configure(commands=delayed(b, 0, "start"), service={"timeout": 15})
    again = b.ha.promote()
    assert (again["acted"], again["started"], again["errors"]) == (True, True, [])
    assert b.running()


# ---- shipping -----------------------------------------------------------------------------------


@pytest.fixture
def flip_vip():
    """``FLIP_VIP`` on lo for the test; ``remove()`` takes it away (CARP gives the node up)."""
    ip = shutil.which("ip") or "/usr/sbin/ip"
    if os.geteuid() != 0 or not os.path.exists(ip):
        pytest.skip(f"moving {FLIP_VIP} on lo needs root and iproute2's ip")

    def change(verb):
        return subprocess.run([ip, "addr", verb, f"{FLIP_VIP}/32", "dev", "lo"],
                              capture_output=True, text=True, timeout=10, check=False)

    change("del")
    added = change("add")
    assert added.returncode == 0, added.stderr
    try:
        yield lambda: change("del")
    finally:
        change("del")


def test_ship_rereads_the_role_after_the_backup_and_does_not_send_when_it_changed(pair, flip_vip):
    a, b = pair.a, pair.b
    a.vip = FLIP_VIP
    a.configure(settle=3.0, settle_timeout=20.0)
    module = a.ha  # the loader reloaded with this pillar before the save, not after it
    a.save_users(6)  # a fresh save: the backup waits a full settle window

    def give_up_the_vip_once_the_backup_started():
        if wait_until(lambda: a.backup_dir.is_dir() and any(a.backup_dir.iterdir())):
            flip_vip()

    mover = threading.Thread(target=give_up_the_vip_once_the_backup_started)
    mover.start()
    try:
        report = module.ship()
    finally:
        mover.join(timeout=30)

    assert report["backup"]["result"] == "created"
    assert (report["shipped"], report["role"]) == (False, "BACKUP")
    assert "became BACKUP" in report["comment"]
    assert b.backups(b.inbox_dir) == []


def test_ship_refuses_an_invalid_newest_backup_and_records_the_failure(pair):
    a, b = pair.a, pair.b
    name = a.ha.backup()["name"]
    spoil(a.backup_dir / f"{name}.db")

    with pytest.raises(CommandExecutionError, match=f"not shipping {name}"):
        a.ha.ship(backup=False)

    assert b.backups(b.inbox_dir) == []
    assert kinds(a.ha.status()) == ["backup_invalid", "master_proxysql_down", "ship_failed"]


def test_ship_never_replaces_a_peer_file_of_the_same_name_with_other_content(pair):
    a, b = pair.a, pair.b
    name = a.ha.backup()["name"]
    b.inbox_dir.mkdir(parents=True, mode=0o700)
    theirs = b.inbox_dir / f"{name}.db"
    theirs.write_bytes(b"the peer's own file")

    with pytest.raises(CommandExecutionError, match="exists with other content"):
        a.ha.ship(backup=False)

    assert theirs.read_bytes() == b"the peer's own file"
    assert not (b.inbox_dir / f"{name}.json").exists()


def test_a_master_never_ships_its_own_copy_older_than_the_peers_it_runs(pair):
    a, b = pair.a, pair.b
    pair.fail_over()  # B is MASTER for a while and keeps a copy of its own, generation 1
    b.ha.promote()
    b.save_users(6)
    own = b.ha.backup()["name"]
    pair.fail_over()  # A takes over and ships generations 1 and 2 into B's inbox
    b.ha.demote()
    a.ha.promote()
    a.ha.ship()
    a.save_users(9)
    a.ha.ship()
    pair.fail_over()
    assert b.ha.promote()["restore"]["generation"] == 2
    a_inbox = a.backups(a.inbox_dir)

    report = b.ha.ship(backup=False)

    assert report["name"] == own and "came from the peer" in report["comment"]
    assert report.get("shipped") is not True
    assert a.backups(a.inbox_dir) == a_inbox


# ---- status and check: each problem kind, and its absence ---------------------------------------


def healthy_master(pair):
    a = pair.a
    a.ha.promote()
    a.ha.ship()
    return a


def healthy_backup(pair):
    a, b = pair.a, pair.b
    a.ha.ship()
    b.ha.demote()
    return b


def role_unreadable(pair):
    b = healthy_backup(pair)
    b.configure(interface="nosuch0")
    return b


def proxysql_unknown(pair):
    b = healthy_backup(pair)
    commands = delayed(b, 0)
    commands["status"] = [str(b.root / "no-such-status-command")]
    b.configure(commands=commands)
    return b


def master_proxysql_down(pair):
    a = healthy_master(pair)
    assert a.standin("stop").returncode == 0
    return a


def backup_proxysql_up(pair):
    b = healthy_backup(pair)
    assert b.standin("start").returncode == 0
    return b


def backup_invalid(pair):
    a = healthy_master(pair)
    spoil(a.backup_dir / f"{a.backups()[-1]}.db")
    return a


def backup_stale(pair):
    a = healthy_master(pair)
    a.configure(stale_after=60)
    a.save_users(3)
    assert kinds(a.ha.status()) == []  # a change younger than stale_after is not stale yet
    past = time.time() - 120
    os.utime(a.live_db, (past, past))
    return a


def ship_failed(pair):
    a = healthy_master(pair)
    a.configure(peer={"transport": "local", "path": str(pair.root / "not-a-dir")})
    (pair.root / "not-a-dir").write_text("a file where the peer's inbox should be")
    a.save_users(3)
    with pytest.raises(CommandExecutionError):
        a.ha.ship()
    return a


def received_invalid(pair):
    b = healthy_backup(pair)
    spoil(b.inbox_dir / f"{b.backups(b.inbox_dir)[-1]}.db")
    return b


@pytest.mark.parametrize("make", [healthy_master, healthy_backup], ids=lambda f: f.__name__)
def test_check_finds_no_problem_on_a_healthy_node(pair, make):
    node = make(pair)

    assert kinds(node.ha.status()) == []
    assert node.ha.check() is True


@pytest.mark.parametrize("make", [
    role_unreadable, proxysql_unknown, master_proxysql_down, backup_proxysql_up,
    backup_invalid, backup_stale, ship_failed, received_invalid,
], ids=lambda f: f.__name__)
def test_check_reports_each_problem_kind_alone(pair, make):
    node = make(pair)

    report = node.ha.status()

    assert kinds(report) == [make.__name__], report["problems"]
    assert all(p["message"] for p in report["problems"])
    assert node.ha.check() is False


def test_a_backup_node_running_proxysql_is_no_problem_without_stop_on_backup(pair):
    b = healthy_backup(pair)
    b.configure(stop_on_backup=False)
    assert b.standin("start").returncode == 0

    assert kinds(b.ha.status()) == []


def test_a_master_waits_for_its_ship_to_succeed_before_check_passes_again(pair):
    a = ship_failed(pair)
    a.configure(peer={"transport": "local", "path": str(pair.b.inbox_dir)})

    a.ha.ship()

    assert kinds(a.ha.status()) == []


def test_role_read_under_the_master_vip_is_master(pair):
    """The fixture's premise, so the cases above cannot pass on a wrong role."""
    assert pair.a.vip == MASTER_VIP and pair.a.ha.role() == "MASTER"
    assert pair.b.ha.role() == "BACKUP"


# ---- ProxySQL's state from its pid file; the installed bytes are the judged ones ----

# A status command that counts its runs: a wrapper around the stand-in's status that appends
# a line to a file.
COUNT = "import subprocess, sys; open(sys.argv[1], 'a').write('x\\n'); " \
        "sys.exit(subprocess.call(sys.argv[2:]))"


def counted(node, **overrides):
    """Give ``node`` a status command that counts its runs; returns the counter's path."""
    counter = node.root / "status-calls"
    commands = {verb: node.standin_argv(verb) for verb in ("start", "stop")}
    commands["status"] = [sys.executable, "-c", COUNT, str(counter), *node.standin_argv("status")]
    node.configure(commands=commands, **overrides)
    return counter


def calls(counter):
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def test_a_stale_pid_file_falls_back_to_the_status_command(pair):
    b = pair.b
    counter = counted(b)
    b.standin("start")
    assert b.ha.status()["proxysql_running"] is True
    b.standin("stop")
    zombie = subprocess.Popen(["sleep", "0"])  # exits, not reaped until wait(): not ProxySQL
    for stale in ("999999999\n", "garbage", f"{zombie.pid}\n"):
        b.pidfile.write_text(stale)
        before = calls(counter)

        assert b.ha.status()["proxysql_running"] is False
        assert calls(counter) == before + 1, stale
    zombie.wait()


def test_a_pid_file_proxysql_never_writes_never_reads_as_stopped(pair):
    """A wrong ``pidfile`` in the pillar: ProxySQL runs, so restore stops it before installing."""
    a, b = pair.a, pair.b
    a.save_users(7)
    shipped = a.ha.ship()["name"]
    counter = counted(b, pidfile=str(b.root / "nowhere" / "proxysql.pid"))
    b.standin("start")

    report = b.ha.restore(start=True)

    assert (report["restored"], report["chosen"], report["stopped"]) == (True, shipped, True)
    assert calls(counter) >= 2  # asked before the stop, and while waiting for it
    assert b.shared_config() == a.shared_config()
    assert b.running()


def test_bytes_changed_after_judgement_are_never_installed_on_the_stale_verdict(pair):
    a, b = pair.a, pair.b
    a.save_users(5)
    older = a.ha.ship()["name"]
    a.save_users(6)
    newer = a.ha.ship()["name"]
    assert [v["valid"] for v in b.ha.list_backups()["incoming"]] == [True, True]  # judged, cached
    path = b.inbox_dir / f"{newer}.db"
    st = os.stat(path)
    with open(path, "r+b") as handle:  # same inode, same size, then the same mtime
        handle.seek(st.st_size - 1)
        last = handle.read(1)
        handle.seek(st.st_size - 1)
        handle.write(bytes([last[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    report = b.ha.restore(start=True)

    assert (report["restored"], report["chosen"]) == (True, older)
    reasons = {r["name"]: r["reason"] for r in report["rejected"]}
    assert "sha256 changed since it was judged" in reasons[newer]
    assert len(b.shared_config()["mysql_users"]) == 5
    assert b.running()
