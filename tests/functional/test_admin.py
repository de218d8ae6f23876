"""The admin client against the admin stand-in, with the real ``mariadb`` client.

Every test runs its own stand-in on 127.0.0.1 at a port picked free, over a real
``proxysql.db`` built from ProxySQL's 3.0.1 schema file.
"""

import contextlib
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

from saltext.proxysql_ha.utils import proxysql_ha_admin as admin
from saltext.proxysql_ha.utils import proxysql_ha_layers as layers
from saltext.proxysql_ha.utils import proxysql_ha_sqlite as psql
import pytest
from salt.exceptions import CommandExecutionError

from standin import proxysql_db
from standin.proxysql_admin import AdminServer

pytestmark = pytest.mark.skipif(
    not (shutil.which("mariadb") or shutil.which("mysql")),
    reason="no MySQL client (Debian: mariadb-client; make deps installs it)",
)
BOUND = 5.0  # query_timeout of the tests: the bound every failure must stay inside


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def schema_file(shared_dir):
    return proxysql_db.schema_path(shared_dir, "3.0.1")


@pytest.fixture
def db_path(tmp_path, schema_file):
    path = tmp_path / "proxysql.db"
    proxysql_db.build_db(path, proxysql_db.read_schema(schema_file), users=4, rules=3)
    return path


@pytest.fixture
def server(db_path, schema_file):
    srv = AdminServer(db_path, schema_file, "127.0.0.1", free_port(), traffic_port=free_port())
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def params(server, db_path):
    conf = {"host": None, "port": server.port, "user": None, "password": None,
            "connect_timeout": 2, "query_timeout": BOUND, "client": None}
    return admin.resolve(conf, db_path)


def test_defaults_come_from_the_live_db(db_path):
    found = admin.params_from_db(db_path)
    assert found == {"host": "127.0.0.1", "port": 6032, "user": "admin", "password": "admin"}


def test_ping_and_select(params):
    assert admin.ping(params) is True
    rows = admin.query(params, "SELECT username, active FROM main.mysql_users ORDER BY username")
    assert [r["username"] for r in rows] == [f"app{i:06d}" for i in range(4)]
    assert admin.query(params, "SELECT * FROM mysql_users WHERE 0") == []


def test_strings_nulls_and_escapes_survive_the_round_trip(params):
    value = "tab\there\nline\\back"
    admin.execute(params, "INSERT INTO scheduler (id, interval_ms, filename, comment) VALUES "
                          "(7, 1000, '/bin/true', 'tab' || char(9) || 'here' || char(10) || 'line\\back')")
    row = admin.query(params, "SELECT comment, arg1 FROM scheduler WHERE id = 7")[0]
    assert row == {"comment": value, "arg1": None}


def test_the_traffic_port_accepts(server):
    with socket.create_connection(("127.0.0.1", server.traffic_port), timeout=2):
        pass


def test_wrong_password_is_a_clear_error_in_bounded_time(params):
    bad = dict(params, password="not-the-password")
    started = time.monotonic()
    with pytest.raises(CommandExecutionError, match=r"127\.0\.0\.1:\d+: access denied for user 'admin'") as caught:
        admin.ping(bad)
    assert time.monotonic() - started < BOUND
    assert admin.denied(caught.value)  # it answered: the health rule counts that as alive


def test_unreachable_address_is_a_clear_error_in_bounded_time(params):
    closed = dict(params, port=free_port())
    started = time.monotonic()
    with pytest.raises(CommandExecutionError, match=rf"127\.0\.0\.1:{closed['port']} is unreachable"):
        admin.ping(closed)
    assert time.monotonic() - started < BOUND


def test_a_silent_server_is_killed_at_the_query_timeout(params):
    with socket.socket() as silent:  # listens, accepts into the backlog, never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        hung = dict(params, port=silent.getsockname()[1], connect_timeout=30, query_timeout=1.5)
        started = time.monotonic()
        with pytest.raises(CommandExecutionError, match=r"no answer within 1\.5 s"):
            admin.ping(hung)
        assert time.monotonic() - started < 1.5 + 2.0


def test_a_failing_statement_names_the_address_and_error(params):
    with pytest.raises(CommandExecutionError, match=r"statement failed \(error \d+: .*no such table"):
        admin.query(params, "SELECT * FROM no_such_table")


def test_checksum_commands_have_proxysql_shape(params):
    disk = admin.checksum_disk(params, "mysql users")
    memory = admin.checksum_memory(params, "MYSQL USERS")
    assert disk == memory and disk.startswith("0x")
    # ProxySQL has no CHECKSUM for SCHEDULER: the stand-in refuses it as ProxySQL's SQLite does.
    with pytest.raises(CommandExecutionError, match="syntax error"):
        admin.query(params, "CHECKSUM DISK SCHEDULER")
    names = admin.runtime_checksums(params)
    assert {"mysql_users", "mysql_servers", "mysql_query_rules", "mysql_variables",
            "admin_variables", "proxysql_servers"} <= set(names)


CHANGES = {
    "MYSQL USERS": "UPDATE mysql_users SET max_connections = 77",
    "MYSQL SERVERS": "UPDATE mysql_servers SET weight = 7",
    "MYSQL QUERY RULES": "UPDATE mysql_query_rules SET comment = 'changed'",
    "MYSQL VARIABLES": "UPDATE global_variables SET variable_value = '8' WHERE variable_name = 'mysql-threads'",
    "ADMIN VARIABLES": "UPDATE global_variables SET variable_value = '2000' "
                       "WHERE variable_name = 'admin-cluster_check_interval_ms'",
    "SCHEDULER": "INSERT INTO scheduler (id, interval_ms, filename) VALUES (1, 1000, '/bin/true')",
    "PROXYSQL SERVERS": "UPDATE proxysql_servers SET weight = 5",
}


def problems_of(params, db_path):
    """The layer check as the node makes it (SQL on the admin interface, counts back), held
    against the row-by-row reference (every row of every layer through the client, digested)."""
    found = admin.check_layers(params, db_path)
    reference = layers.differences(admin.layer_digests(params))
    assert found == {module: reference[module] for module in found}, (found, reference)
    return {p["problem"]: p["modules"] for p in layers.difference_problems(found)}


@pytest.mark.parametrize("module", sorted(CHANGES))
def test_layer_checks_follow_each_module_through_its_layers(params, module, db_path):
    assert problems_of(params, db_path) == {}
    admin.execute(params, CHANGES[module])
    assert problems_of(params, db_path) == {"config_not_saved": [module], "config_not_loaded": [module]}
    admin.load_to_runtime(params, module)
    assert problems_of(params, db_path) == {"config_not_saved": [module]}
    admin.execute(params, f"SAVE {module} TO DISK")
    assert problems_of(params, db_path) == {}


def test_an_operators_session_of_several_statements(params, db_path):
    admin.execute(params, "INSERT INTO mysql_users (username, password) VALUES ('ops', 'x'); "
                          "LOAD MYSQL USERS TO RUNTIME; SAVE MYSQL USERS TO DISK")
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT count(*) FROM mysql_users WHERE username = 'ops'").fetchone() == (1,)
    conn.close()
    assert problems_of(params, db_path) == {}


def test_save_from_runtime_undoes_an_unloaded_edit(params, db_path):
    admin.execute(params, CHANGES["MYSQL USERS"])
    admin.execute(params, "SAVE MYSQL USERS FROM RUNTIME")
    rows = admin.query(params, "SELECT username, frontend, backend, max_connections FROM main.mysql_users")
    assert {r["max_connections"] for r in rows} == {"10000"}
    # As ProxySQL does, memory now holds runtime's shape (a row per side): unlike disk's.
    assert len(rows) == 8 and {(r["frontend"], r["backend"]) for r in rows} == {("1", "0"), ("0", "1")}
    assert problems_of(params, db_path) == {"config_not_saved": ["MYSQL USERS"]}
    admin.execute(params, "SAVE MYSQL USERS TO DISK")
    assert problems_of(params, db_path) == {}


def test_inactive_users_are_not_at_runtime_and_not_a_loading_problem(params, db_path):
    admin.execute(params, "UPDATE mysql_users SET active = 0 WHERE username = 'app000000'; "
                          "LOAD MYSQL USERS TO RUNTIME; SAVE MYSQL USERS TO DISK")
    names = {r["username"] for r in admin.query(params, "SELECT username FROM runtime_mysql_users")}
    assert "app000000" not in names and len(names) == 3
    assert problems_of(params, db_path) == {}


def replace_by_rename(db_path, schema_file, users):
    new = db_path.with_name("incoming.db")
    proxysql_db.build_db(new, proxysql_db.read_schema(schema_file), users=users)
    os.rename(new, db_path)


def test_a_file_replaced_by_rename_is_unseen_and_unsaveable_until_the_flush(
    server, params, db_path, schema_file
):
    before = admin.checksum_disk(params, "MYSQL USERS")
    replace_by_rename(db_path, schema_file, users=9)
    # Without the flush: reads see the old file, and a save fails (SQLITE_READONLY_DBMOVED),
    # answered OK as ProxySQL does: only the layers show that it was lost.
    assert admin.checksum_disk(params, "MYSQL USERS") == before
    assert len(admin.query(params, "SELECT username FROM disk.mysql_users")) == 4
    admin.execute(params, CHANGES["MYSQL USERS"] + "; SAVE MYSQL USERS TO DISK")
    assert any("SQLITE_READONLY_DBMOVED" in line for line in server.store.errors)
    assert problems_of(params, db_path)["config_not_saved"] == ["MYSQL USERS"]
    assert admin.checksum_disk(params, "MYSQL USERS") == before
    admin.flush_configdb(params)
    assert len(admin.query(params, "SELECT username FROM disk.mysql_users")) == 9
    assert problems_of(params, db_path)["config_not_saved"]  # memory still holds the old users
    for module in admin.MODULES:
        admin.load_from_disk(params, module)
        admin.load_to_runtime(params, module)
    assert problems_of(params, db_path) == {}
    for module in ("MYSQL USERS", "MYSQL QUERY RULES"):
        assert admin.checksum_disk(params, module) == admin.checksum_memory(params, module)
    differences = admin.verify_installed(params, admin.installed_facts(db_path))
    assert layers.restore_problems(differences) == []


def test_a_flush_alone_leaves_runtime_on_the_old_file(params, db_path, schema_file):
    replace_by_rename(db_path, schema_file, users=9)
    admin.flush_configdb(params)
    problems = layers.restore_problems(admin.verify_installed(params, admin.installed_facts(db_path)))
    # The file holds 9 users (one row per side in runtime), runtime the 4 it had; and one
    # query rule fewer than runtime runs.
    assert [p["modules"] for p in problems] == [["MYSQL QUERY RULES", "MYSQL USERS"]]
    assert problems[0]["rows"] == {"MYSQL USERS": {"missing": 10, "extra": 0},
                                   "MYSQL QUERY RULES": {"missing": 0, "extra": 1}}


@pytest.mark.parametrize("change, rows", [
    ("DELETE FROM runtime_mysql_query_rules WHERE rule_id = "
     "(SELECT MIN(rule_id) FROM runtime_mysql_query_rules)", {"missing": 1, "extra": 0}),
    ("INSERT INTO runtime_mysql_query_rules (rule_id, active, apply) VALUES (4242, 1, 1)",
     {"missing": 0, "extra": 1}),
])
def test_a_runtime_one_row_off_is_restore_not_loaded_naming_its_module(params, db_path, change,
                                                                     rows):
    facts = admin.installed_facts(db_path)
    assert layers.restore_problems(admin.verify_installed(params, facts)) == []
    admin.execute(params, change)  # the stand-in lets a test write its runtime tables
    problems = layers.restore_problems(admin.verify_installed(params, facts))
    assert [(p["problem"], p["modules"], p["rows"]) for p in problems] == [
        ("restore_not_loaded", ["MYSQL QUERY RULES"], {"MYSQL QUERY RULES": rows})]


def install(backup, live, uuid, stamp):
    """``backup`` installed over ``live`` as a restore installs it: written beside it with this
    node's uuid and the install's token (proxysql_ha_sqlite.write_for_restore), then renamed."""
    tmp = live.with_name("proxysql.db.restore")
    tmp.write_bytes(b"")
    sha256 = hashlib.sha256(backup.read_bytes()).hexdigest()
    psql.write_for_restore(str(backup), sha256, str(tmp), uuid, stamp=stamp)
    os.rename(tmp, live)
    return admin.installed_facts(live)


def changed_copy(db_path, name, sql):
    """A copy of ``db_path`` with ``sql`` run on it: the peer's next save."""
    copy = db_path.with_name(name)
    shutil.copyfile(db_path, copy)
    with contextlib.closing(sqlite3.connect(copy)) as conn:
        conn.execute(sql)
        conn.commit()
    return copy


def apply_to(params, facts, flush=True):
    statements = admin.apply_statements(facts["modules"])
    admin.execute(params, "; ".join(statements if flush else statements[1:]))


def counts(path):
    with contextlib.closing(sqlite3.connect(path)) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                            "AND name != 'global_settings'")]
        return {name: conn.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0] for name in names}


def test_an_install_whose_flush_is_skipped_is_caught_by_its_token_though_no_count_changed(
        params, db_path):
    uuid = admin.query(params, "SELECT variable_value FROM disk.global_settings "
                               "WHERE variable_name = 'uuid'")[0]["variable_value"]
    first = changed_copy(db_path, "first.db", "UPDATE mysql_users SET max_connections = 11")
    facts = install(first, db_path, uuid, "1-aa")
    apply_to(params, facts)
    assert layers.restore_problems(admin.verify_installed(params, facts)) == []  # the normal install
    assert problems_of(params, db_path) == {}  # the layer check reads the stamped file as well

    second = changed_copy(db_path, "second.db", "UPDATE mysql_users SET max_connections = 22")
    assert counts(second) == counts(db_path)  # a row changed, none added: counts cannot tell
    facts = install(second, db_path, uuid, "2-bb")
    apply_to(params, facts, flush=False)  # ProxySQL never reopened the file: it loads the old one

    differences = admin.verify_installed(params, facts)
    assert all(d["missing"] == d["extra"] == 0 for d in differences.values())  # runtime == its disk
    assert all(d["disk_unlike_file"] for d in differences.values())
    problems = layers.restore_problems(differences)
    assert [(p["problem"], p["modules"]) for p in problems] == [
        ("restore_not_loaded", sorted(facts["modules"]))]
    assert "PROXYSQL FLUSH CONFIGDB was not done" in problems[0]["message"]
    assert {r["max_connections"] for r in admin.query(
        params, "SELECT max_connections FROM runtime_mysql_users")} == {"11"}

    apply_to(params, facts)  # the flush this time: the same install passes
    assert layers.restore_problems(admin.verify_installed(params, facts)) == []


def test_an_install_into_a_datadir_proxysql_does_not_use_is_not_loaded(params, db_path,
                                                                      tmp_path):
    """ProxySQL (the stand-in) runs on ``db_path``; the pillar's datadir is another one."""
    pillars = tmp_path / "pillar-datadir"
    pillars.mkdir()
    shutil.copyfile(db_path, pillars / "proxysql.db")
    backup = changed_copy(db_path, "shipped.db", "UPDATE mysql_query_rules SET comment = 'new'")
    facts = install(backup, pillars / "proxysql.db", None, "3-cc")
    assert counts(pillars / "proxysql.db") == counts(db_path)
    apply_to(params, facts)  # flushed and loaded: ProxySQL reopens its own file, not this one

    problems = layers.restore_problems(admin.verify_installed(params, facts))

    assert [(p["problem"], p["modules"]) for p in problems] == [
        ("restore_not_loaded", sorted(facts["modules"]))]
    assert "ProxySQL uses another datadir than proxysql_ha:datadir" in problems[0]["message"]


def test_the_option_file_is_gone_after_each_call(params, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "t"))
    (tmp_path / "t").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", None)
    admin.ping(params)
    with pytest.raises(CommandExecutionError):
        admin.ping(dict(params, password="wrong"))
    assert os.listdir(tmp_path / "t") == []


def test_config_hides_the_admin_password(pair):
    pair.a.configure(admin={"user": "radmin", "password": "adm1n-s3cret"})
    conf = pair.a.ha.config()
    assert conf["admin"]["password"] == "<hidden>" and conf["admin"]["user"] == "radmin"
    assert "adm1n-s3cret" not in json.dumps(conf)


def test_the_stand_in_runs_on_its_own_and_stops_on_sigterm(db_path, schema_file, tmp_path):
    port = free_port()
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen(
        [sys.executable, "-m", "standin.proxysql_admin", "--db", str(db_path),
         "--schema", str(schema_file), "--port", str(port)],
        cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout.readline().strip() == f"listening 127.0.0.1:{port}"
        params = admin.resolve({"host": None, "port": port, "user": None, "password": None}, db_path)
        assert admin.ping(params)
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
