"""A warm standby (``standby: warm``): B's ProxySQL stand-in runs with its admin interface, and
every backup A ships is applied to it (install, FLUSH CONFIGDB, LOAD ... FROM DISK / TO RUNTIME)
and verified by checksum; the real ``mariadb`` client talks to the admin stand-ins.
"""

import contextlib
import os
import shutil
import sqlite3
import stat
import sys

import pytest

from saltext.proxysql_ha.utils import proxysql_ha_admin as admin
from standin import proxysql_db
from standin.node import Node
from standin.proxysql_standin import free_loopback_port
from tests.functional.conftest import BACKUP_VIP, MASTER_VIP, USERS, HaNode, Pair

pytestmark = pytest.mark.skipif(
    not (shutil.which("mariadb") or shutil.which("mysql")),
    reason="no MySQL client (Debian: mariadb-client; make deps installs it)",
)
BOUNDS = {"connect_timeout": 2, "query_timeout": 5.0}


@pytest.fixture
def warm(tmp_path, node_loaders, schema_path_of, request):
    """A (MASTER) and B (warm BACKUP), each stand-in with an admin port; A on ``a_version``."""
    version = getattr(request, "param", "3.0.1")
    schemas = {"node-a": version, "node-b": "3.0.1"}
    nodes = []
    for seed, name in enumerate(USERS, start=1):
        node = Node(name, tmp_path / name, schema_path_of(schemas[name]),
                    admin=free_loopback_port()).create()
        proxysql_db.build_db(node.live_db, proxysql_db.read_schema(node.schema), users=USERS[name],
                             seed=seed)
        nodes.append(node)
    a = HaNode(nodes[0], node_loaders["node-a"], MASTER_VIP, nodes[1])
    b = HaNode(nodes[1], node_loaders["node-b"], BACKUP_VIP, nodes[0])
    for node in (a, b):
        node.configure(standby="warm", admin={"host": "127.0.0.1", "port": node.admin, **BOUNDS})
    try:
        a.ha.reconcile()
        b.ha.reconcile()
        yield Pair(tmp_path, a, b)
    finally:
        for node in (a, b):
            node.standin("stop")
            node.loaders.reset_state()


def params(node):
    return admin.resolve({"host": "127.0.0.1", "port": node.admin, "user": None,
                          "password": None, "client": None, **BOUNDS}, node.live_db)


def runtime_users(node):
    """The users B's ProxySQL runs (its admin interface's runtime_mysql_users, one row per side)."""
    rows = admin.query(params(node), "SELECT username FROM runtime_mysql_users")
    return sorted({row["username"] for row in rows})


def file_users(path):
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return sorted(r[0] for r in conn.execute("SELECT username FROM mysql_users WHERE active=1"))


def kinds(report):
    return sorted(problem["kind"] for problem in report["problems"])


def test_a_warm_backup_runs_proxysql_and_applies_a_shipped_backup_without_a_restart(warm):
    a, b = warm.a, warm.b
    assert b.running()  # reconcile started it: a warm BACKUP serves
    pid = b.pidfile.read_text()
    a.save_users(31)
    shipped = a.ha.ship()["name"]

    report = b.ha.apply()

    assert (report["applied"], report["how"], report["chosen"], report["errors"]) == \
        (True, "flush", shipped, [])
    assert "MYSQL USERS" in report["loaded"]
    assert b.pidfile.read_text() == pid and b.running()
    assert runtime_users(b) == file_users(a.live_db) == file_users(b.live_db)
    assert (report["verify"]["verified"], report["verify"]["problems"]) == (True, [])
    installed, runtime = admin.installed_and_runtime(params(b), b.live_db, report["loaded"])
    assert installed == runtime
    assert b.live_uuid() != a.live_uuid()  # this node's uuid kept
    assert b.ha.apply()["comment"] == "nothing new to apply"
    assert "backup_config_changed" not in kinds(b.ha.status())


def test_reconcile_on_a_warm_backup_applies_what_arrived(warm):
    a, b = warm.a, warm.b
    a.save_users(12)
    a.ha.ship()

    report = b.ha.reconcile()

    assert report["would_run"] == "demote"
    assert report["report"]["apply"]["how"] == "flush"
    assert runtime_users(b) == file_users(a.live_db)


def test_a_warm_takeover_restores_nothing_and_keeps_proxysql_running(warm):
    a, b = warm.a, warm.b
    a.save_users(9)
    a.ha.ship()
    b.ha.apply()
    pid = b.pidfile.read_text()
    warm.fail_over()

    report = b.ha.promote()
    a_report = a.ha.demote()

    assert (report["acted"], report["errors"], report["apply"]) == \
        (True, [], {"how": "serving", "serving": True})
    assert "restore" not in report
    assert b.pidfile.read_text() == pid
    assert runtime_users(b) == file_users(a.live_db)
    assert (a_report["acted"], a_report["stopped"]) == (True, False)
    assert a.running()  # demote keeps a warm ProxySQL running


def test_a_warm_takeover_applies_a_backup_that_arrived_unapplied(warm):
    a, b = warm.a, warm.b
    a.save_users(14)
    shipped = a.ha.ship()["name"]
    pid = b.pidfile.read_text()
    warm.fail_over()

    report = b.ha.promote()

    assert (report["errors"], report["apply"]["how"], report["apply"]["chosen"]) == \
        ([], "flush", shipped)
    assert report["apply"]["verify"]["verified"] is True
    assert b.pidfile.read_text() == pid
    assert runtime_users(b) == file_users(a.live_db)


@pytest.mark.parametrize("warm", ["2.7.2"], indirect=True)
def test_a_backup_that_needs_a_migration_is_applied_with_a_restart(warm):
    a, b = warm.a, warm.b
    a.save_users(8)
    a.ha.ship()
    pid = b.pidfile.read_text()

    report = b.ha.apply()

    assert (report["how"], report["errors"]) == ("restart", [])
    assert b.pidfile.read_text() != pid and b.running()
    assert runtime_users(b) == file_users(a.live_db)  # nothing lost
    assert report["verify"]["verified"] is True and report["verify"]["problems"] == []


def test_an_unreachable_admin_is_a_clear_error_and_a_restart_leaves_proxysql_serving(warm):
    a, b = warm.a, warm.b
    nowhere = free_loopback_port()
    b.configure(admin={"host": "127.0.0.1", "port": nowhere, **BOUNDS})
    a.save_users(11)
    a.ha.ship()
    pid = b.pidfile.read_text()

    report = b.ha.apply()

    assert report["how"] == "restart"
    assert any(f"127.0.0.1:{nowhere}" in e and "restarted instead" in e for e in report["errors"])
    assert b.pidfile.read_text() != pid and b.running()
    b.wait_serving(timeout=5)
    assert runtime_users(b) == file_users(a.live_db)
    assert report["verify"]["verified"] is False
    assert f"127.0.0.1:{nowhere}" in report["verify"]["reason"]


def rewriting_client(tmp_path, old, new, name="no-flush-client"):
    """A client that replaces ``old`` with ``new`` in what it is given to run."""
    real = shutil.which("mariadb") or shutil.which("mysql")
    path = tmp_path / name
    path.write_text(
        f"#!{sys.executable}\n"
        "import os, subprocess, sys\n"
        f"sql = sys.stdin.read().replace({old!r}, {new!r})\n"
        f"sys.exit(subprocess.run([{real!r}] + sys.argv[1:], input=sql.encode()).returncode)\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def no_flush_client(tmp_path):
    """A client that drops PROXYSQL FLUSH CONFIGDB: a ProxySQL that never reopens its file."""
    return rewriting_client(tmp_path, "PROXYSQL FLUSH CONFIGDB; ", "")


def test_restore_not_loaded_names_the_modules_proxysql_does_not_run(warm, tmp_path):
    a, b = warm.a, warm.b
    b.configure(admin={"host": "127.0.0.1", "port": b.admin, "client": no_flush_client(tmp_path),
                       **BOUNDS})
    a.save_users(13)
    a.ha.ship()

    report = b.ha.apply()

    problems = report["verify"]["problems"]
    assert [p["problem"] for p in problems] == ["restore_not_loaded"]
    assert "MYSQL USERS" in problems[0]["modules"]
    assert runtime_users(b) != file_users(b.live_db)
    status = b.ha.status()
    found = [p for p in status["problems"] if p["kind"] == "restore_not_loaded"]
    assert found and "MYSQL USERS" in found[0]["modules"]


def test_a_skipped_flush_is_restore_not_loaded_though_the_new_file_holds_as_many_rows(warm,
                                                                                   tmp_path):
    a, b = warm.a, warm.b
    a.save_users(13)
    a.ha.ship()
    assert b.ha.apply()["verify"]["problems"] == []
    b.configure(admin={"host": "127.0.0.1", "port": b.admin, "client": no_flush_client(tmp_path),
                       **BOUNDS})
    with contextlib.closing(sqlite3.connect(a.live_db)) as conn:  # a row changed, none added
        conn.execute("UPDATE mysql_users SET max_connections = max_connections + 1")
        conn.commit()
    shipped = a.ha.ship()["name"]

    report = b.ha.apply()

    assert (report["chosen"], report["how"]) == (shipped, "flush")
    problems = report["verify"]["problems"]
    assert [(p["problem"], p["modules"]) for p in problems] == [
        ("restore_not_loaded", sorted(report["loaded"]))]
    assert all(r == {"missing": 0, "extra": 0} for r in problems[0]["rows"].values())
    assert "PROXYSQL FLUSH CONFIGDB was not done" in problems[0]["message"]
    found = [p for p in b.ha.status()["problems"] if p["kind"] == "restore_not_loaded"]
    assert [p["modules"] for p in found] == [sorted(report["loaded"])]


@pytest.mark.parametrize("after_the_loads, rows", [
    ("DELETE FROM runtime_mysql_query_rules WHERE rule_id = "
     "(SELECT MIN(rule_id) FROM runtime_mysql_query_rules)", {"missing": 1, "extra": 0}),
    ("INSERT INTO runtime_mysql_query_rules (rule_id, active, apply) VALUES (4242, 1, 1)",
     {"missing": 0, "extra": 1}),
])
def test_a_runtime_one_row_off_after_the_apply_is_restore_not_loaded(warm, tmp_path,
                                                                    after_the_loads, rows):
    a, b = warm.a, warm.b
    # ProxySQL that runs one query rule more or fewer than it loaded (the stand-in lets a
    # statement write its runtime tables): the client adds it after the apply's last load.
    last = "LOAD PROXYSQL SERVERS TO RUNTIME"
    client = rewriting_client(tmp_path, last, f"{last}; {after_the_loads}", "one-row-off-client")
    b.configure(admin={"host": "127.0.0.1", "port": b.admin, "client": client, **BOUNDS})
    a.save_users(14)
    a.ha.ship()

    report = b.ha.apply()

    assert report["how"] == "flush" and report["verify"]["verified"] is True
    problems = report["verify"]["problems"]
    assert [(p["problem"], p["modules"], p["rows"]) for p in problems] == [
        ("restore_not_loaded", ["MYSQL QUERY RULES"], {"MYSQL QUERY RULES": rows})]
    found = [p for p in b.ha.status()["problems"] if p["kind"] == "restore_not_loaded"]
    assert [p["modules"] for p in found] == [["MYSQL QUERY RULES"]]


def test_a_save_on_the_warm_backup_is_backup_config_changed(warm):
    a, b = warm.a, warm.b
    a.ha.ship()
    b.ha.apply()
    assert "backup_config_changed" not in kinds(b.ha.status())

    admin.execute(params(b), "DELETE FROM mysql_users WHERE username LIKE 'app%'; "
                             "SAVE MYSQL USERS TO DISK")

    assert "backup_config_changed" in kinds(b.ha.status())
