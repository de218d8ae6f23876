"""The formula (``salt://proxysql_ha``) applied through a real minion of a real master.

node-b gets its ``proxysql_ha`` pillar from the master, with every path the formula writes to
(the node's directories, ``libexec_dir``, ``etc_dir``) under one temporary tree, no CARP
wiring, no minion restart, and ``proxysql-ha-test`` as the receive user. The formula is
applied first with ``test=True``, then for real, then again.
"""

import hashlib
import json
import os
import stat
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.integration.conftest import NEEDS_ROOT, daemon_node, run_hook, stop_standin

pytestmark = [pytest.mark.integration, NEEDS_ROOT]

RECEIVE_USER = "proxysql-ha-test"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """The temporary tree holding everything the formula writes for node-b."""
    return tmp_path_factory.mktemp("formula-node")


@pytest.fixture(scope="module")
def b_pillar(tree, schema_file):
    pillar = daemon_node(tree, "node-b", schema_file, formula={
        "carp": "none", "restart_minion": False, "libexec_dir": str(tree / "libexec"),
        "etc_dir": str(tree / "etc"), "receive_user": RECEIVE_USER,
    }, admin={"enabled": True})  # the formula installs the MySQL client (already there: no change)
    yield pillar
    stop_standin(pillar)


@pytest.fixture(scope="module")
def ha_pillars(b_pillar):
    return {"node-b": b_pillar}


def remove_receive_user():
    subprocess.run(["userdel", RECEIVE_USER], capture_output=True, timeout=30, check=False)


@pytest.fixture(scope="module")
def receive_user_removed():
    """The receive user the formula creates is absent at first, and deleted at the end."""
    remove_receive_user()
    yield RECEIVE_USER
    remove_receive_user()


def snapshot(root):
    """``{relative path: (mode, uid, gid, sha256 of a file)}`` of everything under ``root``."""
    found = {}
    for path in [Path(root), *sorted(Path(root).rglob("*"))]:
        info = path.lstat()
        digest = (hashlib.sha256(path.read_bytes()).hexdigest()
                  if stat.S_ISREG(info.st_mode) else None)
        found[str(path.relative_to(root))] = (stat.filemode(info.st_mode), info.st_uid,
                                              info.st_gid, digest)
    return found


def user_exists(name):
    return subprocess.run(["id", name], capture_output=True, check=False).returncode == 0


def apply(minion, **kwargs):
    """``state.apply proxysql_ha`` through the minion: the process and ``{state id: result}``."""
    out = minion.salt_call_cli(timeout=300).run("state.apply", "proxysql_ha", **kwargs)
    return out, out.data if isinstance(out.data, dict) else {}


def observed(minion, tree):
    """What the formula could change: the tree, the minion's schedule and its minion.d."""
    schedule = minion.salt_call_cli(timeout=120).run("schedule.list", return_yaml=False)
    minion_d = Path(minion.config["conf_file"]).parent / "minion.d"
    return {"tree": snapshot(tree), "schedule": schedule.data,
            "minion.d": sorted(p.name for p in minion_d.iterdir()) if minion_d.is_dir() else [],
            "receive user": user_exists(RECEIVE_USER)}


@pytest.fixture(scope="module")
def dry_run(node_b, tree, receive_user_removed):
    """The formula applied with test=True on a node it never touched, and what it saw around it."""
    before = observed(node_b, tree)
    begin = time.monotonic()
    out, states = apply(node_b, test=True)
    print(f"\nstate.apply proxysql_ha test=True took {time.monotonic() - begin:.1f} s")
    return SimpleNamespace(out=out, states=states, before=before, after=observed(node_b, tree))


@pytest.fixture(scope="module")
def applied(dry_run, node_b):
    """The formula applied for real twice (after the dry run): ``(first, second)``."""
    runs = []
    for _ in range(2):
        begin = time.monotonic()
        runs.append(apply(node_b))
        print(f"\nstate.apply proxysql_ha took {time.monotonic() - begin:.1f} s")
    return runs


def test_a_dry_run_changes_nothing_on_disk_nor_in_the_schedule(dry_run):
    assert dry_run.out.returncode == 0, dry_run.out.stdout
    assert dry_run.states
    assert dry_run.after == dry_run.before


def test_a_dry_run_reports_every_state_as_passing_or_pending(dry_run):
    results = {sid: state["result"] for sid, state in dry_run.states.items()}
    assert set(results.values()) <= {True, None}, results
    assert None in results.values()


def test_applied_for_real_every_state_succeeds(applied, b_pillar):
    out, states = applied[0]
    assert out.returncode == 0, out.stdout
    failed = {sid: state["comment"] for sid, state in states.items()
              if state["result"] is not True}
    assert failed == {}
    assert user_exists(RECEIVE_USER)
    inbox = Path(b_pillar["inbox_dir"]).stat()
    assert inbox.st_uid == int(subprocess.run(["id", "-u", RECEIVE_USER], capture_output=True,
                                              text=True, check=True).stdout)
    assert stat.S_IMODE(inbox.st_mode) == 0o700
    client, = [state for sid, state in states.items() if "proxysql_ha_mysql_client" in sid]
    assert client["result"] is True and client["name"] == "mariadb-client"


def test_the_schedule_holds_the_four_jobs_with_the_roles_switches(applied, node_b):
    jobs = node_b.salt_call_cli(timeout=120).run("schedule.list", return_yaml=False).data
    assert {name: (job["function"], job["enabled"]) for name, job in jobs.items()
            if name.startswith("proxysql_ha_")} == {
        "proxysql_ha_ship": ("proxysql_ha.ship", False),  # node-b is BACKUP
        "proxysql_ha_purge": ("proxysql_ha.purge", True),
        "proxysql_ha_reconcile": ("proxysql_ha.reconcile", True),
        "proxysql_ha_check": ("proxysql_ha.check", True),
    }


def test_a_second_apply_changes_nothing(applied):
    out, states = applied[1]
    assert out.returncode == 0, out.stdout
    changed = {sid: state["changes"] for sid, state in states.items() if state["changes"]}
    assert changed == {}
    assert all(state["result"] is True for state in states.values())


@pytest.fixture(scope="module")
def installed_hook(applied, b_pillar):
    """The hook wrapper the formula installed and the configuration it wrote for it."""
    formula = b_pillar["formula"]
    return (Path(formula["libexec_dir"]) / "proxysql-ha-event",
            Path(formula["etc_dir"]) / "hook.json")


def test_the_installed_hook_refuses_another_vhid_with_exit_2(installed_hook):
    hook, conf = installed_hook

    out, hook_ms = run_hook(conf, "MASTER", "99@lo", hook=hook)

    assert out.returncode == 2
    assert "vhid 99 is not this node's (9)" in out.stderr
    print(f"\ninstalled hook refused in {hook_ms} ms")


def test_the_installed_hook_reaches_the_master_through_the_minion(installed_hook, ha_master,
                                                                  event_listener):
    hook, conf = installed_hook
    assert json.loads(conf.read_text())["vhid"] == 9
    since = time.time()

    out, hook_ms = run_hook(conf, "BACKUP", "9@lo", hook=hook, foreground=True)

    assert out.returncode == 0, out.stderr
    sent = event_listener.wait_for_events([(ha_master.id, "proxysql_ha/carp/BACKUP")],
                                          after_time=since, timeout=60)
    assert sent.found_all_events
    print(f"\ninstalled hook sent BACKUP in the foreground in {hook_ms} ms")


def test_the_installed_wrapper_finds_hook_json_in_etc_dir_by_itself(installed_hook, ha_master,
                                                                     event_listener):
    """No PROXYSQL_HA_HOOK_CONF from the caller (devd, ucarp and keepalived set none): the
    wrapper the formula wrote hands the hook ``<formula:etc_dir>/hook.json``, a non-default path."""
    hook, conf = installed_hook
    assert not str(conf).startswith(("/etc/", "/usr/local/etc/"))
    env = {k: v for k, v in os.environ.items() if k != "PROXYSQL_HA_HOOK_CONF"}
    env["PROXYSQL_HA_HOOK_FOREGROUND"] = "1"
    since = time.time()

    out = subprocess.run([str(hook), "BACKUP", "9@lo"], env=env, capture_output=True, text=True,
                         timeout=60, check=False)

    assert out.returncode == 0, out.stderr
    sent = event_listener.wait_for_events([(ha_master.id, "proxysql_ha/carp/BACKUP")],
                                          after_time=since, timeout=60)
    assert sent.found_all_events


def test_the_minion_with_its_own_root_dir_keeps_the_keys_in_etc_dir(node_b, b_pillar, applied):
    """The minion runs with a root_dir of its own; peer:identity_file and known_hosts follow
    formula:etc_dir (they were fixed under /etc/proxysql-ha before)."""
    assert node_b.config["root_dir"] != "/"
    conf = node_b.salt_call_cli(timeout=120).run("proxysql_ha.config").data
    etc = b_pillar["formula"]["etc_dir"]
    assert (conf["peer"]["identity_file"], conf["peer"]["known_hosts"]) == (
        f"{etc}/id_ed25519", f"{etc}/known_hosts")
