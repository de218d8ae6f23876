"""
A warm standby in the two-host lab (``standby: warm`` on both hosts): B's ProxySQL stand-in runs
with its admin interface; each backup A ships is applied to it (the engine notices the arrival
and asks for reconcile). When A dies the takeover only moves the VIP: B's ProxySQL keeps its pid
and already runs A's last saved configuration, checked through B's admin interface (the real
``mariadb`` client run inside B's namespace) against the copy A shipped.
"""

import shutil
import time

import pytest

from lab import netns
from lab.timeline import first, stepped
from saltext.proxysql_ha.utils import proxysql_ha_admin as admin
from tests.e2e.pair import (ARRIVAL_SECONDS, TAKEOVER_SECONDS, change_arrives, copy_path, ms,
                            newest_generation, state, switch_over, wait_copy_of)

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(
    not (shutil.which("mariadb") or shutil.which("mysql")), reason="no MySQL client")]

LAB_PILLAR = {"standby": "warm"}


def admin_in(host, tmp_path):
    """Admin-client parameters for ``host``'s ProxySQL, the client run inside its namespace."""
    client = tmp_path / f"client-in-{host.name}"
    real = shutil.which("mariadb") or shutil.which("mysql")
    client.write_text("#!/bin/sh\nexec " + " ".join(netns.exec_argv(host.namespace, [real]))
                      + ' "$@"\n')
    client.chmod(0o755)
    return admin.resolve({"host": None, "port": None, "user": None, "password": None,
                          "connect_timeout": 2, "query_timeout": 10.0, "client": str(client)},
                         host.node.live_db)


def applied(lab, host, name):
    """Wait (bounded) until ``host`` applied the copy ``name`` (its live.json names it)."""
    return lab.wait_until(lambda: state(host, "live.json").get("name") == name and
                          not state(host, "transition.json"), ARRIVAL_SECONDS,
                          f"{host.minion_id} to apply {name}")


def test_a_warm_failover_only_moves_the_vip_and_b_runs_what_a_saved_last(lab, summary, tmp_path):
    a, b = lab.host("a"), lab.host("b")
    _, copy, _ = change_arrives(lab, a, b)
    applied(lab, b, copy)
    pid = b.node.pidfile.read_text()
    modules = admin.file_modules(copy_path(b, copy))

    died = time.time()
    a.kill()
    promoted = lab.wait_until(
        lambda: b.role() == "MASTER" and first(b.events("proxysql_ha/promoted"), died),
        TAKEOVER_SECONDS, f"{b.minion_id} to take over")

    assert promoted["data"]["errors"] == [], promoted["data"]
    assert promoted["data"]["apply"]["how"] == "serving" and "restore" not in promoted["data"]
    assert b.node.pidfile.read_text() == pid and b.proxysql_running()
    installed, runtime = admin.installed_and_runtime(admin_in(b, tmp_path), copy_path(b, copy),
                                                     modules)
    assert runtime == installed  # B runs A's last saved configuration, module by module
    up = stepped(b, died, "up")
    summary(f"warm failover: up-script {ms(up - died)} after A died; promote "
            f"{promoted['data']['ms']:.0f} ms; B's ProxySQL pid unchanged")



def test_a_warm_takeover_ships_the_new_masters_configuration_without_waiting_for_a_save(lab, summary):
    """A warm takeover writes nothing the engine would notice (ProxySQL is not restarted), so
    the new MASTER asks for its ship job itself: here A, BACKUP, holds a change saved on it
    (``backup_config_changed``), takes office and serves it; B must get it then, not at A's next
    save or the 15 min schedule (the demo's first warm MASTER waited for that)."""
    a, b = lab.host("a"), lab.host("b")
    switch_over(lab, a, b)
    before = newest_generation(b)
    saved = a.save_change()  # on the BACKUP: its engine notices, and asks for no ship
    asked = switch_over(lab, b, a)
    promoted = first(a.events("proxysql_ha/promoted"), asked)
    assert promoted["data"]["ship_asked"] is True, promoted["data"]
    name = wait_copy_of(lab, b, saved, before)
    assert "node-a" in name
    summary(f"warm takeover: A shipped {name}, the change it held, to B with no save after it")
