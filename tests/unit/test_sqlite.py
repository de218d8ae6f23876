"""SQLite facts and copies on real ProxySQL databases.

Fingerprint, describe, content digest, the quiet wait, the snapshot and the restore copy.
"""

import contextlib
import os
import shutil
import sqlite3

import proxysql_ha_sqlite as psql
import pytest
from salt.exceptions import CommandExecutionError

from standin import proxysql_db

UUID_A = "11111111-2222-4333-8444-555555555555"
UUID_B = "99999999-8888-4777-8666-555555555555"
SETTLE, TIMEOUT = 0.05, 0.5


def describe(path):
    return psql.describe_file(str(path))


def empty_file(path):
    path.write_bytes(b"")
    return str(path)


class FakeTime:
    """A monotonic clock that only ``sleep`` moves; ``on_sleep`` runs at each sleep (a writer between polls)."""

    def __init__(self, on_sleep):
        self.now = 1000.0
        self.sleeps = 0
        self.on_sleep = on_sleep

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        self.sleeps += 1
        self.on_sleep(self.sleeps)


# ---- fingerprint and describe ------------------------------------------------------


def test_fingerprint_is_equal_for_two_databases_with_the_same_ddl(make_db):
    one = make_db("one.db", users=3, seed=1)
    other = make_db("other.db", users=40, rules=9, seed=2)
    assert describe(one)["ddl_fingerprint"] == describe(other)["ddl_fingerprint"]


def test_fingerprint_differs_between_proxysql_3_0_1_and_2_7_2(make_db):
    new, old = describe(make_db("new.db", "3.0.1")), describe(make_db("old.db", "2.7.2"))
    assert new["ddl_fingerprint"] != old["ddl_fingerprint"]
    assert set(old["tables"]) < set(new["tables"])


def test_live_fingerprint_matches_the_backups(make_db):
    path = make_db("proxysql.db")
    assert psql.live_fingerprint(str(path)) == describe(path)["ddl_fingerprint"]


# 2.0.18 has no global_settings, a table the extension requires (REQUIRED_TABLES).
@pytest.mark.parametrize("version", [v for v in proxysql_db.SCHEMA_VERSIONS if v != "2.0.18"])
def test_describe_reports_tables_fingerprint_and_row_counts(make_db, schema_sql, version):
    path = make_db("proxysql.db", version, users=7, rules=5)
    statements = schema_sql(version)
    facts = describe(path)
    assert facts["tables"] == sorted(proxysql_db.table_name(s) for s in statements)
    assert facts["ddl_fingerprint"] == psql.fingerprint({proxysql_db.table_name(s): s for s in statements})
    assert facts["row_counts"] == {table: len(rows) for table, rows in proxysql_db.dump_config(path).items()}
    assert facts["row_counts"]["mysql_users"] == 7 and facts["row_counts"]["mysql_query_rules"] == 5


def test_describe_accepts_an_open_live_connection(make_db):
    path = make_db("proxysql.db")
    conn = psql.open_live(str(path))
    try:
        facts = describe(path)
        assert facts.pop("content_sha256") == psql.content_digest(str(path))
        assert psql.describe(conn, "quick_check") == facts
    finally:
        conn.close()


def test_describe_file_reads_a_path_with_uri_characters(tmp_path, schema_sql):
    directory = tmp_path / "odd ?#%25 dir"
    directory.mkdir()
    proxysql_db.build_db(directory / "proxysql.db", schema_sql("3.0.1"))
    assert "mysql_users" in describe(directory / "proxysql.db")["tables"]


def make_other_sqlite(path):
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("INSERT INTO notes (body) VALUES ('hello')")
    conn.close()


def make_random_bytes(path):
    path.write_bytes(os.urandom(16384))


@pytest.fixture
def bad_db(tmp_path, make_db):
    """``bad_db(kind)``: a file that is not a usable ProxySQL database."""

    def truncated():
        whole = make_db("whole.db", users=400, rules=100).read_bytes()
        (tmp_path / "bad.db").write_bytes(whole[: len(whole) // 2])

    def without_scheduler():
        make_db("bad.db")
        with sqlite3.connect(tmp_path / "bad.db") as conn:
            conn.execute("DROP TABLE scheduler")
        conn.close()

    makers = {
        "other-sqlite": lambda: make_other_sqlite(tmp_path / "bad.db"),
        "random-bytes": lambda: make_random_bytes(tmp_path / "bad.db"),
        "zero-bytes": lambda: empty_file(tmp_path / "bad.db"),
        "truncated": truncated,
        "no-scheduler": without_scheduler,
    }

    def make(kind):
        makers[kind]()
        return tmp_path / "bad.db"

    return make


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("other-sqlite", "not a ProxySQL configuration database: missing tables global_variables"),
        ("random-bytes", "unreadable as SQLite"),
        ("zero-bytes", "not a ProxySQL configuration database"),
        ("truncated", "malformed"),
        ("no-scheduler", "missing tables scheduler"),
    ],
)
def test_describe_refuses_a_file_that_is_no_proxysql_database(bad_db, kind, reason):
    with pytest.raises(psql.InvalidDatabase, match=reason):
        describe(bad_db(kind))


def test_invalid_database_is_a_value_error_as_the_module_expects():
    # _modules/proxysql_ha.py catches ValueError around describe_file (judging, backup, restore).
    assert issubclass(psql.InvalidDatabase, ValueError)


# ---- content digest and uuid ---------------------------------------------------------


def _patched(path, offset, value):
    data = bytearray(path.read_bytes())
    data[offset:offset + len(value)] = value
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("offset", [24, 40, 92, 96], ids=["change-counter", "schema-cookie",
                                                        "version-valid-for", "library-version"])
def test_content_digest_ignores_the_counters_sqlite_bumps_on_every_write(make_db, offset):
    path = make_db("a.db", seed=3)
    before = psql.content_digest(str(path))
    _patched(path, offset, b"\x7f\x01\x02\x03")
    assert psql.content_digest(str(path)) == before


def test_content_digest_sees_any_other_header_field(make_db):
    path = make_db("a.db", seed=3)
    before = psql.content_digest(str(path))
    _patched(path, 60, b"\x00\x00\x00\x07")  # user_version
    assert psql.content_digest(str(path)) != before


def test_content_digest_changes_when_a_user_row_changes(make_db, tmp_path):
    a = make_db("a.db", seed=3)
    b = tmp_path / "b.db"
    shutil.copyfile(a, b)
    before = describe(b)["content_sha256"]
    assert describe(a)["content_sha256"] == before
    with contextlib.closing(sqlite3.connect(b)) as conn:
        conn.execute("UPDATE mysql_users SET password = ? WHERE username = 'app000001'",
                     (proxysql_db.mysql_native_hash("new"),))
        conn.commit()
    assert describe(b)["content_sha256"] != before


def test_live_uuid_is_none_when_it_cannot_be_read(tmp_path):
    make_other_sqlite(tmp_path / "other.db")
    assert psql.live_uuid(str(tmp_path / "other.db")) is None
    assert psql.live_uuid(str(tmp_path / "absent.db")) is None


# ---- waiting for quiet ---------------------------------------------------------------


def test_wait_quiet_returns_the_state_of_a_quiet_file(make_db):
    path = str(make_db("proxysql.db"))
    assert psql.wait_quiet(path, SETTLE, TIMEOUT) == psql.source_state(path)


def test_wait_quiet_gives_up_while_a_journal_is_present(make_db):
    path = make_db("proxysql.db")
    empty_file(path.with_name("proxysql.db-journal"))
    assert psql.source_state(str(path))["journal"] is True
    with pytest.raises(CommandExecutionError, match="kept changing for 0.5 s"):
        psql.wait_quiet(str(path), SETTLE, TIMEOUT)


def test_wait_quiet_waits_settle_after_the_last_change(make_db):
    path = make_db("proxysql.db")
    rows = proxysql_db.dump_config(path)["mysql_users"][:1]

    def save_on_third_sleep(count):
        if count == 3:
            proxysql_db.save_table(path, "mysql_users", rows)
            changed.append(fake.now)

    changed = []
    fake = FakeTime(save_on_third_sleep)
    before = psql.source_state(str(path))
    state = psql.wait_quiet(str(path), 1.0, 30.0, clock=fake.clock, sleep=fake.sleep)
    assert state == psql.source_state(str(path)) != before
    assert fake.now - changed[0] >= 1.0


def test_wait_quiet_gives_up_on_a_file_that_keeps_changing(make_db):
    path = make_db("proxysql.db")

    def touch(count):
        os.utime(path, ns=(count * 10**9, count * 10**9))

    fake = FakeTime(touch)
    with pytest.raises(CommandExecutionError, match="no backup taken"):
        psql.wait_quiet(str(path), 1.0, 5.0, clock=fake.clock, sleep=fake.sleep)
    assert fake.now >= 1005.0


# ---- snapshot and restore copy ------------------------------------------------------


def test_snapshot_copies_a_consistent_database(tmp_path, make_db):
    source = make_db("proxysql.db", users=50, rules=20)
    target = empty_file(tmp_path / "copy.db")
    state = psql.snapshot(str(source), target, SETTLE, TIMEOUT)
    assert state == psql.source_state(str(source))
    assert proxysql_db.dump_config(target) == proxysql_db.dump_config(source)
    assert describe(target) == describe(source)


def test_snapshot_refuses_a_source_in_a_write_transaction(tmp_path, make_db):
    source = make_db("proxysql.db")
    empty_file(source.with_name("proxysql.db-journal"))
    with pytest.raises(CommandExecutionError, match="no backup taken"):
        psql.snapshot(str(source), empty_file(tmp_path / "copy.db"), SETTLE, TIMEOUT)


def sha256_of(path):
    return psql.digests(path.read_bytes())[0]


@pytest.mark.parametrize("node_uuid", [UUID_B, None])
def test_write_for_restore_puts_this_nodes_uuid_in_place_of_the_peers(tmp_path, make_db, node_uuid):
    backup = make_db("backup.db", uuid=UUID_A, users=20)
    backup_bytes = backup.read_bytes()
    target = empty_file(tmp_path / "restore.db")
    facts = psql.write_for_restore(str(backup), sha256_of(backup), target, node_uuid)
    restored, original = proxysql_db.dump_config(target), proxysql_db.dump_config(backup)
    settings = dict(restored.pop("global_settings"))
    assert settings.pop(psql.INSTALL_STAMP)  # this install's token, beside the uuid
    assert settings == ({"uuid": node_uuid} if node_uuid else {})
    original.pop("global_settings")
    assert restored == original
    assert backup.read_bytes() == backup_bytes
    assert facts["integrity"] == "ok" and facts["global_settings"].get("uuid") == node_uuid


def test_each_install_writes_its_own_token_in_place_of_the_one_it_came_with(tmp_path, make_db):
    backup = make_db("backup.db", uuid=UUID_A)
    one = empty_file(tmp_path / "one.db")
    psql.write_for_restore(str(backup), sha256_of(backup), one, UUID_B, stamp="7-first")
    assert dict(proxysql_db.dump_config(one)["global_settings"]) == \
        {"uuid": UUID_B, psql.INSTALL_STAMP: "7-first"}
    # A copy of an installed file (the next backup) installed again: the token is replaced.
    shutil.copyfile(one, tmp_path / "shipped.db")
    shipped = tmp_path / "shipped.db"
    tokens = set()
    for name in ("two.db", "three.db"):
        facts = psql.write_for_restore(str(shipped), sha256_of(shipped),
                                       empty_file(tmp_path / name), UUID_A)
        tokens.add(facts["global_settings"][psql.INSTALL_STAMP])
    assert len(tokens) == 2 and "7-first" not in tokens


def test_write_for_restore_keeps_the_ddl_byte_identical(tmp_path, make_db):
    backup = make_db("backup.db")
    target = empty_file(tmp_path / "restore.db")
    psql.write_for_restore(str(backup), sha256_of(backup), target, UUID_B)
    assert psql.live_fingerprint(target) == describe(backup)["ddl_fingerprint"]


def test_write_for_restore_refuses_a_file_changed_since_it_was_judged(tmp_path, make_db):
    backup = make_db("backup.db")
    judged = sha256_of(backup)
    proxysql_db.save_table(str(backup), "mysql_users", [])
    with pytest.raises(psql.InvalidDatabase, match="changed since it was judged"):
        psql.write_for_restore(str(backup), judged, empty_file(tmp_path / "restore.db"), UUID_B)


def test_write_for_restore_installs_a_wal_database_with_the_rollback_journal(tmp_path, make_db):
    backup = make_db("backup.db")
    conn = sqlite3.connect(backup)
    assert conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    conn.close()
    assert psql.inspect(str(backup))["journal_mode"] == "wal"
    target = empty_file(tmp_path / "restore.db")
    facts = psql.write_for_restore(str(backup), sha256_of(backup), target, UUID_B)
    assert facts["journal_mode"] == "delete"
    assert open(target, "rb").read(20)[18:20] == b"\x01\x01"
    assert not os.path.exists(target + "-wal") and not os.path.exists(target + "-shm")


# ---- inspection -------------------------------------------------------------------


def run_sql(db, *statements):
    """Run ``statements`` on the database ``db`` and commit."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        for statement in statements:
            conn.execute(statement)
        conn.commit()


def test_inspect_finds_a_check_violation_that_a_read_only_check_misses(make_db):
    db = make_db("backup.db")
    run_sql(db, "PRAGMA ignore_check_constraints=ON", "UPDATE mysql_servers SET weight = -5")
    assert describe(db)  # the read-only integrity_check sees nothing wrong
    assert "CHECK constraint failed in mysql_servers" in psql.inspect(str(db))["integrity"]


def test_inspect_lists_every_object_with_its_sql(make_db):
    db = make_db("backup.db")
    run_sql(db, "CREATE TRIGGER t AFTER UPDATE ON global_settings BEGIN DELETE FROM mysql_users; END",
            "CREATE VIEW v AS SELECT * FROM mysql_users", "CREATE INDEX i ON mysql_users (username)")
    kinds = {(o["type"], o["name"]) for o in psql.inspect(str(db))["objects"] if o["sql"]}
    assert {("trigger", "t"), ("view", "v"), ("index", "i")} <= kinds


def test_inspect_reads_the_file_once_and_agrees_with_the_separate_digests(make_db):
    db = make_db("backup.db")
    facts = psql.inspect(str(db))
    assert facts["content_sha256"] == psql.content_digest(str(db))
    assert facts["size"] == os.path.getsize(db)
    assert facts["ddl_fingerprint"] == describe(db)["ddl_fingerprint"]
    assert facts["row_counts"] == describe(db)["row_counts"]


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory"])
def test_inspect_opens_nothing_but_a_regular_file(tmp_path, make_db, kind):
    db = make_db("backup.db")
    other = tmp_path / "other.db"
    if kind == "symlink":
        other.symlink_to(db)
    elif kind == "fifo":
        os.mkfifo(other)
    else:
        other.mkdir()
    with pytest.raises((OSError, psql.InvalidDatabase)):
        psql.inspect(str(other))


def test_inspect_names_migration_leftovers_apart_from_served_tables(make_db):
    db = make_db("backup.db")
    run_sql(db, "CREATE TABLE mysql_users_v200 (x)")
    facts = psql.inspect(str(db))
    assert "mysql_users_v200" in facts["tables"]
    assert "mysql_users_v200" not in facts["served_tables"]
    assert facts["served_fingerprint"] == describe(make_db("clean.db"))["ddl_fingerprint"]


def test_inspect_counts_the_values_of_the_columns_asked_for(make_db):
    db = make_db("backup.db")
    run_sql(db, "UPDATE mysql_query_rules SET comment = 'x' WHERE rowid = (SELECT MIN(rowid) FROM mysql_query_rules)")
    facts = psql.inspect(str(db), {"mysql_query_rules": ["comment", "no_such_column"]})
    assert facts["value_counts"] == {"mysql_query_rules": {"comment": 1}}
