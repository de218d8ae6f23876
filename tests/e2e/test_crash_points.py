"""A crash of the salt-minion at points of promote and demote, in the two-host lab.

The lab's service gate (``Host.pause_at``) holds one of ProxySQL's service commands at a point
of a transition; the test then SIGKILLs the salt-minion with everything it forked
(``Host.crash_minion``: its jobs, their children, the held command), looks at what the crash
left, and starts the minion again. The pair must converge with no second restore over a MASTER
that served (ProxySQL's pid and live db unchanged, no new ``proxysql.db.pre-restore-*``) and no
lost change (one saved on the new MASTER after it served survives the next reconcile).

Points of the BACKUP's takeover: while promote reads ProxySQL's state (before the journal and
the restore), after the install (ProxySQL's start held before it runs), after ProxySQL started
(the start held after it returned, before promote records it is in office). Points of the
MASTER's hand-over: ProxySQL's stop held before and after it runs.

Cost: every point is one planned switchover (the MASTER's ucarp steps down). The takeover is
the same for the BACKUP as when the MASTER dies (its up-script, the relay, promote from its
inbox; a MASTER that steps down ships nothing more), but no dead host has to be revived (a
salt-minion start) after it. Each test starts from the pair as the one before left it,
whichever host is MASTER (``known_state(lab, either=True)``), not switched back to A.
"""

import os
import sys
import time

import pytest

from lab import netns
from lab.netns import LabUnavailable, require
from lab.timeline import first
from tests.e2e.pair import comparable, known_state, newest_generation, state, wait_copy_of

pytestmark = pytest.mark.e2e

HELD_SECONDS = 40  # the gate to hold the command: the transition begins within CARP's detection
CONVERGE_SECONDS = 60  # the restarted minion to finish (the reconcile its start runs, or its engine)
PROMOTE_POINTS = {
    "before the restore": ("status", "before"),
    "after the install": ("start", "before"),
    "after ProxySQL started": ("start", "after"),
}
DEMOTE_POINTS = {"before ProxySQL stopped": ("stop", "before"),
                 "after ProxySQL stopped": ("stop", "after")}
# A minion's process tree in small: a child, a job detached as Salt detaches one (a session of
# its own, the minion's command line) with a child of its own, and a daemon detached as
# ProxySQL's start detaches it (a double fork, its own command line). Written to argv[1] once up.
TREE = """
import os, subprocess, sys, time

def detached(argv):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execvp(argv[0], argv)
        os._exit(0)
    os.wait()

subprocess.Popen(["sleep", "300"])
detached([sys.executable, "-c", "import subprocess; subprocess.run(['sleep', '301'])", sys.argv[2]])
detached(["sleep", "302"])
time.sleep(0.5)
open(sys.argv[1], "w").write("up")
time.sleep(300)
"""


@pytest.fixture
def pair(shared_lab):
    """``(lab, MASTER, BACKUP)``: the lab repaired, either host MASTER, its last change shipped."""
    return (shared_lab, *known_state(shared_lab, either=True))


def test_a_crash_kills_the_process_tree_and_spares_a_daemon_it_started(tmp_path):
    try:
        require()
    except LabUnavailable as exc:
        pytest.skip(f"no network namespaces here: {exc}")
    namespace, marker = f"phacrash-{os.getpid()}", str(tmp_path / "minion-config")
    script, up = tmp_path / "tree.py", tmp_path / "up"
    script.write_text(TREE, encoding="utf-8")
    netns.add(namespace)
    try:
        root = netns.Process(namespace, [sys.executable, script, up, marker], tmp_path / "tree.log").start()
        deadline = time.monotonic() + 30
        while not up.exists() and root.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert up.exists(), (tmp_path / "tree.log").read_text(encoding="utf-8")
        before = {pid: netns.cmdline(pid) for pid in netns.pids(namespace)}
        assert len(before) == 5, before  # the root, its sleep, the job and its sleep, the daemon

        assert netns.crash(root, marker) == []  # every one of them gone, reaped too

        left = {pid: netns.cmdline(pid) for pid in netns.pids(namespace)}
        assert list(left.values()) == [b"sleep\x00302\x00"], left
        assert not root.running()
    finally:
        netns.delete(namespace)


def pre_restore_copies(host):
    return sorted(p.name for p in host.node.datadir.glob("proxysql.db.pre-restore-*"))


def restored_since(host, copies):
    """The ``proxysql.db.pre-restore-*`` of ``host`` that are not in ``copies``: one per restore."""
    return sorted(set(pre_restore_copies(host)) - set(copies))


def live_inode(host):
    return host.node.live_db.stat().st_ino


def proxysql_pid(host):
    return int(host.node.pidfile.read_text(encoding="utf-8").split()[0])


def users(host):
    return {row[0] for row in host.config()["mysql_users"]}


def in_office(host):
    """MASTER, ProxySQL running, no unfinished transition, role.json says MASTER."""
    return (host.role() == "MASTER" and host.proxysql_running()
            and not state(host, "transition.json") and state(host, "role.json").get("role") == "MASTER")


def stood_down(host):
    return (host.role() == "BACKUP" and not host.proxysql_running()
            and not state(host, "transition.json") and state(host, "role.json").get("role") == "BACKUP")


def crash_at(lab, host, verb, when, role):
    """Arm the pause; return a function that waits for it to hold, then crashes ``host``'s minion."""
    if verb == "status":  # the module forks the status command only where the pid file does not
        (host.node.state_dir / "pidfile.json").unlink(missing_ok=True)  # decide: as on a new node
    host.pause_at(verb, when, role)

    def crash():
        held = lab.wait_until(host.paused, HELD_SECONDS, f"{host.minion_id}'s {verb} to be held {when}")
        host.crash_minion()
        return held

    return crash


def reconcile_keeps(host, saved_users, copies, inode, pid):
    """A reconcile after convergence: nothing to do, the change kept, nothing restored."""
    ret, _ = host.salt_call("proxysql_ha.reconcile")
    assert ret["would_run"] is None, ret
    assert users(host) == saved_users
    assert pre_restore_copies(host) == copies and live_inode(host) == inode
    assert proxysql_pid(host) == pid


@pytest.mark.parametrize("point", PROMOTE_POINTS)
def test_a_minion_killed_during_the_takeover_converges_with_one_restore(pair, summary, point):
    lab, master, backup = pair
    shipped = backup.backups()[-1]  # known_state: the MASTER's last change arrived in its inbox
    wanted = comparable(master.config())
    before = pre_restore_copies(backup)
    crash = crash_at(lab, backup, *PROMOTE_POINTS[point], role="MASTER")
    asked = time.time()
    master.step_down()  # the BACKUP's takeover, as when the MASTER dies, without a host to revive
    crash()

    left = {"journal": state(backup, "transition.json"), "running": backup.proxysql_running(),
            "restored": restored_since(backup, before)}  # the oldest copies go (keep_pre_restore)
    if point == "before the restore":
        assert left["journal"].get("restoring") in (None, shipped)  # state(): {} when absent
        assert not left["restored"] and not left["running"]
    else:  # the copy is live; the journal says a takeover is under way
        assert left["journal"]["transition"] == "promote" and left["journal"]["restoring"] == shipped
        assert len(left["restored"]) == 1
        assert left["running"] is (point == "after ProxySQL started")
    inode = live_inode(backup) if left["restored"] else None
    pid = saved_users = None
    if left["running"]:  # it serves: ProxySQL saves a change before the minion is back
        pid = proxysql_pid(backup)
        backup.save_change()
        saved_users = users(backup)

    restarted = time.time()
    backup.start_minion()
    lab.wait_until(lambda: in_office(backup), CONVERGE_SECONDS,
                   f"{backup.minion_id} to finish the takeover")

    restored = restored_since(backup, before)
    assert len(restored) == 1 and set(left["restored"]) <= set(restored), "one restore, never a second"
    if inode is not None:
        assert live_inode(backup) == inode, "the live db is still the one installed before the crash"
    if left["running"]:
        assert proxysql_pid(backup) == pid and users(backup) == saved_users
        finished = first(backup.events("proxysql_ha/promoted"), restarted)
        assert finished is None or "restore" not in finished["data"]
    else:
        assert comparable(backup.config()) == wanted
        backup.save_change()
    reconcile_keeps(backup, users(backup), pre_restore_copies(backup), live_inode(backup),
                    proxysql_pid(backup))
    summary(f"promote crash {point}: switchover -> {backup.minion_id} in office "
            f"{time.time() - asked:.1f} s (minion restarted {restarted - asked:.1f} s after)")


@pytest.mark.parametrize("point", DEMOTE_POINTS)
def test_a_minion_killed_during_the_hand_over_converges(pair, summary, point):
    lab, master, backup = pair
    wanted = comparable(master.config())
    copies, inode = pre_restore_copies(master), live_inode(master)
    crash = crash_at(lab, master, *DEMOTE_POINTS[point], role="BACKUP")
    asked = time.time()
    master.step_down()
    crash()

    journal = state(master, "transition.json")
    assert journal["transition"] == "demote" and journal["stepped_down"] >= asked - 1
    assert master.proxysql_running() is (point == "before ProxySQL stopped")

    master.start_minion()
    lab.wait_until(lambda: stood_down(master), CONVERGE_SECONDS,
                   f"{master.minion_id} to finish the hand-over")
    lab.wait_until(lambda: in_office(backup), CONVERGE_SECONDS, f"{backup.minion_id} to take over")

    assert state(master, "role.json")["since"] == journal["stepped_down"], "the crash kept the step-down time"
    assert pre_restore_copies(master) == copies and live_inode(master) == inode  # nothing restored
    assert comparable(backup.config()) == wanted  # the old MASTER's last change is the new one's
    since = newest_generation(master)
    saved = backup.save_change()
    wait_copy_of(lab, master, saved, since)  # the pair ships again: the old MASTER takes its copies
    summary(f"demote crash {point}: switchover -> {master.minion_id} stood down "
            f"{time.time() - asked:.1f} s")
