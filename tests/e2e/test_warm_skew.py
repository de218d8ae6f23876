"""
A version skew on a warm standby in the two-host lab: A runs ProxySQL 2.0.18's layout, B 3.0.1's,
both ``standby: warm``. A's backups need ProxySQL's start-up migration on B, which ``PROXYSQL
FLUSH CONFIGDB`` never does: B applies them with a restart instead, and loses no row.
"""

import time

import pytest

from tests.e2e.pair import ARRIVAL_SECONDS, TAKEOVER_SECONDS, change_arrives, state
from lab.timeline import first

pytestmark = pytest.mark.e2e

LAB_SCHEMAS = {"a": "2.0.18"}  # B keeps the lab's 3.0.1
LAB_PILLAR = {"standby": "warm"}


def test_a_warm_backup_on_a_newer_proxysql_applies_with_a_restart_and_loses_nothing(lab, summary):
    a, b = lab.host("a"), lab.host("b")
    pid = b.node.pidfile.read_text()
    saved, copy, _ = change_arrives(lab, a, b)
    lab.wait_until(lambda: state(b, "live.json").get("name") == copy
                   and not state(b, "transition.json"), ARRIVAL_SECONDS, f"B to apply {copy}")
    b.node.wait_serving(timeout=TAKEOVER_SECONDS)
    users = {row[0] for row in saved["mysql_users"]}
    assert users <= {row[0] for row in b.config()["mysql_users"]}  # nothing lost
    verify = state(b, "verify.json")
    assert (verify.get("verified"), verify.get("problems")) == (True, []), verify
    assert b.node.pidfile.read_text() != pid  # applied with a restart, not a flush

    died = time.time()
    a.kill()
    lab.wait_until(lambda: b.role() == "MASTER" and first(b.events("proxysql_ha/promoted"), died),
                   TAKEOVER_SECONDS, "B to take over")
    assert users <= {row[0] for row in b.config()["mysql_users"]}
    summary(f"warm version skew: B (3.0.1) applied A's (2.0.18) copy with a restart, "
            f"{len(users)} users kept")
