"""The VIP follows ProxySQL with ucarp's preemption, in the two-host lab (``--preempt`` on both).

A has the better advskew (0 against B's 100), so with preemption it takes the VIP from B at B's
first advertisement: after its SIGUSR2 the module freezes A's ucarp (SIGSTOP) once the VIP has
left, so the release holds while A's ProxySQL cannot start. Once it runs again and the hold-down
is over, A wakes ucarp (SIGCONT) and preempts: it becomes MASTER again with B's configuration.
``test_health.py`` is the same without preemption (A stays BACKUP).
"""

import time

import pytest
from saltext.proxysql_ha.utils.proxysql_ha_config import defaults as config_defaults

from lab.hosts import HEALTH
from lab.timeline import first
from tests.e2e.pair import (TAKEOVER_SECONDS, active, change_arrives, comparable, ms,
                            proxysql_breaks, state, wait_takeover)

pytestmark = pytest.mark.e2e

LAB_PREEMPT = True
# the reconcile job's interval (proxysql_ha:schedule:reconcile_interval; the lab keeps the
# default): a node that gave up the VIP probes ProxySQL from that job
RECONCILE_EVERY = config_defaults("Debian")["schedule"]["reconcile_interval"]
CARP_DETECTION = 3 * 1 + 1  # ucarp's master-down time at advbase 1, and a second


def ups_since(host, since):
    return [t for t, direction in host.transitions() if direction == "up" and t > since]


def test_with_preemption_a_takes_the_vip_back_only_once_proxysql_runs_again(lab, summary):
    a, b = lab.host("a"), lab.host("b")
    saved, copy, died, promoted, released = proxysql_breaks(lab, a, b)
    assert released and released["data"]["carp"] == "ucarp"
    assert promoted["data"]["restore"]["chosen"] == copy
    assert comparable(b.config()) == comparable(saved)
    assert state(a, "vip.json")["frozen"] is True

    # preemption would hand A the VIP at B's first advertisement: frozen, A's ucarp holds off
    time.sleep(HEALTH["hold_down"] + 2 * CARP_DETECTION)
    assert (a.role(), b.role()) == ("BACKUP", "MASTER") and b.proxysql_running()
    assert ups_since(a, released["t"]) == [], "A's ucarp never took the VIP back while ProxySQL was down"

    served, _, _ = change_arrives(lab, b, a)  # B serves and ships; A holds B's copies
    fixed = time.time()
    a.fix_start()
    reclaimed = lab.wait_until(lambda: first(a.events("proxysql_ha/vip/reclaimed"), fixed),
                               RECONCILE_EVERY + HEALTH["hold_down"] + 30, "A to take the VIP back")
    back = wait_takeover(lab, a, reclaimed["t"] - 1)
    lab.wait_until(lambda: active(a, b), TAKEOVER_SECONDS, "B to hand over to A")

    assert reclaimed["t"] - released["t"] >= HEALTH["hold_down"]
    assert min(ups_since(a, released["t"])) >= reclaimed["t"] - 0.5  # only after ProxySQL ran again
    assert comparable(a.config()) == comparable(served)  # B's last change came back with the VIP
    assert back["data"]["restore"]["restored"] is True
    assert state(a, "vip.json")["released"] is False
    summary(f"preemption: VIP released {ms(released['t'] - died)} after ProxySQL died on A; "
            f"A MASTER again {ms(min(ups_since(a, released['t'])) - fixed)} after its start was fixed")
