"""The plan of a transition, on data: every rule of ``proxysql_ha_plan.plan``."""

import proxysql_ha_plan
import pytest

HEALTH = {"enabled": True, "grace": 5.0, "hold_down": 30.0}


def facts(**changes):
    """A MASTER in office with ProxySQL running: nothing to do."""
    base = {"role": "MASTER", "running": True, "recorded": {"role": "MASTER", "since": 1.0},
            "journal": None, "progress": None, "schedule": {}, "stop_on_backup": True,
            "vip": {}, "health": dict(HEALTH), "now": 1000.0}
    base.update(changes)
    return base


def plan(**changes):
    return proxysql_ha_plan.plan(facts(**changes))


def chosen(result):
    """What the plan does, without its words."""
    return {k for k, v in result.items() if v is True or (k == "takeover" and v)}


def test_a_master_in_office_with_proxysql_running_has_nothing_to_do():
    result = plan()
    assert (result["actions"], chosen(result)) == ([], set())


def test_a_node_that_becomes_master_takes_over_and_starts_proxysql():
    result = plan(recorded={"role": "BACKUP", "since": 5.0}, running=False)
    assert result["takeover"] == "restore"
    assert result["actions"] == ["take over as MASTER", "start ProxySQL"]
    assert result["start"] and result["release_if_down"]


def test_a_takeover_whose_copy_is_live_only_finishes_even_if_role_json_says_backup():
    journal = {"transition": "promote", "since": 900.0, "restoring": "copy-x", "replacing": 1}
    result = plan(recorded={"role": "BACKUP", "since": 5.0}, journal=journal, progress="installed")
    assert result["takeover"] == "finish"
    assert result["actions"] == ["finish the takeover begun at 1970-01-01T00:15:00Z (copy-x is live)"]


def test_a_takeover_interrupted_before_its_install_resumes():
    journal = {"transition": "promote", "since": 900.0, "restoring": "copy-x", "replacing": 1}
    result = plan(recorded={"role": "BACKUP"}, journal=journal, progress="restore", running=False)
    assert result["takeover"] == "restore"
    assert result["actions"][0] == "take over as MASTER (resuming the takeover begun at 1970-01-01T00:15:00Z)"


def test_a_master_in_office_with_proxysql_down_restarts_it_and_would_release_the_vip():
    result = plan(running=False)
    assert (result["takeover"], result["start"], result["release_if_down"]) == (None, True, True)
    assert result["actions"] == ["start ProxySQL"]


def test_without_the_health_rule_a_down_proxysql_is_only_restarted():
    result = plan(running=False, health=dict(HEALTH, enabled=False))
    assert (result["start"], result["release_if_down"]) == (True, False)


def test_a_released_master_with_proxysql_still_down_keeps_the_vip_released():
    result = plan(running=False, vip={"released": True, "since": 990.0})
    assert result["release_if_down"]
    assert "keep the VIP released while ProxySQL is down" in result["actions"]


def test_the_hold_down_keeps_a_released_vip_released_even_when_proxysql_runs():
    early = plan(vip={"released": True, "since": 980.0})
    late = plan(vip={"released": True, "since": 960.0})
    assert (early["reclaim"], early["actions"]) == (False, [])
    assert late["reclaim"] and late["actions"] == ["reclaim the VIP: ProxySQL runs again"]


def test_a_backup_that_was_master_hands_over_and_stops_proxysql():
    result = plan(role="BACKUP")
    assert (result["handover"], result["stop"]) == (True, True)
    assert result["actions"] == ["hand over as BACKUP", "stop ProxySQL"]


def test_an_unfinished_journal_on_a_backup_is_handed_over():
    journal = {"transition": "promote", "since": 900.0, "restoring": None, "replacing": 1}
    result = plan(role="BACKUP", recorded={"role": "BACKUP"}, journal=journal, running=False)
    assert result["handover"] and result["actions"] == ["hand over as BACKUP"]


def test_a_backup_in_line_has_nothing_to_do():
    result = plan(role="INIT", recorded={"role": "BACKUP"}, running=False)
    assert (result["actions"], chosen(result)) == ([], set())


def test_a_backup_keeps_proxysql_running_without_stop_on_backup():
    result = plan(role="BACKUP", recorded={"role": "BACKUP"}, stop_on_backup=False)
    assert (result["actions"], result["stop"]) == ([], False)


def test_a_released_backup_probes_proxysql_after_the_hold_down_only():
    base = dict(role="BACKUP", recorded={"role": "BACKUP"}, running=False)
    assert plan(**base, vip={"released": True, "since": 990.0})["probe"] is False
    late = plan(**base, vip={"released": True, "since": 960.0})
    assert late["probe"] and late["stop"]
    assert late["actions"] == ["try starting ProxySQL (the VIP was released while it was down)"]


def test_a_released_backup_whose_proxysql_runs_again_reclaims_the_vip_and_stops_it():
    result = plan(role="BACKUP", recorded={"role": "BACKUP"}, vip={"released": True, "since": 960.0})
    assert (result["reclaim"], result["stop"], result["probe"]) == (True, True, False)
    assert result["actions"] == ["reclaim the VIP: ProxySQL runs again", "stop ProxySQL"]


@pytest.mark.parametrize("role", ["MASTER", "BACKUP"])
def test_schedule_changes_are_actions(role):
    result = plan(role=role, recorded={"role": role}, running=role == "MASTER",
                  schedule={"proxysql_ha_ship": role == "MASTER"})
    verb = "enable" if role == "MASTER" else "disable"
    assert result["actions"] == [f"{verb} schedule job proxysql_ha_ship"]
    assert result["schedule"] == {"proxysql_ha_ship": role == "MASTER"}


def test_a_takeover_found_installed_without_a_journal_only_finishes():
    result = plan(recorded={"role": "BACKUP", "since": 5.0}, progress="installed")
    assert result["takeover"] == "finish"
    assert result["actions"] == ["finish the takeover begun at an unknown time"]


def test_a_released_backup_tries_proxysql_once_per_hold_down():
    base = dict(role="BACKUP", recorded={"role": "BACKUP"}, running=False)
    assert plan(**base, vip={"released": True, "since": 900.0, "probed": 990.0})["probe"] is False
    assert plan(**base, vip={"released": True, "since": 900.0, "probed": 960.0})["probe"] is True


# ---- a warm standby ------------------------------------------------------------------

WARM = dict(role="BACKUP", recorded={"role": "BACKUP"}, stop_on_backup=False, standby="warm")
SAME_LAYOUT = {"name": "copy-7", "tables": {"kept": ["mysql_users"], "migrated": {},
                                             "recreated_empty": [], "created_empty": []}}


def test_a_warm_backup_applies_a_received_backup_of_its_layout_to_the_running_proxysql():
    result = plan(**WARM, received=SAME_LAYOUT)
    assert (result["apply"], result["stop"], result["start"]) == ("flush", False, False)
    assert result["actions"] == ["apply copy-7 to the running ProxySQL"]


@pytest.mark.parametrize("tables", [{"migrated": {"mysql_servers": "mysql_servers_v301"}},
                                    {"created_empty": ["mysql_servers_ssl_params"]},
                                    {"recreated_empty": ["scheduler"]}])
def test_a_received_backup_that_needs_a_migration_is_applied_with_a_restart(tables):
    result = plan(**WARM, received=dict(SAME_LAYOUT, tables=dict(SAME_LAYOUT["tables"], **tables)))
    assert result["apply"] == "restart"
    assert proxysql_ha_plan.needs_migration(SAME_LAYOUT) is False


def test_a_warm_backup_whose_proxysql_is_down_installs_before_starting_it():
    result = plan(**dict(WARM, running=False), received=SAME_LAYOUT)
    assert (result["apply"], result["start"]) == ("restart", True)


def test_a_warm_backup_in_line_has_nothing_to_do_and_a_stopped_one_is_started():
    assert (plan(**WARM)["actions"], plan(**WARM)["apply"]) == ([], None)
    stopped = plan(**dict(WARM, running=False))
    assert (stopped["start"], stopped["apply"], stopped["stop"]) == (True, None, False)


def test_an_apply_a_crash_cut_short_is_finished_by_loading_the_live_db_again():
    result = plan(**WARM, journal={"transition": "apply", "since": 900.0, "restoring": "copy-7"})
    assert result["apply"] == "reload"
    assert result["handover"] is False  # an apply is no hand-over


def test_a_cold_backup_and_a_master_never_apply():
    assert plan(**dict(WARM, standby="cold"), received=SAME_LAYOUT)["apply"] is None
    assert plan(standby="warm", received=SAME_LAYOUT)["apply"] is None
