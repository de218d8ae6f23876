"""Backups on the MASTER, shipping them to the peer, purging old ones, and backups during saves."""

import hashlib
import os
import threading
import time

import pytest
from salt.exceptions import CommandExecutionError

from standin import proxysql_db

STALE_TMP_AGE = 11 * 60  # older than the module's 10 minutes for an unfinished file
BACKUP_TRIES = 8  # backups attempted while the save loop runs


def row_counts(path):
    """``{table: rows}`` of every table of the SQLite file at ``path``."""
    return {table: len(rows) for table, rows in proxysql_db.dump_config(path).items()}


def file_mode(path):
    return os.stat(path).st_mode & 0o777


def test_backup_writes_a_private_db_and_a_manifest_describing_it(pair):
    a = pair.a
    result = a.ha.backup()

    assert (result["result"], result["generation"]) == ("created", 1)
    name = result["name"]
    db = a.backup_dir / f"{name}.db"
    manifest = a.manifest(name)
    assert a.backups() == [name]
    assert file_mode(a.backup_dir) == 0o700
    assert (file_mode(db), file_mode(a.backup_dir / f"{name}.json")) == (0o600, 0o600)
    assert (manifest["name"], manifest["node_id"], manifest["generation"]) == (name, "node-a", 1)
    assert manifest["sha256"] == hashlib.sha256(db.read_bytes()).hexdigest()
    assert manifest["size"] == db.stat().st_size
    assert manifest["row_counts"] == row_counts(db) == row_counts(a.live_db)
    assert manifest["row_counts"]["mysql_users"] == 20


def test_second_backup_without_change_is_unchanged_and_writes_nothing(pair):
    first = pair.a.ha.backup()
    files = pair.files()

    second = pair.a.ha.backup()

    assert (second["result"], second["name"]) == ("unchanged", first["name"])
    assert pair.files() == files


def test_backup_after_an_identical_save_is_unchanged(pair):
    a = pair.a
    first = a.ha.backup()
    rows = proxysql_db.dump_config(a.live_db)["mysql_users"]
    proxysql_db.save_table(a.live_db, "mysql_users", rows)  # the file changes, the configuration does not

    second = a.ha.backup()

    assert (second["result"], second["name"]) == ("unchanged", first["name"])
    assert a.backups() == [first["name"]]


def test_backup_after_a_config_change_is_the_next_generation(pair):
    a = pair.a
    first = a.ha.backup()
    a.save_users(7)

    second = a.ha.backup()

    assert (second["result"], second["generation"]) == ("created", 2)
    assert a.backups() == sorted([first["name"], second["name"]])
    assert a.manifest(second["name"])["row_counts"]["mysql_users"] == 7
    assert a.manifest(first["name"])["row_counts"]["mysql_users"] == 20


def test_ship_copies_the_newest_backup_into_the_peer_inbox(pair):
    a, b = pair.a, pair.b
    a.ha.backup()
    a.save_users(7)

    shipped = a.ha.ship()

    newest = shipped["backup"]["name"]
    assert (shipped["shipped"], shipped["name"]) == (True, newest)
    assert b.backups(b.inbox_dir) == [newest]
    for ext in (".db", ".json"):
        assert (b.inbox_dir / f"{newest}{ext}").read_bytes() == (a.backup_dir / f"{newest}{ext}").read_bytes()


def test_shipping_again_says_already_shipped_and_sends_nothing(pair):
    first = pair.a.ha.ship()
    files = pair.files()

    second = pair.a.ha.ship()

    assert (second["shipped"], second["name"], second["comment"]) == (False, first["name"], "already shipped")
    assert pair.files() == files


def test_ship_on_a_backup_node_refuses_and_writes_nothing_in_the_peer_inbox(pair):
    b = pair.b
    refused = b.ha.ship()

    assert (refused["shipped"], refused["role"]) == (False, "BACKUP")
    assert not pair.a.inbox_dir.exists()
    assert b.backups() == []


# ---- purge ---------------------------------------------------------------------------


@pytest.fixture
def three_backups(pair):
    """Three generations of A's configuration in A's outgoing dir, oldest first."""
    names = [pair.a.ha.backup()["name"]]
    for users in (7, 8):
        pair.a.save_users(users)
        names.append(pair.a.ha.backup()["name"])
    return names


def test_purge_keeps_the_newest_backups(pair, three_backups):
    pair.a.configure(retention={"keep": 2, "max_age": 0})

    purged = pair.a.ha.purge()

    oldest = three_backups[0]
    assert purged["outgoing"]["deleted"] == [f"{oldest}.db", f"{oldest}.json"]
    assert pair.a.backups() == three_backups[1:]


def test_purge_never_deletes_the_newest_valid_backup(pair, three_backups):
    a = pair.a
    a.configure(retention={"keep": 1, "max_age": 0})
    newest_db = a.backup_dir / f"{three_backups[-1]}.db"
    newest_db.write_bytes(newest_db.read_bytes()[:-1] + b"\x01")  # corrupt: no longer valid

    purged = a.ha.purge()

    assert purged["outgoing"]["kept_newest_valid"] == three_backups[1]
    assert a.backups() == three_backups[1:]


def test_purge_removes_only_stale_temporary_files(pair, three_backups):
    a = pair.a
    stale = a.backup_dir / ".proxysql-ha-tmp-stale"
    fresh = a.backup_dir / ".proxysql-ha-tmp-fresh"
    for path in (stale, fresh):
        path.write_bytes(b"half a copy")
    old = time.time() - STALE_TMP_AGE
    os.utime(stale, (old, old))

    purged = a.ha.purge()

    assert purged["outgoing"]["deleted"] == [stale.name]
    assert fresh.exists() and not stale.exists()
    assert a.backups() == three_backups


def test_purge_leaves_foreign_files_and_symlinks_alone(pair, three_backups, tmp_path):
    a = pair.a
    a.configure(retention={"keep": 1, "max_age": 0})
    elsewhere = tmp_path / "elsewhere.db"
    elsewhere.write_bytes(b"not ours")
    oldest_name = three_backups[0].replace("-g0000000001-", "-g0000000000-")
    link = a.backup_dir / f"{oldest_name}.db"
    link.symlink_to(elsewhere)
    foreign = [a.backup_dir / "notes.txt", a.backup_dir / "proxysql-ha-latest.db", a.backup_dir / "proxysql.db"]
    for path in foreign:
        path.write_bytes(b"an operator's file")
        os.utime(path, (0, 0))

    purged = a.ha.purge()

    assert purged["outgoing"]["symlinks_ignored"] == [link.name]
    assert link.is_symlink() and elsewhere.read_bytes() == b"not ours"
    assert all(path.read_bytes() == b"an operator's file" for path in foreign)
    assert a.backups() == three_backups[-1:]


def test_purge_in_test_mode_reports_and_deletes_nothing(pair, three_backups):
    pair.a.configure(retention={"keep": 1, "max_age": 0})
    files = pair.files()

    purged = pair.a.ha.purge(test=True)

    assert purged["test"] is True
    assert purged["outgoing"]["deleted"] == sorted(f"{n}{ext}" for n in three_backups[:2] for ext in (".db", ".json"))
    assert pair.files() == files


# ---- backups while ProxySQL saves -----------------------------------------------------


def run_save_loop(path, rows, pause, stop):
    """Start a thread saving ``mysql_users`` over and over (``proxysql_db.save_loop``) until ``stop`` is set."""
    thread = threading.Thread(target=proxysql_db.save_loop, args=(path, "mysql_users", rows, stop, pause))
    thread.start()
    return thread


def test_backups_during_a_save_loop_are_whole_or_refused(pair):
    a = pair.a
    a.configure(settle_timeout=0.5)
    rows = proxysql_db.dump_config(a.live_db)["mysql_users"]
    stop = threading.Event()
    created, refused = [], []
    thread = run_save_loop(a.live_db, rows, 0.3, stop)
    try:
        for _ in range(BACKUP_TRIES):
            try:
                result = a.ha.backup()
            except CommandExecutionError as exc:
                refused.append(str(exc))
                continue
            if result["result"] == "created":
                created.append(result["name"])
    finally:
        stop.set()
        thread.join(timeout=10)

    assert not thread.is_alive()
    assert created, f"no backup found a quiet window in {BACKUP_TRIES} tries: {refused}"
    for message in refused:
        assert "kept changing" in message or "changed while it was copied" in message, message
    for name in created:
        assert a.ha.verify(name)["valid"] is True
        assert row_counts(a.backup_dir / f"{name}.db")["mysql_users"] == len(rows) == 20


def test_backup_during_a_tight_save_loop_raises_and_writes_nothing(pair):
    a = pair.a
    a.configure(settle_timeout=1.0)
    rows = proxysql_db.dump_config(a.live_db)["mysql_users"]
    stop = threading.Event()
    thread = run_save_loop(a.live_db, rows, 0.0, stop)
    try:
        with pytest.raises(CommandExecutionError, match="kept changing for 1 s"):
            a.ha.backup()
    finally:
        stop.set()
        thread.join(timeout=10)

    assert not thread.is_alive()
    assert list(a.backup_dir.iterdir()) == []
    assert not (a.state_dir / "live.json").exists()
