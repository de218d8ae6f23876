"""The engine: a real ProxySQL database watched with stat(); the minion is asked only when it changed.

The boundary to the minion is ``_ask`` (it fires ``manage_schedule`` on the minion's bus, and no
minion runs here): it is replaced by a recorder. ``time.sleep`` between two looks is replaced by
the test's script of what happens to the database during each interval, so every look is
deterministic; the SIGTERM test runs the real loop in a process of its own.
"""

import contextlib
import hashlib
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
from saltext.proxysql_ha.utils import proxysql_ha_config
from saltext.proxysql_ha.utils import proxysql_ha_store as store
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


def close_watches(wake):
    for watch in wake["watches"].values():
        if watch["fd"] is not None:
            os.close(watch["fd"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
def test_a_watched_db_wakes_the_wait_at_once_and_the_log_beside_it_does_not(tmp_path):
    """The real inotify: a save wakes the wait (after its writes pause), ProxySQL's log never does."""
    db = tmp_path / "proxysql.db"
    sqlite3.connect(db).close()
    targets = engine._targets({"db": str(db), "conf": None})  # pylint: disable=protected-access
    wake = engine._watched({"fifo": None}, targets, time.monotonic())  # pylint: disable=protected-access
    assert list(wake["watches"]) == ["db"] and wake["watches"]["db"]["fd"] is not None
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
        assert wake["watches"]["db"]["ended"]
        tmp_path.mkdir()
        wake = engine._watched(wake, targets, time.monotonic())  # pylint: disable=protected-access
        assert wake["watches"]["db"]["fd"] is not None and not wake["watches"]["db"]["ended"]
    finally:
        close_watches(wake)


# ---- arrivals on a warm standby: the inbox watched with inotify --------------------------

RECEIVER = REPO / "proxysql_ha" / "files" / "proxysql-ha-receive"
BACKUP_NAME = "proxysql-ha-g0000000007-20261125T184816123Z-node-a"
RECONCILE = "proxysql_ha_reconcile"


def receive_stream(db, name=BACKUP_NAME):
    """What the MASTER's ssh transport streams to the receive command: a header line, the bytes."""
    data = db.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    return json.dumps({"version": 1, "name": name, "size": len(data), "sha256": digest,
                       "manifest": {"format": 1, "name": name, "sha256": digest}}).encode() \
        + b"\n" + data


def warm_conf(node, tmp_path):
    """A warm BACKUP's configuration (its real pillar), looks only every 30 s but when woken."""
    pillar = node.pillar(vip="127.0.0.66", peer_path=tmp_path / "peer", standby="warm")
    pillar["schedule"] = {"engine_check_interval": 30.0}
    return proxysql_ha_config.build(pillar, "Debian", "engine-test")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
def test_a_warm_standbys_inbox_wakes_the_wait_when_the_receive_command_completes(nodes, live_db,
                                                                                 tmp_path):
    """The real receive command into a watched inbox: its last step (the manifest linked into
    place) wakes the wait as an arrival; a file of another naming in the inbox does not."""
    node = nodes[1]
    conf = warm_conf(node, tmp_path)
    node.inbox_dir.mkdir(mode=0o700, parents=True)
    targets = engine._targets({"db": str(node.live_db), "conf": conf})  # pylint: disable=protected-access
    assert sorted(targets) == ["db", "inbox"] and targets["inbox"][0] == str(node.inbox_dir)
    wake = engine._watched({"fifo": None}, targets, time.monotonic())  # pylint: disable=protected-access
    try:
        assert engine._all_watched(wake)  # pylint: disable=protected-access
        (node.inbox_dir / "notes.txt").write_text("not a backup\n")
        assert engine._wait(wake, 0.5) == set()  # pylint: disable=protected-access

        def ship():
            time.sleep(0.2)
            received.append(subprocess.run([sys.executable, str(RECEIVER), str(node.inbox_dir)],
                                           input=receive_stream(live_db), capture_output=True,
                                           timeout=BOUND, check=False))

        received = []
        sender = threading.Thread(target=ship)
        sender.start()
        woke = engine._wait(wake, BOUND)  # pylint: disable=protected-access
        sender.join(BOUND)
    finally:
        close_watches(wake)

    assert received[0].returncode == 0, received[0].stderr
    assert woke == {"inbox"}  # the arrival ended the wait, not its interval
    assert (node.inbox_dir / f"{BACKUP_NAME}.json").is_file()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
def test_a_backup_renamed_into_a_warm_standbys_inbox_asks_for_reconcile_without_waiting_for_a_look(
        nodes, live_db, tmp_path, monkeypatch):
    """The engine's own loop, with a look due only in 30 s: a backup published into the inbox
    as the local transport does (its data, then its manifest, each renamed into place) wakes the
    look, which asks for reconcile."""
    node = nodes[1]
    conf = warm_conf(node, tmp_path)
    node.inbox_dir.mkdir(mode=0o700, parents=True)
    asked, woken, watching = [], [], threading.Event()
    monkeypatch.setattr(engine, "__opts__", OPTS, raising=False)
    monkeypatch.setattr(engine, "_ask", lambda opts, job: asked.append(job) or True)
    monkeypatch.setattr(engine, "_node_config", lambda opts, fresh=False: conf)
    monkeypatch.setattr(engine, "_pillar_refreshed", lambda opts, now: False)
    real_wait = engine._wait  # pylint: disable=protected-access

    def wait(wake, interval):
        watching.set()  # the watches are open: the look waits on them now
        woken.append((interval, real_wait(wake, interval)))
        return woken[-1][1]

    monkeypatch.setattr(engine, "_wait", wait)

    def ship():
        watching.wait(BOUND)
        time.sleep(0.1)
        store.copy_file(str(live_db), str(node.inbox_dir), f"{BACKUP_NAME}.db")
        store.write_json(str(node.inbox_dir), f"{BACKUP_NAME}.json", {"name": BACKUP_NAME})

    sender = threading.Thread(target=ship)
    sender.start()
    engine.start(max_loops=1)
    sender.join(BOUND)

    assert woken == [(30.0, {"inbox"})]  # the look was due in 30 s: the arrival woke it
    assert asked == [RECONCILE]


def test_without_inotify_the_looks_poll_the_inbox_at_their_interval(nodes, tmp_path, monkeypatch):
    """Where no watch can be had (FreeBSD, or no inbox yet) the wait is the poll interval, not
    the check interval, so the stat() of the inbox is the fallback; tried again after RETRY."""
    node = nodes[1]
    conf = warm_conf(node, tmp_path)

    def no_inotify(path):
        raise OSError("no inotify on this system")

    monkeypatch.setitem(engine._HELPERS, "proxysql_ha_watch.watch_directory", no_inotify)  # pylint: disable=protected-access
    targets = engine._targets({"db": str(node.live_db), "conf": conf})  # pylint: disable=protected-access
    wake = engine._watched({"fifo": None}, targets, 100.0)  # pylint: disable=protected-access
    assert not engine._all_watched(wake)  # pylint: disable=protected-access
    assert {kind: w["retry_at"] for kind, w in wake["watches"].items()} == \
        {"db": 100.0 + engine.RETRY, "inbox": 100.0 + engine.RETRY}
    cold = engine._targets({"db": str(node.live_db), "conf": dict(conf, standby="cold")})  # pylint: disable=protected-access
    assert sorted(engine._watched(wake, cold, 200.0)["watches"]) == ["db"]  # pylint: disable=protected-access


def test_an_arrival_the_watch_saw_is_asked_for_though_the_inbox_looks_unchanged(tmp_path,
                                                                                monkeypatch):
    """The file system's clock is coarse: two changes of the inbox in one tick leave its mtime as
    it was; what the watch saw is asked for all the same, and again when the bus did not take it."""
    inbox = tmp_path / "incoming"
    inbox.mkdir()
    answers, asked = [False, True], []
    monkeypatch.setattr(engine, "_ask", lambda opts, job: asked.append(job) or answers.pop(0))
    conf, state = {"standby": "warm", "inbox_dir": str(inbox)}, {}
    engine._arrivals({}, conf, state, "BACKUP", "reconcile", arrived=True)  # pylint: disable=protected-access
    engine._arrivals({}, conf, state, "BACKUP", "reconcile")  # pylint: disable=protected-access
    engine._arrivals({}, conf, state, "BACKUP", "reconcile")  # pylint: disable=protected-access
    assert asked == ["reconcile", "reconcile"]
    engine._arrivals({}, conf, state, "MASTER", "reconcile", arrived=True)  # pylint: disable=protected-access
    assert asked == ["reconcile", "reconcile"]


def test_a_wait_with_nothing_to_wake_it_sleeps_its_interval_out():
    """No spool FIFO and no watch (no inotify, e.g. FreeBSD without a spool): a plain sleep."""
    for wake in (None, {"fifo": None, "watches": {}}):
        begin = time.monotonic()
        engine._wait(wake, 0.2)  # pylint: disable=protected-access
        assert 0.2 <= time.monotonic() - begin < BOUND


def test_the_watch_helpers_are_plain_functions_and_the_others_stay_the_loaders(monkeypatch, tmp_path):
    """Through Salt's real loader: the watch's helpers (no loader dunder) skip its per-call context
    switch; a helper that may use the dunders is still called through the loader."""
    import salt.config  # pylint: disable=import-outside-toplevel
    import salt.loader  # pylint: disable=import-outside-toplevel
    import salt.loader.lazy  # pylint: disable=import-outside-toplevel

    opts = salt.config.minion_config(None)
    opts.update(id="engine-test", cachedir=str(tmp_path), utils_dirs=[str(REPO / "_utils")],
                file_client="local")
    monkeypatch.setattr(engine, "__utils__", salt.loader.utils(opts), raising=False)
    monkeypatch.setattr(engine, "_HELPERS", {})

    vip_role = engine._util("proxysql_ha_watch.vip_role")  # pylint: disable=protected-access
    build = engine._util("proxysql_ha_config.build")  # pylint: disable=protected-access

    assert not isinstance(vip_role, salt.loader.lazy.LoadedFunc)
    assert vip_role({"127.0.0.1"}, "127.0.0.1") == "MASTER"
    assert isinstance(build, salt.loader.lazy.LoadedFunc)
