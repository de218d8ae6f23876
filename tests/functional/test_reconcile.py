"""reconcile, the foreign-event guard of promote and demote, jobs and config, through Salt's loader.

A is MASTER (its VIP is on lo) and B BACKUP; neither runs ProxySQL until a test starts it.
No minion daemon runs, so no schedule job is ever out of line: the actions are about ProxySQL
and the backups only.
"""

import json

import pytest

SECRET_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
SECRET_PASSWORD = "ucarp-s3cret"


def test_reconcile_on_a_converged_master_plans_nothing_and_changes_nothing(pair):
    a = pair.a
    assert a.standin("start").returncode == 0
    assert a.ha.reconcile()["actions"] == ["take over as MASTER"]
    before = pair.files()

    report = a.ha.reconcile()

    assert (report["role"], report["actions"], report["would_run"]) == ("MASTER", [], None)
    assert pair.files() == before


def test_reconcile_in_test_mode_on_a_master_without_proxysql_plans_the_start_and_changes_nothing(pair):
    a = pair.a
    before = pair.files()

    report = a.ha.reconcile(test=True)

    assert (report["actions"], report["would_run"]) == (["take over as MASTER", "start ProxySQL"], "promote")
    assert not a.running()
    assert pair.files() == before


def test_reconcile_on_a_master_without_proxysql_starts_it_and_is_then_converged(pair):
    a = pair.a

    report = a.ha.reconcile()
    again = a.ha.reconcile(test=True)

    assert (report["actions"], report["report"]["started"], report["report"]["errors"]) == (
        ["take over as MASTER", "start ProxySQL"], True, [])
    assert a.running()
    assert again["actions"] == []


def test_reconcile_on_a_backup_running_proxysql_stops_it(pair):
    b = pair.b
    assert b.standin("start").returncode == 0

    planned = b.ha.reconcile(test=True)
    report = b.ha.reconcile()

    assert (planned["role"], planned["actions"], planned["would_run"]) == ("BACKUP", ["stop ProxySQL"], "demote")
    assert b.running() is False and report["report"]["stopped"] is True
    assert b.ha.reconcile(test=True)["actions"] == []


def test_reconcile_on_a_new_master_plans_the_restore_of_the_newer_backup_in_its_inbox(pair):
    b = pair.b
    shipped = pair.a.ha.ship()["name"]
    pair.fail_over()
    before = pair.files()

    planned = b.ha.reconcile(test=True)

    assert (planned["role"], planned["actions"]) == (
        "MASTER", ["take over as MASTER", f"restore {shipped}", "start ProxySQL"])
    assert pair.files() == before


def test_reconcile_restores_the_newer_backup_once(pair):
    b = pair.b
    shipped = pair.a.ha.ship()["name"]
    pair.fail_over()

    report = b.ha.reconcile()

    assert report["report"]["restore"]["chosen"] == shipped and report["report"]["errors"] == []
    assert b.ha.reconcile(test=True)["actions"] == []


FOREIGN = [
    pytest.param(2, "lo", id="other-vhid"),
    pytest.param(1, "eth0", id="other-interface"),
    pytest.param("1; reboot", "lo", id="vhid-with-shell"),
    pytest.param(1, None, id="interface-missing"),
]


@pytest.mark.parametrize("vhid, interface", FOREIGN)
def test_promote_for_another_vhid_or_interface_is_refused_and_changes_nothing(pair, vhid, interface):
    a = pair.a
    before = pair.files()

    report = a.ha.promote(vhid=vhid, interface=interface)

    assert report["acted"] is False and "promote refused" in report["comment"]
    assert a.loaders.context.get("retcode") == 1
    assert not a.running()
    assert pair.files() == before


def test_demote_for_another_interface_is_refused_and_leaves_proxysql_running(pair):
    b = pair.b
    assert b.standin("start").returncode == 0
    before = pair.files()

    report = b.ha.demote(vhid=1, interface="eth0")

    assert report["acted"] is False and "demote refused" in report["comment"]
    assert b.loaders.context.get("retcode") == 1
    assert b.running()
    assert pair.files() == before


def test_promote_for_this_nodes_vhid_and_interface_acts(pair):
    a = pair.a

    report = a.ha.promote(vhid=1, interface="lo")

    assert (report["acted"], report["errors"]) == (True, [])
    assert a.running()


SCHEDULE = {"ship_interval": 7, "purge_interval": 301, "reconcile_interval": 11, "check_interval": 61}


@pytest.mark.parametrize("node, ship_enabled", [("a", True), ("b", False)], ids=["master", "backup"])
def test_jobs_have_the_pillars_intervals_and_ship_only_on_the_master(pair, node, ship_enabled):
    ha_node = getattr(pair, node)
    ha_node.configure(schedule=SCHEDULE)

    jobs = ha_node.ha.jobs()

    expected = {
        "proxysql_ha_ship": ("proxysql_ha.ship", SCHEDULE["ship_interval"], ship_enabled),
        "proxysql_ha_purge": ("proxysql_ha.purge", SCHEDULE["purge_interval"], not ship_enabled),
        "proxysql_ha_reconcile": ("proxysql_ha.reconcile", SCHEDULE["reconcile_interval"], True),
        "proxysql_ha_check": ("proxysql_ha.check", SCHEDULE["check_interval"], True),
    }
    assert {name: (job["function"], job["seconds"], job["enabled"]) for name, job in jobs.items()} == expected
    # Overlapping runs queue on the module's lock; Salt's maxrunning would drop run_job requests.
    assert all(job["jid_include"] is False and "maxrunning" not in job for job in jobs.values())


def test_without_an_engine_the_default_schedule_still_converges_a_new_master(pair):
    """The engine is the fast path; the schedule the README promises is the last resort: with the
    default pillar the reconcile job runs on both roles (600 s) and ship on the MASTER (900 s),
    and that reconcile alone promotes a node that became MASTER with nothing else asking for it."""
    b = pair.b
    b.configure()

    jobs = {name: (job["seconds"], job["enabled"]) for name, job in b.ha.jobs().items()}
    assert jobs["proxysql_ha_reconcile"] == (600, True) and jobs["proxysql_ha_ship"] == (900, False)
    pair.fail_over()  # the VIP is B's; no hook, no engine
    jobs = {name: (job["seconds"], job["enabled"]) for name, job in b.ha.jobs().items()}
    assert jobs["proxysql_ha_reconcile"] == (600, True) and jobs["proxysql_ha_ship"] == (900, True)

    assert b.ha.reconcile()["report"]["acted"]
    assert b.running()


def test_config_hides_the_ssh_private_key_and_the_ucarp_password(pair):
    a = pair.a
    a.configure(formula={"ssh_private_key": SECRET_KEY, "ucarp": {"password": SECRET_PASSWORD}})

    conf = a.ha.config()

    assert conf["formula"]["ssh_private_key"] == "<hidden>"
    assert conf["formula"]["ucarp"]["password"] == "<hidden>"
    assert "PRIVATE KEY" not in json.dumps(conf) and SECRET_PASSWORD not in json.dumps(conf)
    assert (conf["vhid"], conf["interface"], conf["datadir"]) == (1, "lo", str(a.datadir))


def test_a_master_already_in_office_never_restores_over_its_live_configuration(pair):
    """After a split brain the peer's copies can be newer by generation; the MASTER keeps its own."""
    a, b = pair.a, pair.b
    assert a.ha.reconcile()["report"]["acted"]
    pair.fail_over()
    b.ha.reconcile()  # B takes over and ships to A, generation 3
    b.save_users(9)
    b.ha.ship()
    pair.fail_over()  # both were MASTER for a while; A kept the VIP
    live = a.live_db.read_bytes()

    planned = a.ha.reconcile(test=True)

    assert not any(action.startswith("restore") for action in planned["actions"])
    a.ha.reconcile()
    assert a.live_db.read_bytes() == live
