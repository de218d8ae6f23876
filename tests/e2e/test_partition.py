"""
Network partitions in the two-host lab: B's port leaves the bridge (``cut_link``), so A and B
no longer hear each other's CARP adverts nor reach each other's sshd.

A split brain makes both MASTER; when the link returns, ucarp sends one back to BACKUP (A, with
the lower advskew, wins in this lab; the tests follow whichever wins). A flapping link must leave
the pair consistent with its final roles.
"""

import shutil
import time

import pytest

from lab.timeline import first, stepped
from tests.e2e.pair import (
    ARRIVAL_SECONDS,
    TAKEOVER_SECONDS,
    active,
    change_arrives,
    comparable,
    copy_config,
    ms,
    switch_over,
    wait_takeover,
)

pytestmark = pytest.mark.e2e

ALERT_SECONDS = 20  # each side's ship to fail (connect timeout 2 s) and its alert to be seen
CUTS = (1.0, 5.0)  # seconds a flap keeps the link cut: B's ucarp takes over after about 4.2 s
UP_SECONDS = 1.5  # seconds between a flap's restore and the next cut
FLAPS = 10


def test_split_brain_alerts_on_both_and_the_winner_keeps_its_configuration(lab, summary):
    a, b = lab.host("a"), lab.host("b")
    cut = time.time()
    b.cut_link()
    try:
        saved, split_at = _split_brain(lab, cut)
        checks = {h.name: h.salt_call("proxysql_ha.check", local=True) for h in (a, b)}
        statuses = {h.name: h.salt_call("proxysql_ha.status", local=True)[0] for h in (a, b)}
        lab.wait_until(lambda: _alerted(a, split_at) and _alerted(b, split_at), ALERT_SECONDS,
                       "the ship_failed alert on both minions' buses")
    finally:
        b.restore_link()
    healed = time.time()
    winner, loser = _wait_settled(lab)
    settled = time.time()
    assert checks == {a.name: (False, 1), b.name: (False, 1)}
    assert all("ship_failed" in _kinds(s) for s in statuses.values())
    newest = winner.backups("outgoing")[-1]
    lab.wait_until(lambda: newest in loser.backups(), ARRIVAL_SECONDS,
                   f"the winner's newest copy {newest} in {loser.minion_id}'s inbox")
    received = time.time()
    assert comparable(copy_config(loser, newest)) == comparable(saved[winner.name])
    _deliver_late_copy(loser, winner)
    winner.salt_call("proxysql_ha.reconcile")
    status, _ = winner.salt_call("proxysql_ha.status")
    assert comparable(winner.config()) == comparable(saved[winner.name])
    assert (status["live"]["name"], status["live"]["node"]) == (newest, winner.minion_id)
    summary(f"split brain: B MASTER {ms(stepped(b, cut, 'up') - cut)} after the cut; "
            f"{winner.name.upper()} won, {loser.name.upper()} BACKUP {ms(settled - healed)} after "
            f"the link returned; the winner's copy on the loser {ms(received - healed)} after it")


def test_after_a_split_brain_the_loser_takes_over_with_the_winner_newest_configuration(
        lab, summary):
    a, b = lab.host("a"), lab.host("b")
    cut = time.time()
    b.cut_link()
    a.stop_sshd()  # none of B's split-era copies reaches A, even in the moment the link returns
    try:
        _split_brain(lab, cut)
    finally:
        b.restore_link()
    try:
        winner, loser = _wait_settled(lab)
    finally:
        a.start_sshd()
    after, copy, _ = change_arrives(lab, winner, loser)
    asked = switch_over(lab, winner, loser)
    status, _ = loser.salt_call("proxysql_ha.status")
    print(f"{loser.minion_id} live: {status['live']}; its inbox: {loser.backups()}; "
          f"its own copies: {loser.backups('outgoing')}")
    assert _users(loser.config()) == _users(after), \
        f"{loser.minion_id} took over with its own split-era configuration, not {copy}"
    assert comparable(loser.config()) == comparable(after)
    assert (status["live"]["name"], status["live"]["node"]) == (copy, winner.minion_id)
    summary(f"after a split brain: {loser.name.upper()} runs {winner.name.upper()}'s newest "
            f"configuration {ms(loser.loaded()['started'] - asked)} after the switchover began")


def _split_brain(lab, cut):
    """
    With B cut off since ``cut``: wait until B took over too, save a change on A and two on B
    (B's own copies get ahead of A's in generation), each until shipping it failed. Returns the
    configurations saved last on each side ({host name: config}) and when the split began.
    """
    a, b = lab.host("a"), lab.host("b")
    wait_takeover(lab, b, cut)
    split_at = time.time()
    saved = {a.name: _saved_unshipped(lab, a)}
    _saved_unshipped(lab, b)
    saved[b.name] = _saved_unshipped(lab, b)
    return saved, split_at


def _saved_unshipped(lab, host):
    """Save a change on ``host`` and wait until shipping it failed; return the configuration."""
    saved_at = time.time()
    saved = host.save_change()
    lab.wait_until(lambda: _ship_failed(host, saved_at), ALERT_SECONDS,
                   f"{host.minion_id}'s ship to fail")
    return saved


def _wait_settled(lab):
    a, b = lab.host("a"), lab.host("b")
    return lab.wait_until(lambda: _settled(a, b), TAKEOVER_SECONDS,
                          "one MASTER with ProxySQL, the other BACKUP without")


def _users(config):
    return {row[0] for row in config["mysql_users"]}


def _kinds(status):
    return [p["kind"] for p in status["problems"]]


def _ship_failed(host, since):
    return first(host.events("proxysql_ha/ship/failed"), since)


def _alerted(host, since):
    return first(host.events("proxysql_ha/alert/ship_failed"), since)


def _settled(a, b):
    """``(MASTER, BACKUP)`` once one runs ProxySQL as MASTER and the other is BACKUP without it."""
    if active(a, b):
        return a, b
    if active(b, a):
        return b, a
    return None


def _deliver_late_copy(loser, winner):
    """
    Put the loser's newest split-era copy into the winner's inbox, as when the loser's last ship
    retry gets through just before it hears the winner's adverts and steps back to BACKUP.
    """
    name = loser.backups("outgoing")[-1]
    for suffix in (".db", ".json"):
        shutil.copy2(loser.node.backup_dir / f"{name}{suffix}",
                     winner.node.inbox_dir / f"{name}{suffix}")


def test_a_flapping_link_leaves_one_master_running_proxysql_and_shipping(lab, summary):
    a, b = lab.host("a"), lab.host("b")
    began = time.time()
    for flap in range(FLAPS):
        b.cut_link()
        time.sleep(CUTS[flap % len(CUTS)])
        b.restore_link()
        time.sleep(UP_SECONDS)
    flapped = time.time()
    master, backup = lab.wait_until(lambda: _settled(a, b), TAKEOVER_SECONDS,
                                    "one MASTER with ProxySQL, the other BACKUP without")
    settled = time.time()
    _, _, seconds = change_arrives(lab, master, backup)
    assert _settled(a, b) == (master, backup)
    ups = [t for t, d in b.transitions() if t >= began and d == "up"]
    summary(f"flapping link: {FLAPS} cuts in {flapped - began:.1f} s, B's ucarp went MASTER "
            f"{len(ups)} times; {master.name.upper()} MASTER and "
            f"{backup.name.upper()} BACKUP {ms(settled - flapped)} after the last restore; a "
            f"fresh change arrived in {ms(seconds)}")
