"""The engine's cheap checks: the role (a real netlink read of ``lo``), ProxySQL (the stand-in's real pid
file) and saves, each asking for the right job, and for none when the node is in line.

The node's configuration is its real pillar through ``proxysql_ha_config.build``; the minion's bus is the
boundary (``_ask`` records, ``_pillar_refreshed`` is scripted). Each look runs as the scripted interval's
action, as in test_engine.py.
"""

import json
import time

import pytest

from _engines import proxysql_ha as engine
from saltext.proxysql_ha.utils import proxysql_ha_config
from standin import proxysql_db

MASTER_VIP, BACKUP_VIP = "127.0.0.1", "127.0.0.66"  # on lo, and not
SHIP, RECONCILE = "proxysql_ha_ship", "proxysql_ha_reconcile"
TICK = 0.02
BOUND = 10.0  # seconds: only catches a hang


def conf_for(node, vip, **overrides):
    pillar = node.pillar(vip=vip, peer_path=node.root / "peer", **overrides)
    pillar["schedule"] = {"engine_check_interval": 0.1}
    return proxysql_ha_config.build(pillar, "Debian", "engine-test")


@pytest.fixture
def node(nodes, schema_sql):
    first = nodes[0]
    proxysql_db.build_db(first.live_db, schema_sql("3.0.1"), users=3, seed=1)
    yield first
    first.standin("stop")


@pytest.fixture
def minion(monkeypatch):
    """The minion as the engine sees it: ``asked`` (jobs), ``pillars`` (what a refresh compiles), ``refresh_at``."""

    class Minion:
        asked = []
        pillars = []
        refresh_at = set()  # loop numbers after which the minion reports a pillar refresh
        fail_asks = 0  # the next asks that the bus does not take
        loop = 0

    def ask(_opts, job):
        if Minion.fail_asks:
            Minion.fail_asks -= 1
            return False
        Minion.asked.append(job)
        return True

    monkeypatch.setattr(engine, "__opts__", {"id": "engine-test"}, raising=False)
    monkeypatch.setattr(engine, "_ask", ask)
    monkeypatch.setattr(engine, "_node_config", lambda opts, fresh=False: Minion.pillars[-1])
    monkeypatch.setattr(engine, "_pillar_refreshed", lambda opts, now: Minion.loop in Minion.refresh_at)
    Minion.asked, Minion.pillars, Minion.refresh_at = [], [], set()
    return Minion


def run(monkeypatch, minion, intervals, **options):
    """One look per item of ``intervals`` (run as that interval's wait); each lasts more than a check interval."""
    script = iter(intervals)

    def wait(_wake, _interval):
        time.sleep(0.12)
        minion.loop += 1
        next(script)()

    minion.loop = 0
    monkeypatch.setattr(engine, "_wait", wait)
    engine.start(max_loops=len(intervals), **options)


def nothing():
    """Nothing happens in this interval."""


def test_a_master_in_line_asks_for_nothing(node, minion, monkeypatch):
    assert node.standin("start").returncode == 0
    minion.pillars.append(conf_for(node, MASTER_VIP))

    run(monkeypatch, minion, [nothing] * 5)

    assert minion.asked == []


def test_a_backup_in_line_asks_for_nothing_even_when_its_db_is_written(node, minion, monkeypatch):
    minion.pillars.append(conf_for(node, BACKUP_VIP))
    rows = proxysql_db.dump_config(node.live_db)["mysql_users"]

    run(monkeypatch, minion, [nothing, lambda: proxysql_db.save_table(node.live_db, "mysql_users", rows[:1]),
                              nothing])

    assert minion.asked == []


def test_proxysql_down_on_the_master_asks_for_reconcile_once_per_retry(node, minion, monkeypatch):
    minion.pillars.append(conf_for(node, MASTER_VIP))

    run(monkeypatch, minion, [nothing] * 4)

    assert minion.asked == [RECONCILE]


def test_a_stale_pid_file_is_not_a_running_proxysql(node, minion, monkeypatch):
    node.pidfile.write_text("999999\n")  # no such process
    minion.pillars.append(conf_for(node, MASTER_VIP))

    run(monkeypatch, minion, [nothing] * 2)

    assert minion.asked == [RECONCILE]


def test_proxysql_up_on_a_backup_asks_for_reconcile(node, minion, monkeypatch):
    assert node.standin("start").returncode == 0
    minion.pillars.append(conf_for(node, BACKUP_VIP))

    run(monkeypatch, minion, [nothing] * 3)

    assert minion.asked == [RECONCILE]


def test_proxysql_up_on_a_backup_is_in_line_without_stop_on_backup(node, minion, monkeypatch):
    assert node.standin("start").returncode == 0
    minion.pillars.append(conf_for(node, BACKUP_VIP, stop_on_backup=False))

    run(monkeypatch, minion, [nothing] * 3)

    assert minion.asked == []


def test_a_role_change_seen_after_a_pillar_refresh_asks_for_reconcile(node, minion, monkeypatch):
    """The VIP moves (here: the refreshed pillar names the address lo has): the engine follows both."""
    assert node.standin("start").returncode == 0  # in line on both sides: only the change asks
    minion.pillars.append(conf_for(node, BACKUP_VIP, stop_on_backup=False))
    minion.refresh_at = {2}

    run(monkeypatch, minion, [nothing, lambda: minion.pillars.append(conf_for(node, MASTER_VIP)), nothing, nothing])

    assert minion.asked == [RECONCILE]


def test_a_save_on_the_master_asks_for_the_ship_job(node, minion, monkeypatch):
    assert node.standin("start").returncode == 0
    minion.pillars.append(conf_for(node, MASTER_VIP))
    rows = proxysql_db.dump_config(node.live_db)["mysql_users"]

    run(monkeypatch, minion, [nothing, lambda: proxysql_db.save_table(node.live_db, "mysql_users", rows[:1]),
                              nothing])

    assert minion.asked == [SHIP]


def test_a_save_the_bus_did_not_take_is_asked_for_again(node, minion, monkeypatch):
    """The missed save: the engine used to move on after a failed ask, and the change waited for the schedule."""
    assert node.standin("start").returncode == 0
    minion.pillars.append(conf_for(node, MASTER_VIP))
    rows = proxysql_db.dump_config(node.live_db)["mysql_users"]

    def save_while_the_bus_is_busy():
        minion.fail_asks = 1
        proxysql_db.save_table(node.live_db, "mysql_users", rows[:1])

    run(monkeypatch, minion, [nothing, save_while_the_bus_is_busy, nothing, nothing])

    assert minion.asked == [SHIP]


def test_a_look_that_raises_does_not_stop_the_engine(node, minion, monkeypatch):
    assert node.standin("start").returncode == 0
    minion.pillars.append(conf_for(node, MASTER_VIP))
    rows = proxysql_db.dump_config(node.live_db)["mysql_users"]
    real = engine._read_role  # pylint: disable=protected-access
    calls = []

    def flaky(conf):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("netlink hiccup")
        return real(conf)

    monkeypatch.setattr(engine, "_read_role", flaky)
    run(monkeypatch, minion, [nothing, lambda: proxysql_db.save_table(node.live_db, "mysql_users", rows[:1]),
                              nothing])

    assert minion.asked == [SHIP]


def test_a_flood_of_spooled_transitions_is_relayed_once_newest_first(node, minion, monkeypatch, tmp_path):
    minion.pillars.append(conf_for(node, BACKUP_VIP))
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    relayed = []
    monkeypatch.setattr(engine, "_relay", lambda opts, payloads, job: relayed.append((job, payloads)))

    def flood():
        for i in range(200):
            state = ("MASTER", "BACKUP")[i % 2]
            (spool / f"carp-{i:06d}-{state}.json").write_text(json.dumps(
                {"state": state, "vhid": 1, "iface": "lo", "source": "devd", "timestamp": 1000 + i}))

    run(monkeypatch, minion, [flood, nothing], spool=str(spool))

    assert [(job, [(p["state"], p["timestamp"]) for p in payloads]) for job, payloads in relayed] == [
        (RECONCILE, [("BACKUP", 1199)])]
    assert sorted(p.name for p in spool.iterdir()) == ["wake"]


def test_an_engine_started_before_the_pillar_picks_it_up_and_watches(node, minion, monkeypatch):
    """Engines start before the minion compiles its pillar: the engine keeps asking, it does not give up."""
    assert node.standin("start").returncode == 0
    monkeypatch.setattr(engine, "RETRY", 0.2)
    answers = iter([None, None])
    monkeypatch.setattr(engine, "_node_config", lambda opts, fresh=False: next(answers, minion.pillars[-1]))
    minion.pillars.append(conf_for(node, MASTER_VIP))
    rows = proxysql_db.dump_config(node.live_db)["mysql_users"]

    run(monkeypatch, minion, [nothing, nothing, nothing, nothing, nothing,
                              lambda: proxysql_db.save_table(node.live_db, "mysql_users", rows[:1]), nothing])

    assert minion.asked[-1:] == [SHIP]


def test_a_failed_ship_on_the_master_asks_for_the_ship_job_again(node, minion, monkeypatch):
    """With the ship schedule at 60 s, a peer back from a partition gets the newest copy from the engine."""
    assert node.standin("start").returncode == 0
    minion.pillars.append(conf_for(node, MASTER_VIP))
    node.state_dir.mkdir(parents=True, exist_ok=True)
    (node.state_dir / "ship.json").write_text(json.dumps({"ok": False, "error": "peer unreachable"}))

    run(monkeypatch, minion, [nothing] * 3)

    assert minion.asked == [SHIP]


def test_a_save_right_after_the_vip_arrived_asks_for_the_ship_job(node, minion, monkeypatch):
    """The missed save of issue 9: a save seen before the next role look, on a node last seen as BACKUP,
    was taken for a BACKUP's and dropped; the engine now reads the role again when the db changed."""
    from saltext.proxysql_ha.utils import proxysql_ha_watch  # pylint: disable=import-outside-toplevel

    pillar = node.pillar(vip=MASTER_VIP, peer_path=node.root / "peer")
    pillar["schedule"] = {"engine_check_interval": 60}  # one role look, at the start
    minion.pillars.append(proxysql_ha_config.build(pillar, "Debian", "engine-test"))
    on_lo = [set()]  # the addresses the role reader finds on lo: the VIP not yet there
    monkeypatch.setattr(proxysql_ha_watch, "interface_addresses", lambda iface: on_lo[-1])
    rows = proxysql_db.dump_config(node.live_db)["mysql_users"]

    def takeover_and_save():
        on_lo.append({MASTER_VIP})
        proxysql_db.save_table(node.live_db, "mysql_users", rows[:1])

    run(monkeypatch, minion, [nothing, takeover_and_save, nothing])

    assert minion.asked == [RECONCILE, SHIP]


def test_a_pillar_compile_that_hangs_holds_up_no_look(node, minion, monkeypatch):
    """A refresh compiles the pillar from the master, which may take minutes: the looks go on meanwhile
    (a save is noticed), and the refreshed pillar is followed once it is there."""
    import threading  # pylint: disable=import-outside-toplevel

    assert node.standin("start").returncode == 0
    minion.pillars.append(conf_for(node, MASTER_VIP))
    refreshed = conf_for(node, MASTER_VIP)
    refreshed["schedule"]["ship_job"] = "proxysql_ha_ship_refreshed"
    master_answers = threading.Event()

    def node_config(_opts, fresh=False):
        if fresh:
            master_answers.wait(BOUND)
            return refreshed
        return minion.pillars[-1]

    monkeypatch.setattr(engine, "_node_config", node_config)
    minion.refresh_at = {1}
    rows = proxysql_db.dump_config(node.live_db)["mysql_users"]

    run(monkeypatch, minion, [nothing, lambda: proxysql_db.save_table(node.live_db, "mysql_users", rows[:2]),
                              master_answers.set, nothing,
                              lambda: proxysql_db.save_table(node.live_db, "mysql_users", rows[:1]), nothing])

    assert minion.asked == [SHIP, "proxysql_ha_ship_refreshed"]
