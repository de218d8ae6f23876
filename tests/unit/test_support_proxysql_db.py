"""The test-support library that builds ProxySQL configuration databases behaves like ProxySQL's files."""

import re
import sqlite3
import threading
import time

import pytest

from standin import proxysql_db


@pytest.fixture
def small_db(tmp_path, schema_sql):
    """A small 3.0.1 database: 3 users, 2 rules, 2 servers, 2 hostgroups, a known uuid."""
    path = tmp_path / "proxysql.db"
    proxysql_db.build_db(path, schema_sql("3.0.1"), uuid="11111111-2222-4333-8444-555555555555")
    return path


def stored_ddl(path):
    """``{table: sqlite_master.sql}`` of the database at ``path``."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")
        return dict(rows)


def test_schema_files_hold_proxysql_table_counts(schema_sql):
    assert len(schema_sql("3.0.1")) == 29
    assert len(schema_sql("2.7.2")) == 19
    assert set(schema_sql("2.7.2")) <= set(schema_sql("3.0.1"))


@pytest.mark.parametrize(
    ("version", "tables"),
    [("2.0.18", 16), ("2.4.8", 17), ("2.5.5", 18), ("2.6.6", 19), ("2.7.2", 19), ("3.0.1", 29)],
)
def test_every_shared_schema_version_loads(shared_dir, version, tables):
    assert version in proxysql_db.SCHEMA_VERSIONS
    assert proxysql_db.schema_path(shared_dir, version).name == f"schema-{version}.sql"
    assert len(proxysql_db.load_schema(shared_dir, version)) == tables


def test_unknown_schema_version_is_refused(shared_dir):
    with pytest.raises(ValueError, match="2.0.18, 2.4.8"):
        proxysql_db.schema_path(shared_dir, "1.4.0")


@pytest.mark.parametrize("version", proxysql_db.SCHEMA_VERSIONS)
def test_built_db_keeps_proxysql_ddl_byte_identical(tmp_path, schema_sql, version):
    statements = schema_sql(version)
    path = tmp_path / "proxysql.db"
    proxysql_db.build_db(path, statements)
    assert stored_ddl(path) == {proxysql_db.table_name(s): s for s in statements}


def test_small_db_holds_a_realistic_configuration(small_db):
    config = proxysql_db.dump_config(small_db)
    assert [row[:3] for row in config["mysql_servers"]] == [
        (0, "db1.example.test", 3306),
        (1, "db2.example.test", 3306),
    ]
    assert [row[:2] for row in config["mysql_replication_hostgroups"]] == [(0, 1)]
    assert len(config["mysql_users"]) == 3
    for username, password, _active, _ssl, default_hostgroup, *_ in config["mysql_users"]:
        assert re.fullmatch(r"\*[0-9A-F]{40}", password), username
        assert default_hostgroup in (0, 1)
    rules = config["mysql_query_rules"]
    assert [(r[0], r[1], r[9]) for r in rules][0] == (1, 1, "^SELECT .* FOR UPDATE")
    assert all(r[1] == 1 and r[-3] == 1 for r in rules)  # active, apply
    assert ("mysql-threads", "4") in config["global_variables"]
    assert ("admin-admin_credentials", "admin:admin") in config["global_variables"]
    assert config["global_settings"] == [("uuid", "11111111-2222-4333-8444-555555555555")]
    assert len(config["proxysql_servers"]) == 2
    assert config["scheduler"] == []


def test_built_db_uses_the_rollback_journal(small_db):
    with sqlite3.connect(small_db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert not small_db.with_name("proxysql.db-wal").exists()


def test_build_db_generates_a_uuid4_and_refuses_an_existing_file(small_db, tmp_path, schema_sql):
    other = tmp_path / "other.db"
    generated = proxysql_db.build_db(other, schema_sql("3.0.1"))
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", generated)
    with pytest.raises(FileExistsError):
        proxysql_db.build_db(small_db, schema_sql("3.0.1"))


def test_same_seed_gives_the_same_configuration(tmp_path, schema_sql):
    statements = schema_sql("3.0.1")
    dumps = []
    for name, seed in (("a.db", 7), ("b.db", 7), ("c.db", 8)):
        proxysql_db.build_db(tmp_path / name, statements, uuid="fixed", seed=seed)
        dumps.append(proxysql_db.dump_config(tmp_path / name))
    assert dumps[0] == dumps[1]
    assert dumps[0]["mysql_users"] != dumps[2]["mysql_users"]


def test_large_db_is_about_14_mb(tmp_path, schema_sql):
    path = tmp_path / "proxysql.db"
    proxysql_db.build_db(path, schema_sql("3.0.1"), users=100_000, rules=20_000)
    assert 10_000_000 <= path.stat().st_size <= 20_000_000
    config = proxysql_db.dump_config(path)
    assert (len(config["mysql_users"]), len(config["mysql_query_rules"])) == (100_000, 20_000)


def test_save_table_rewrites_the_table(small_db):
    users = proxysql_db.dump_config(small_db)["mysql_users"]
    proxysql_db.save_table(small_db, "mysql_users", users[:2])
    assert proxysql_db.dump_config(small_db)["mysql_users"] == users[:2]


def test_save_loop_lets_a_reader_see_the_table_empty(tmp_path, schema_sql):
    path = tmp_path / "proxysql.db"
    proxysql_db.build_db(path, schema_sql("3.0.1"), users=500)
    users = proxysql_db.dump_config(path)["mysql_users"]
    stop = threading.Event()
    saves = []
    writer = threading.Thread(
        target=lambda: saves.append(proxysql_db.save_loop(path, "mysql_users", users, stop))
    )
    writer.start()
    seen = set()
    reader = sqlite3.connect(path, timeout=30)
    try:
        deadline = time.monotonic() + 10
        while 0 not in seen and time.monotonic() < deadline:
            seen.add(reader.execute("SELECT COUNT(*) FROM mysql_users").fetchone()[0])
    finally:
        reader.close()
        stop.set()
        writer.join(timeout=30)
    assert 0 in seen, f"reader never saw mysql_users empty; counts seen: {sorted(seen)}"
    assert saves and saves[0] >= 1
    assert proxysql_db.dump_config(path)["mysql_users"] == users


def test_save_loop_pauses_between_saves(small_db):
    users = proxysql_db.dump_config(small_db)["mysql_users"]
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    saves = proxysql_db.save_loop(small_db, "mysql_users", users, stop, pause=0.1)
    assert 1 <= saves <= 4


def upgrades(shared_dir):
    """3.0.1's migrations from the shared upgrades.json."""
    return proxysql_db.load_upgrades(proxysql_db.upgrades_path(proxysql_db.schema_path(shared_dir, "3.0.1")))


def start_with(path, statements, migrations):
    """Apply the start-up rule to the database at ``path``; return the report."""
    conn = proxysql_db.connect(path)
    try:
        return proxysql_db.apply_startup_rule(conn, statements, migrations)
    finally:
        conn.close()


def test_a_2_0_18_db_started_with_3_0_1_keeps_its_users_and_rules(tmp_path, shared_dir, schema_sql):
    path = tmp_path / "proxysql.db"
    proxysql_db.build_db(path, schema_sql("2.0.18"), users=5, rules=4)
    before = proxysql_db.dump_config(path)
    report = start_with(path, schema_sql("3.0.1"), upgrades(shared_dir))
    assert report["migrated"] == ["mysql_users", "mysql_query_rules", "restapi_routes"]
    assert report["recreated"] == []
    assert "global_settings" in report["created"] and "pgsql_users" in report["created"]
    after = proxysql_db.dump_config(path)
    # the new attributes column gets its default ''; every old value is kept
    assert [row[:-1] for row in after["mysql_users"]] == before["mysql_users"]
    assert {row[-1] for row in after["mysql_users"]} == {""}
    assert [(r[0], r[9]) for r in after["mysql_query_rules"]] == [(r[0], r[9]) for r in before["mysql_query_rules"]]
    # the old tables stay in the file under their renamed_to names, rows and all
    assert after["mysql_users_v200"] == before["mysql_users"]
    assert after["mysql_query_rules_v200e"] == before["mysql_query_rules"]
    assert "restapi_routes_v2015" in after
    assert stored_ddl(path)["mysql_users"] == next(
        s for s in schema_sql("3.0.1") if proxysql_db.table_name(s) == "mysql_users"
    )
    # a second start finds every table current: nothing more to do
    assert start_with(path, schema_sql("3.0.1"), upgrades(shared_dir)) == {
        "migrated": [], "created": [], "recreated": []
    }


def test_an_older_version_does_not_migrate_the_layout_it_serves(tmp_path, shared_dir, schema_sql):
    # 3.0.1's upgrades.json lists 2.0.18's own mysql_users as an older layout: 2.0.18 keeps it
    path = tmp_path / "proxysql.db"
    proxysql_db.build_db(path, schema_sql("2.0.18"), users=5, rules=4)
    before = proxysql_db.dump_config(path)
    report = start_with(path, schema_sql("2.0.18"), upgrades(shared_dir))
    assert report == {"migrated": [], "created": [], "recreated": []}
    assert proxysql_db.dump_config(path) == before


def test_without_migrations_a_changed_table_is_recreated_empty(tmp_path, schema_sql):
    path = tmp_path / "proxysql.db"
    proxysql_db.build_db(path, schema_sql("2.0.18"), users=5)
    report = start_with(path, schema_sql("3.0.1"), None)
    assert report["migrated"] == [] and "mysql_users" in report["recreated"]
    assert proxysql_db.dump_config(path)["mysql_users"] == []


def test_the_copy_follows_proxysql_where_it_is_not_the_common_columns(tmp_path, shared_dir, schema_sql):
    migrations = upgrades(shared_dir)
    path = tmp_path / "proxysql.db"
    proxysql_db.build_db(path, schema_sql("2.0.18"), rules=2)
    conn = proxysql_db.connect(path)
    conn.execute("INSERT INTO restapi_routes (id, interval_ms, method, uri, script) VALUES (7, 4000, 'GET', 'x', '/bin/true')")
    conn.execute("UPDATE mysql_query_rules SET cache_timeout = 55")
    conn.close()
    start_with(path, schema_sql("3.0.1"), migrations)
    conn = proxysql_db.connect(path)
    try:
        # disk_upgrade_rest_api_routes() copies interval_ms into timeout_ms
        assert conn.execute("SELECT id, timeout_ms FROM restapi_routes").fetchall() == [(7, 4000)]
        # the V2_0_0e copy leaves cache_timeout out: the new table has the default (NULL)
        assert conn.execute("SELECT DISTINCT cache_timeout FROM mysql_query_rules").fetchall() == [(None,)]
        assert conn.execute("SELECT DISTINCT cache_timeout FROM mysql_query_rules_v200e").fetchall() == [(55,)]
    finally:
        conn.close()


def test_the_start_up_rule_leaves_unknown_tables_and_refuses_an_open_transaction(tmp_path, schema_sql):
    path = tmp_path / "proxysql.db"
    proxysql_db.build_db(path, schema_sql("3.0.1"))
    conn = proxysql_db.connect(path)
    try:
        conn.execute("CREATE TABLE operator_notes (note TEXT)")
        conn.execute("INSERT INTO operator_notes VALUES ('keep me')")
        assert proxysql_db.apply_startup_rule(conn, schema_sql("2.7.2")) == {
            "migrated": [], "created": [], "recreated": []
        }
        assert conn.execute("SELECT note FROM operator_notes").fetchall() == [("keep me",)]
        conn.execute("BEGIN")
        with pytest.raises(ValueError, match="statement by statement"):
            proxysql_db.apply_startup_rule(conn, schema_sql("3.0.1"))
    finally:
        conn.close()


def test_comparisons_leave_out_what_the_start_writes_but_keep_saved_values(small_db):
    config = proxysql_db.dump_config(small_db)
    started = {table: list(rows) for table, rows in config.items()}
    started["global_settings"] = [("uuid", "another-node-uuid")]
    started["global_variables"] = sorted(set(started["global_variables"]) | set(proxysql_db.startup_variables()))
    assert proxysql_db.without_startup_writes(started) == proxysql_db.without_startup_writes(config)
    assert "global_settings" not in proxysql_db.comparable_config(small_db)
    # a saved value other than the default is compared, and so is its loss
    changed = dict(started, global_variables=[
        (name, "64" if name == "mysql-threads" else value) for name, value in started["global_variables"]
    ])
    assert proxysql_db.without_startup_writes(changed) != proxysql_db.without_startup_writes(config)
    lost = dict(config, global_variables=[r for r in config["global_variables"] if r[0] != "mysql-interfaces"])
    assert proxysql_db.without_startup_writes(lost) != proxysql_db.without_startup_writes(config)
