"""The VIP follows ProxySQL in the two-host lab: ProxySQL dies on A and cannot start again.

Real ucarp (no --preempt, as in the lab) decides the roles. A's ProxySQL start is broken by the
lab's start gate; A's reconcile job finds ProxySQL down, its start fails, and A gives up the VIP
(SIGUSR2 to its ucarp); B takes over with A's last configuration. Once A's ProxySQL can start
again, A takes the VIP back (nothing to undo for ucarp) and, without preemption, stays BACKUP.
"""

import time

import pytest
from saltext.proxysql_ha.utils.proxysql_ha_config import defaults as config_defaults

from lab.hosts import HEALTH
from lab.timeline import first
from tests.e2e.pair import comparable, ms, proxysql_breaks, state

pytestmark = pytest.mark.e2e

# the reconcile job's interval (proxysql_ha:schedule:reconcile_interval; the lab keeps the
# default): a node that gave up the VIP probes ProxySQL from that job
RECONCILE_EVERY = config_defaults("Debian")["schedule"]["reconcile_interval"]
CARP_DETECTION = 3 * 1 + 1  # ucarp's master-down time at advbase 1, and a second


def test_a_master_whose_proxysql_cannot_start_hands_the_vip_to_b(lab, summary):
    a, b = lab.host("a"), lab.host("b")
    saved, copy, died, promoted, released = proxysql_breaks(lab, a, b)
    alert = first(a.events("proxysql_ha/alert/vip_released"), died)

    assert released and alert, "A gave up the VIP and alerted at once"
    assert abs(alert["t"] - released["t"]) < 1
    assert released["data"]["carp"] == "ucarp" and released["data"]["released"] is True
    assert promoted["data"]["restore"]["chosen"] == copy
    assert comparable(b.config()) == comparable(saved)
    assert a.role() == "BACKUP" and not a.proxysql_running()
    assert released["t"] - died <= RECONCILE_EVERY + HEALTH["grace"] + 5
    assert promoted["t"] - released["t"] <= CARP_DETECTION + 30  # B's takeover itself is bounded
    assert state(a, "vip.json")["released"] is True
    summary(f"health failover: ProxySQL dead on A -> VIP released {ms(released['t'] - died)}; "
            f"-> B promoted {ms(promoted['t'] - died)}")

    time.sleep(HEALTH["hold_down"] + 2)  # still broken: A probes, fails, stays BACKUP
    assert a.role() == "BACKUP" and b.role() == "MASTER" and state(a, "vip.json")["released"]
    fixed = time.time()
    a.fix_start()
    reclaimed = lab.wait_until(lambda: first(a.events("proxysql_ha/vip/reclaimed"), fixed),
                               RECONCILE_EVERY + HEALTH["hold_down"] + 30, "A to take the VIP back")

    assert reclaimed["data"]["carp"] == "ucarp"
    assert state(a, "vip.json")["released"] is False
    time.sleep(CARP_DETECTION)
    assert (a.role(), b.role()) == ("BACKUP", "MASTER")  # without preemption A stays BACKUP
    assert b.proxysql_running() and not a.proxysql_running()
