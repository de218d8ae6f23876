"""
A change loaded to runtime but not saved on A, in the two-host lab: the engine's layer check and
``check`` report ``config_not_saved`` naming MYSQL USERS before any failover; A dies; B takes
over without the change, as the alert had said. The change is made as an operator makes it: the
real MySQL client on A's admin interface (the admin stand-in) inside A's namespace.
"""

import time

import pytest

from tests.e2e.pair import change_arrives, comparable, wait_takeover

pytestmark = pytest.mark.e2e
ALERT_SECONDS = 30  # the lab's engine checks the layers every 2 s: a bound, not a speed goal
UNSAVED = "lab_unsaved_user"


def users_at_runtime(host):
    return {r["username"] for r in host.admin_session("SELECT username FROM runtime_mysql_users;")}


def test_an_unsaved_change_is_alerted_before_the_failover_that_loses_it(lab, summary):
    a, b = lab.host("a"), lab.host("b")
    saved, _, _ = change_arrives(lab, a, b)  # B holds A's last saved configuration
    since = time.time()
    a.admin_session(f"INSERT INTO mysql_users (username, password) VALUES ('{UNSAVED}', 'x'); "
                    "LOAD MYSQL USERS TO RUNTIME;")
    assert UNSAVED in users_at_runtime(a)

    alert = lab.wait_until(
        lambda: next((e for e in a.events("proxysql_ha/alert/config_not_saved")
                      if e["t"] >= since), None),
        ALERT_SECONDS, "the engine's config_not_saved alert on A")
    assert alert["data"]["modules"] == ["MYSQL USERS"]
    assert "run SAVE MYSQL USERS TO DISK" in alert["data"]["message"]
    healthy, _ = a.salt_call("proxysql_ha.check")
    status, _ = a.salt_call("proxysql_ha.status")
    found = {p["kind"]: p for p in status["problems"]}
    assert healthy is False and found["config_not_saved"]["modules"] == ["MYSQL USERS"]
    assert status["admin_reachable"] is True and status["admin"]["address"] == "127.0.0.1:6032"
    assert "password" not in repr(status["admin"])

    died = time.time()
    a.kill()
    wait_takeover(lab, b, died)
    assert UNSAVED not in {row[0] for row in b.config()["mysql_users"]}
    assert UNSAVED not in users_at_runtime(b)  # what B's ProxySQL runs: the change is lost
    assert comparable(b.config()) == comparable(saved)
    summary(f"unsaved change: config_not_saved alerted by A's engine {alert['t'] - since:.1f} s "
            "after LOAD ... TO RUNTIME; after A died, B runs A's last saved configuration without it")
