"""The engine: a real ProxySQL database watched with stat(); the minion is asked only when it changed.

The boundary to the minion is ``_ask`` (it fires ``manage_schedule`` on the minion's bus, and no
minion runs here): it is replaced by a recorder. ``time.sleep`` between two looks is replaced by
the test's script of what happens to the database during each interval, so every look is
deterministic; the SIGTERM test runs the real loop in a process of its own.
"""

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from _engines import proxysql_ha as engine
from standin import proxysql_db

REPO = Path(__file__).resolve().parents[2]
OPTS = {"id": "engine-test", "sock_dir": "/nonexistent"}
JOB = "proxysql_ha_ship"
BOUND = 10.0  # seconds: far above two intervals; only catches a hang
TICK = 0.02  # seconds each scripted interval really lasts: more than the file system's clock tick


@pytest.fixture
def live_db(tmp_path, schema_sql):
    path = tmp_path / "proxysql.db"
    proxysql_db.build_db(path, schema_sql("3.0.1"), users=3, seed=1)
    return path


@pytest.fixture
def asked(monkeypatch):
    """The jobs the engine asked the minion to run: ``[(opts, job), ...]``."""
    calls = []
    monkeypatch.setattr(engine, "__opts__", OPTS, raising=False)
    monkeypatch.setattr(engine, "_ask", lambda opts, job: calls.append((opts, job)) or True)
    monkeypatch.setattr(engine, "_node_config", lambda opts, fresh=False: None)  # no pillar here
    monkeypatch.setattr(engine, "_pillar_refreshed", lambda opts, now: False)  # nor a minion's bus
    return calls


@pytest.fixture
def run_engine(monkeypatch):
    """``run_engine(db, intervals)``: one loop per item of ``intervals``, each run as that interval's sleep.

    Each interval lasts ``TICK`` before its action, so two saves never share an mtime.
    """

    def sleep(script):
        time.sleep(TICK)
        next(script)()

    def run(db, intervals):
        script = iter(intervals)
        monkeypatch.setattr(engine, "_wait", lambda _wake, _interval: sleep(script))
        engine.start(str(db), job=JOB, interval=0.25, max_loops=len(intervals))

    return run


def nothing():
    """An interval in which nothing touches the database."""


def save_users(db):
    """``SAVE MYSQL USERS TO DISK``: the table rewritten in one transaction."""
    rows = proxysql_db.dump_config(db)["mysql_users"]
    return lambda: proxysql_db.save_table(db, "mysql_users", rows[:1])


def read_only_session(db):
    """A client that reads, and commits an empty transaction: no journal, nothing written."""

    def session():
        with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
            conn.execute("SELECT count(*) FROM mysql_users").fetchall()
            conn.execute("BEGIN")
            conn.execute("COMMIT")

    return session


def test_unchanged_db_asks_for_nothing(live_db, asked, run_engine):
    run_engine(live_db, [nothing] * 5)

    assert asked == []


def test_saved_db_asks_for_the_job_once(live_db, asked, run_engine):
    run_engine(live_db, [nothing, save_users(live_db), nothing, nothing])

    assert asked == [(OPTS, JOB)]


def test_each_save_asks_again(live_db, asked, run_engine):
    run_engine(live_db, [save_users(live_db), nothing, save_users(live_db)])

    assert asked == [(OPTS, JOB), (OPTS, JOB)]


def test_read_only_session_asks_for_nothing(live_db, asked, run_engine):
    run_engine(live_db, [read_only_session(live_db), nothing])

    assert asked == []


def test_db_gone_asks_for_nothing(live_db, asked, run_engine):
    run_engine(live_db, [live_db.unlink, nothing])

    assert asked == []


ENGINE_PROCESS = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
from _engines import proxysql_ha as engine
engine.__opts__ = {}
engine.start(sys.argv[1], job="proxysql_ha_ship", interval=float(sys.argv[2]))
"""


def test_engine_returns_cleanly_on_sigterm_within_a_bounded_time(live_db):
    interval = 0.5
    proc = subprocess.Popen([sys.executable, "-c", ENGINE_PROCESS, str(live_db), str(interval)], cwd=REPO,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert "watching" in proc.stderr.readline()
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        returncode = proc.wait(timeout=BOUND)
        took = time.monotonic() - sent
        rest = proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()

    print(f"engine stopped {took:.2f} s after SIGTERM (interval {interval} s)")
    assert returncode == 0
    assert "proxysql_ha engine: stopped" in rest
    assert took < BOUND


# ---- relaying the CARP hook's transitions ------------------------------------------------

HOOK = REPO / "proxysql_ha" / "files" / "proxysql-ha-event"


def run_hook(tmp_path, spool, *args):
    conf = tmp_path / "hook.json"
    conf.write_text(json.dumps({"vhid": 9, "interface": "lo", "spool_dir": str(spool),
                                "minion_config": str(tmp_path / "no-minion"), "ip_command": "/bin/true"}))
    return subprocess.run([sys.executable, str(HOOK), *args], env={"PROXYSQL_HA_HOOK_CONF": str(conf)},
                          capture_output=True, text=True, timeout=BOUND)


def test_the_spool_is_private_and_its_wake_is_a_fifo(tmp_path):
    spool = tmp_path / "state" / "carp"
    wake = engine._open_wake(str(spool))  # pylint: disable=protected-access
    try:
        assert spool.stat().st_mode & 0o777 == 0o700
        assert (spool / "wake").is_fifo() and (spool / "wake").stat().st_mode & 0o777 == 0o600
    finally:
        os.close(wake)


def test_the_hook_hands_a_transition_to_the_engine_and_wakes_it_at_once(tmp_path):
    spool = tmp_path / "carp"
    wake = engine._open_wake(str(spool))  # pylint: disable=protected-access
    try:
        out = run_hook(tmp_path, spool, "MASTER", "9@lo")
        begin = time.monotonic()
        engine._wait(wake, BOUND)  # pylint: disable=protected-access
        woke = time.monotonic() - begin
        payloads = engine._spooled(str(spool))  # pylint: disable=protected-access
    finally:
        os.close(wake)

    assert out.returncode == 0, out.stderr
    print(f"engine woke {woke * 1000:.1f} ms after the hook returned")
    assert woke < BOUND / 2
    assert [(p["state"], p["vhid"], p["iface"], p["source"]) for p in payloads] == [("MASTER", 9, "lo", "devd")]
    assert sorted(os.listdir(spool)) == ["wake"]  # consumed


def test_spooled_transitions_come_oldest_first_and_foreign_or_broken_files_are_skipped(tmp_path):
    spool = tmp_path / "carp"
    spool.mkdir()
    (spool / "carp-2-BACKUP.json").write_text(json.dumps({"state": "BACKUP"}))
    (spool / "carp-1-MASTER.json").write_text(json.dumps({"state": "MASTER"}))
    (spool / "carp-3-EVIL.json").write_text(json.dumps({"state": "EVIL"}))
    (spool / "carp-4-MASTER.json").write_text("{not json")
    (spool / "notes.txt").write_text("not ours")
    (spool / "carp-5-MASTER.json").symlink_to(spool / "carp-1-MASTER.json")

    states = [p["state"] for p in engine._spooled(str(spool))]  # pylint: disable=protected-access

    assert states == ["MASTER", "BACKUP"]
    assert sorted(os.listdir(spool)) == ["carp-5-MASTER.json", "notes.txt"]  # junk gone, links untouched


def test_without_a_spool_the_hook_falls_back_to_telling_the_minion_itself(tmp_path):
    out = run_hook(tmp_path, tmp_path / "absent", "BACKUP", "9@lo")

    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "absent").exists()


def test_a_backup_arriving_on_a_warm_standby_asks_for_reconcile_once(tmp_path, monkeypatch):
    inbox = tmp_path / "incoming"
    inbox.mkdir()
    asked = []
    monkeypatch.setattr(engine, "_ask", lambda opts, job: asked.append(job) or True)
    conf, state = {"standby": "warm", "inbox_dir": str(inbox)}, {}
    engine._arrivals({}, conf, state, "BACKUP", "reconcile")  # the first look only records
    os.utime(inbox, ns=(1, 1))  # a file renamed into it changes the directory's mtime
    engine._arrivals({}, conf, state, "BACKUP", "reconcile")
    engine._arrivals({}, conf, state, "BACKUP", "reconcile")  # nothing new: not asked again
    os.utime(inbox, ns=(2, 2))
    engine._arrivals({}, dict(conf, standby="cold"), state, "BACKUP", "reconcile")
    engine._arrivals({}, conf, dict(state), "MASTER", "reconcile")
    assert asked == ["reconcile"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
def test_a_watched_db_wakes_the_wait_at_once_and_the_log_beside_it_does_not(tmp_path):
    """The real inotify: a save wakes the wait (after its writes pause), ProxySQL's log never does."""
    db = tmp_path / "proxysql.db"
    sqlite3.connect(db).close()
    wake = engine._watched({"fifo": None, "db": None, "dir": None, "name": None},  # pylint: disable=protected-access
                           str(db), time.monotonic())
    assert wake["db"] is not None and wake["name"] == "proxysql.db"
    try:
        (tmp_path / "proxysql.log").write_text("a log line\n")
        begin = time.monotonic()
        engine._wait(wake, 0.5)  # pylint: disable=protected-access
        assert time.monotonic() - begin >= 0.5  # the log did not wake it: the interval ran out

        def save():
            time.sleep(0.2)
            with contextlib.closing(sqlite3.connect(db)) as conn, conn:
                conn.execute("CREATE TABLE IF NOT EXISTS t (a)")
                conn.execute("INSERT INTO t VALUES (1)")

        writer = threading.Thread(target=save)
        begin = time.monotonic()
        writer.start()
        engine._wait(wake, BOUND)  # pylint: disable=protected-access
        woke = time.monotonic() - begin
        writer.join(BOUND)
        print(f"woke {woke * 1000:.0f} ms after the writer started (it writes after 200 ms)")
        assert 0.2 <= woke < BOUND / 2

        # the datadir replaced: the watch ends, and the next look watches the new one
        (tmp_path / "proxysql.log").unlink()
        db.unlink()
        os.rmdir(tmp_path)
        engine._wait(wake, 1.0)  # pylint: disable=protected-access
        assert wake.get("ended")
        tmp_path.mkdir()
        wake = engine._watched(wake, str(db), time.monotonic())  # pylint: disable=protected-access
        assert wake["db"] is not None and not wake.get("ended")
    finally:
        if wake["db"] is not None:
            os.close(wake["db"])


def test_a_wait_with_nothing_to_wake_it_sleeps_its_interval_out():
    """No spool FIFO and no watch (no inotify, e.g. FreeBSD without a spool): a plain sleep."""
    for wake in (None, {"fifo": None, "db": None, "name": None}):
        begin = time.monotonic()
        engine._wait(wake, 0.2)  # pylint: disable=protected-access
        assert 0.2 <= time.monotonic() - begin < BOUND
