"""The module's layer checks and admin health, through Salt's loader, against admin stand-ins.

A is MASTER with its ProxySQL stand-in serving the admin stand-in on a loopback port the pillar
names (``Node(admin=port)``); edits go through the real MySQL client, as an operator's would.
"""

import dataclasses
import shutil
import sqlite3
import time

import pytest
from saltext.proxysql_ha.utils import proxysql_ha_admin as admin

from standin.proxysql_standin import free_loopback_port
from tests.functional.test_admin import CHANGES

pytestmark = pytest.mark.skipif(
    not (shutil.which("mariadb") or shutil.which("mysql")),
    reason="no MySQL client (Debian: mariadb-client; make deps installs it)",
)
SECRET = "S3cret-admin-pw"  # admin-admin_credentials of A's db: read from there, never shown
BOUND = 3 + 1 + 10  # connect_timeout + 1 (the health ping) + query_timeout (the layer check)


@pytest.fixture
def a(pair):
    """Node A (MASTER) with an admin stand-in on a port of its own, ProxySQL started."""
    node = pair.a
    node.node = dataclasses.replace(node.node, admin=free_loopback_port())
    node.configure()
    with sqlite3.connect(node.live_db) as conn:
        conn.execute("UPDATE global_variables SET variable_value = ? "
                     "WHERE variable_name = 'admin-admin_credentials'", (f"radmin:{SECRET}",))
    conn.close()
    assert node.standin("start").returncode == 0
    return node


def params_of(node):
    return admin.resolve({"host": "127.0.0.1", "port": node.admin}, node.live_db)


def kinds(report):
    return {p["kind"]: p.get("modules") for p in report["problems"]}


def test_status_shows_the_admin_address_and_that_it_answers_never_the_password(a):
    status = a.ha.status()
    assert status["admin"] == {"enabled": True, "address": f"127.0.0.1:{a.admin}", "error": None}
    assert status["admin_reachable"] is True and status["proxysql_running"] is True
    assert status["problems"] == []
    assert SECRET not in repr(status)


@pytest.mark.parametrize("module", sorted(CHANGES))
def test_check_raises_and_clears_each_modules_layer_problems(a, module):
    params = params_of(a)
    assert a.ha.check() is True
    admin.execute(params, CHANGES[module])
    edited = a.ha.status()
    assert kinds(edited) == {"config_not_saved": [module], "config_not_loaded": [module]}
    assert a.ha.check() is False

    admin.load_to_runtime(params, module)
    loaded = a.ha.status()
    assert kinds(loaded) == {"config_not_saved": [module]}
    message = loaded["problems"][0]["message"]
    assert f"{module}: runtime differs from disk; run SAVE {module} TO DISK" in message

    admin.execute(params, f"SAVE {module} TO DISK")  # the operator saves: check never does
    assert a.ha.check() is True


def test_an_unsaved_change_is_never_saved_by_check(a):
    params = params_of(a)
    admin.execute(params, "INSERT INTO mysql_users (username, password) VALUES ('ops', 'x'); "
                          "LOAD MYSQL USERS TO RUNTIME")
    before = a.live_db.read_bytes()
    assert a.ha.check() is False and a.ha.check() is False
    assert a.live_db.read_bytes() == before
    assert kinds(a.ha.status()) == {"config_not_saved": ["MYSQL USERS"]}


@pytest.mark.parametrize("setting, kind, error", [
    ({"port": None}, "admin_unreachable", "is unreachable"),  # None: a port nothing listens on
    ({"password": "wrong"}, "admin_denied", "access denied for user 'radmin'"),
])
def test_an_unusable_admin_is_its_own_problem_bounded_and_the_rest_of_check_goes_on(
        a, setting, kind, error):
    port = free_loopback_port() if setting.get("port", a.admin) is None else a.admin
    a.configure(admin={"enabled": True, "host": "127.0.0.1", "port": port, **{
        k: v for k, v in setting.items() if k != "port"}}, stale_after=1)
    a.save_users(3)  # a save with no backup since: backup_stale, found all the same
    time.sleep(1.2)
    begun = time.monotonic()
    status = a.ha.status()
    took = time.monotonic() - begun
    found = {p["kind"]: p for p in status["problems"]}
    assert kind in found and "backup_stale" in found, found
    assert f"127.0.0.1:{port}" in found[kind]["message"]
    assert error in found[kind]["message"]
    assert "wrong" not in repr(status)
    assert status["admin_reachable"] is False
    # The health rule: a MASTER whose admin does not answer is not a healthy ProxySQL; one
    # that answers "access denied" is alive (its admin module spoke), so the VIP stays.
    alive = kind == "admin_denied"
    assert status["proxysql_running"] is alive
    assert ("master_proxysql_down" in found) is not alive, found
    assert took < 2 * BOUND  # bounded: the client is killed at its timeouts, never waited on


def test_on_a_backup_the_health_rule_and_layer_checks_stay_out(pair, a):
    params = params_of(a)
    admin.execute(params, CHANGES["MYSQL USERS"])
    pair.fail_over()  # A is BACKUP now, its ProxySQL still running
    a.configure(stop_on_backup=False)
    status = a.ha.status()
    assert "config_not_saved" not in kinds(status) and status["proxysql_running"] is True


def test_without_admin_enabled_nothing_is_asked(pair):
    status = pair.a.ha.status()
    assert status["admin"] == {"enabled": False} and status["admin_reachable"] is None
