"""
Failover in the two-host lab: a host dies, a planned switchover both ways, and a failover while
the salt-master is down. Real ucarp decides the roles; the module restores and starts ProxySQL.
"""

import time

import pytest

from lab.timeline import stepped
from tests.e2e.pair import (
    change_arrives,
    comparable,
    ms,
    row_counts,
    switch_over,
    wait_takeover,
)
from standin import proxysql_db

pytestmark = pytest.mark.e2e


def test_when_a_dies_b_runs_proxysql_on_the_configuration_a_saved_last(lab, summary):
    a, b = lab.host("a"), lab.host("b")
    saved, copy, _ = change_arrives(lab, a, b)
    died = time.time()
    a.kill()
    promoted = wait_takeover(lab, b, died)
    up = stepped(b, died, "up")
    started = b.loaded()["started"]
    assert promoted["data"]["restore"]["chosen"] == copy
    assert comparable(b.config()) == comparable(saved)
    assert {t: n for t, n in b.loaded()["config"].items() if t not in proxysql_db.STARTUP_TABLES} \
        == row_counts(saved)
    summary(f"host failure: ucarp up-script {ms(up - died)} after A died; up-script -> ProxySQL "
            f"running on B {ms(started - up)} (promote {promoted['data']['ms']:.0f} ms)")


def test_switchover_both_ways_loses_no_saved_change(lab, summary):
    a, b = lab.host("a"), lab.host("b")
    saved_on_a, _, _ = change_arrives(lab, a, b)
    asked = switch_over(lab, a, b)
    to_b = b.loaded()["started"] - asked
    assert comparable(b.config()) == comparable(saved_on_a)
    saved_on_b, _, _ = change_arrives(lab, b, a)
    asked = switch_over(lab, b, a)
    to_a = a.loaded()["started"] - asked
    assert comparable(a.config()) == comparable(saved_on_b)
    summary(f"switchover: A->B ProxySQL running on B {ms(to_b)} after the step-down; "
            f"B->A {ms(to_a)}")


def test_b_converges_when_a_dies_while_the_salt_master_is_down(lab, summary):
    a, b = lab.host("a"), lab.host("b")
    saved, _, _ = change_arrives(lab, a, b)
    lab.stop_master()
    try:
        died = time.time()
        a.kill()
        promoted = wait_takeover(lab, b, died)
        up = stepped(b, died, "up")
        assert comparable(b.config()) == comparable(saved)
        assert not lab.master.running()
    finally:
        lab.start_master()
    summary(f"salt-master down: ucarp up-script {ms(up - died)} after A died; CARP transition -> "
            f"ProxySQL running on B {ms(b.loaded()['started'] - up)}; promote done "
            f"{ms(promoted['t'] - up)} after it")
