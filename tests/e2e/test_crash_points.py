"""A crash of the salt-minion at points of promote and demote, in the two-host lab.

The lab's service gate (``Host.pause_at``) holds one of ProxySQL's service commands at a point
of a transition; the test then SIGKILLs the salt-minion, its jobs and the held command
(``Host.crash_minion``), looks at what the crash left, and starts the minion again. The pair
must converge with no second restore over a MASTER that served (ProxySQL's pid and live db
unchanged, no new ``proxysql.db.pre-restore-*``) and no lost change (one saved on the new
MASTER after it served survives the next reconcile).

Points of B's takeover (A dies): while promote reads ProxySQL's state (before the journal and
the restore), after the install (ProxySQL's start held before it runs), after ProxySQL started
(the start held after it returned, before promote records it is in office). Points of A's
hand-over (a planned switchover): ProxySQL's stop held before and after it runs.
"""

import time

import pytest

from lab.timeline import first
from tests.e2e.pair import comparable, newest_generation, state, wait_copy_of

pytestmark = pytest.mark.e2e

HELD_SECONDS = 40  # the gate to hold the command: the transition begins within CARP's detection
CONVERGE_SECONDS = 60  # the restarted minion to finish (its engine, or the 10 s reconcile job)
PROMOTE_POINTS = {
    "before the restore": ("status", "before"),
    "after the install": ("start", "before"),
    "after ProxySQL started": ("start", "after"),
}
DEMOTE_POINTS = {"before ProxySQL stopped": ("stop", "before"),
                 "after ProxySQL stopped": ("stop", "after")}


def pre_restore_copies(host):
    return sorted(p.name for p in host.node.datadir.glob("proxysql.db.pre-restore-*"))


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
def test_a_minion_killed_during_the_takeover_converges_with_one_restore(lab, summary, point):
    a, b = lab.host("a"), lab.host("b")
    shipped = b.backups()[-1]  # known_state: A's last change arrived in B's inbox
    wanted = comparable(a.config())
    before = pre_restore_copies(b)
    crash = crash_at(lab, b, *PROMOTE_POINTS[point], role="MASTER")
    died = time.time()
    a.kill()
    crash()

    left = {"journal": state(b, "transition.json"), "running": b.proxysql_running(),
            "copies": pre_restore_copies(b)}
    if point == "before the restore":
        assert left["journal"].get("restoring") in (None, shipped)  # state(): {} when absent
        assert left["copies"] == before and not left["running"]
    else:  # the copy is live; the journal says a takeover is under way
        assert left["journal"]["transition"] == "promote" and left["journal"]["restoring"] == shipped
        assert len(left["copies"]) == len(before) + 1
        assert left["running"] is (point == "after ProxySQL started")
    inode = live_inode(b) if left["copies"] != before else None
    pid = saved_users = None
    if left["running"]:  # B serves: ProxySQL saves a change before the minion is back
        pid = proxysql_pid(b)
        b.save_change()
        saved_users = users(b)

    restarted = time.time()
    b.start_minion()
    lab.wait_until(lambda: in_office(b), CONVERGE_SECONDS, "B to finish the takeover")

    copies = pre_restore_copies(b)
    assert len(copies) == len(before) + 1, "one restore, never a second one"
    if inode is not None:
        assert live_inode(b) == inode, "the live db is still the one installed before the crash"
    if left["running"]:
        assert proxysql_pid(b) == pid and users(b) == saved_users
        finished = first(b.events("proxysql_ha/promoted"), restarted)
        assert finished is None or "restore" not in finished["data"]
    else:
        assert comparable(b.config()) == wanted
        b.save_change()
    reconcile_keeps(b, users(b), copies, live_inode(b), proxysql_pid(b))
    summary(f"promote crash {point}: A died -> B in office {time.time() - died:.1f} s "
            f"(minion restarted {restarted - died:.1f} s after A died)")


@pytest.mark.parametrize("point", DEMOTE_POINTS)
def test_a_minion_killed_during_the_hand_over_converges(lab, summary, point):
    a, b = lab.host("a"), lab.host("b")
    wanted = comparable(a.config())
    copies, inode = pre_restore_copies(a), live_inode(a)
    crash = crash_at(lab, a, *DEMOTE_POINTS[point], role="BACKUP")
    asked = time.time()
    a.step_down()
    crash()

    journal = state(a, "transition.json")
    assert journal["transition"] == "demote" and journal["stepped_down"] >= asked - 1
    assert a.proxysql_running() is (point == "before ProxySQL stopped")

    a.start_minion()
    lab.wait_until(lambda: stood_down(a), CONVERGE_SECONDS, "A to finish the hand-over")
    lab.wait_until(lambda: in_office(b), CONVERGE_SECONDS, "B to take over")

    assert state(a, "role.json")["since"] == journal["stepped_down"], "the crash kept the step-down time"
    assert pre_restore_copies(a) == copies and live_inode(a) == inode  # nothing restored on A
    assert comparable(b.config()) == wanted  # A's last change is B's
    since = newest_generation(a)
    saved = b.save_change()
    wait_copy_of(lab, a, saved, since)  # the pair ships again: A takes B's copies
    summary(f"demote crash {point}: switchover -> A stood down {time.time() - asked:.1f} s")
