"""Restoring on B what A shipped: the newest valid backup, B's identity kept, the old db kept aside."""

import contextlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

# Opens the db, changes rows inside a transaction that spills pages into the file, and waits to be killed.
HOT_JOURNAL_WRITER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA cache_size=1")
conn.execute("BEGIN")
conn.execute("UPDATE mysql_users SET comment = hex(randomblob(2000))")
print("in transaction", flush=True)
time.sleep(30)
"""


@pytest.fixture
def shipped(pair):
    """A ships generation 1 and, after a change of users, generation 2 into B's inbox: both names."""
    first = pair.a.ha.ship()["name"]
    pair.a.save_users(7)
    second = pair.a.ha.ship()["name"]
    return first, second


def leave_hot_journal(db):
    """Kill a writer in the middle of a transaction on ``db``; return the hot journal's bytes."""
    writer = subprocess.Popen([sys.executable, "-c", HOT_JOURNAL_WRITER, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "in transaction"
    finally:
        writer.kill()
        writer.wait(timeout=10)
        writer.stdout.close()
    return db.with_name(f"{db.name}-journal").read_bytes()


def integrity(path):
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return conn.execute("PRAGMA integrity_check").fetchall()


def test_restore_installs_the_newest_valid_backup_and_starts_proxysql_on_it(pair, shipped):
    a, b = pair.a, pair.b
    own_uuid = b.live_uuid()

    restored = b.ha.restore(start=True)

    assert (restored["restored"], restored["chosen"], restored["generation"]) == (True, shipped[1], 2)
    assert restored["rejected"] == []
    assert b.running()
    assert b.shared_config() == a.shared_config()
    assert b.live_uuid() == own_uuid != a.live_uuid()
    loaded = json.loads((b.datadir / "standin-loaded.json").read_text())
    assert (loaded["uuid"], loaded["created"], loaded["recreated"]) == (own_uuid, [], [])
    assert loaded["config"]["mysql_users"] == 7


def test_restore_keeps_the_previous_db_as_a_private_pre_restore_copy(pair, shipped):
    b = pair.b
    previous = b.live_db.read_bytes()

    restored = b.ha.restore(start=True)

    copies = list(b.datadir.glob("proxysql.db.pre-restore-*"))
    assert [str(p) for p in copies] == [restored["pre_restore_copy"]]
    assert copies[0].read_bytes() == previous
    assert copies[0].stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("pinned_schema", [False, True], ids=["schema-of-live-db", "schema-from-pillar"])
def test_restore_moves_a_hot_journal_aside_and_installs_a_sound_db(pair, shipped, pinned_schema):
    a, b = pair.a, pair.b
    own_uuid = b.live_uuid()
    if pinned_schema:
        b.configure(schema_fingerprint=b.ha.list_backups()["expected_schema"]["fingerprint"])
    journal = leave_hot_journal(b.live_db)

    restored = b.ha.restore(start=True)

    assert (restored["restored"], restored["chosen"]) == (True, shipped[1]), restored
    assert not b.live_db.with_name("proxysql.db-journal").exists()
    assert Path(restored["pre_restore_copy"] + "-journal").read_bytes() == journal
    assert integrity(b.live_db) == [("ok",)]
    assert b.shared_config() == a.shared_config()
    assert b.live_uuid() == own_uuid


def test_restore_in_test_mode_changes_nothing(pair, shipped):
    b = pair.b
    assert b.standin("start").returncode == 0
    before = pair.files()

    report = b.ha.restore(test=True)

    assert (report["test"], report["restored"], report["chosen"], report["running"]) == (True, False, shipped[1], True)
    after = pair.files()
    after.pop("node-b/ha/state/lock", None)  # every call takes the node's lock file: not a change of state
    assert after == before


def test_restores_in_quick_succession_each_keep_their_own_pre_restore_copy(pair, shipped):
    b = pair.b

    copies = [b.ha.restore(start=False)["pre_restore_copy"] for _ in range(3)]

    assert len(set(copies)) == 3
    assert all(Path(copy).is_file() for copy in copies)
