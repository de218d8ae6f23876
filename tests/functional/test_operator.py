"""The operator's verbs through Salt's real loader: metrics, the beacon, restore and the role, status and check.

Node A is MASTER (its VIP on lo), B is BACKUP; each runs the ProxySQL stand-in on its own database.
"""

import copy
import os

import pytest
import salt.loader
from prometheus_client.parser import text_string_to_metric_families
from salt.exceptions import CommandExecutionError

from tests.functional.conftest import REPO


def samples(text):
    """``{(sample name, frozenset(labels)): value}`` as Prometheus' reference parser reads ``text``."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found, name, **labels):
    return found[(name, frozenset(labels.items()))]


# ---- metrics ----------------------------------------------------------------------------------


def test_metrics_file_holds_the_nodes_state_as_prometheus_reads_it(pair, tmp_path):
    a, b = pair.a, pair.b
    collector = tmp_path / "textfile"
    collector.mkdir()
    shipped = a.ha.ship()["name"]
    a.ha.promote()  # A takes office: ProxySQL started
    b.configure(metrics={"textfile_dir": str(collector)})

    report = b.ha.metrics()

    path = collector / "proxysql_ha.prom"
    assert report["written"] == str(path)
    assert path.read_text() == report["metrics"]
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert sorted(os.listdir(collector)) == ["proxysql_ha.prom"]
    found = samples(path.read_text())
    assert value(found, "proxysql_ha_role", role="BACKUP") == 1
    assert value(found, "proxysql_ha_role", role="MASTER") == 0
    assert value(found, "proxysql_ha_proxysql_running") == 0
    generation = int(shipped.split("-g")[1].split("-")[0])
    assert value(found, "proxysql_ha_backup_generation", source="received") == generation
    assert 0 <= value(found, "proxysql_ha_backup_age_seconds", source="received") < 120
    assert ("proxysql_ha_backup_generation", frozenset({("source", "local")})) not in found  # B made none
    assert value(found, "proxysql_ha_restores_total") == 0
    assert value(found, "proxysql_ha_problem", kind="received_invalid") == 0



def test_counters_survive_across_calls_and_count_restores_and_failovers(pair, tmp_path):
    a, b = pair.a, pair.b
    a.ha.ship()
    b.ha.restore(start=False)
    pair.fail_over()  # B becomes MASTER and takes over

    b.ha.promote()
    found = samples(b.ha.metrics()["metrics"])

    assert value(found, "proxysql_ha_restores_total") == 1  # the promote found nothing newer
    assert value(found, "proxysql_ha_failovers_total") == 1
    assert value(found, "proxysql_ha_role", role="MASTER") == 1
    assert value(found, "proxysql_ha_proxysql_running") == 1
    assert value(found, "proxysql_ha_last_restore_duration_seconds") > 0


def test_a_failed_ship_is_counted(pair):
    a = pair.a
    pair.b.inbox_dir.parent.mkdir(parents=True, exist_ok=True)
    pair.b.inbox_dir.write_text("a file where the peer's inbox should be")
    for _ in range(2):
        with pytest.raises(CommandExecutionError):
            a.ha.ship()
    found = samples(a.ha.metrics()["metrics"])
    assert value(found, "proxysql_ha_ship_failures_total") == 2
    assert value(found, "proxysql_ha_problem", kind="ship_failed") == 1


def test_check_writes_the_metrics_file_when_configured(pair, tmp_path):
    a = pair.a
    collector = tmp_path / "collector"
    collector.mkdir()
    a.ha.ship()
    a.ha.promote()
    a.configure(metrics={"textfile_dir": str(collector)})

    assert a.ha.check() is True

    found = samples((collector / "proxysql_ha.prom").read_text())
    assert value(found, "proxysql_ha_role", role="MASTER") == 1
    assert value(found, "proxysql_ha_backup_generation", source="local") >= 1


# ---- restore and the role ----------------------------------------------------------------------


def test_restore_on_a_master_in_office_is_refused_unless_forced(pair):
    a = pair.a
    a.ha.ship()  # a valid backup of A's own
    a.ha.promote()  # A is MASTER in office
    live = a.live_db.read_bytes()

    with pytest.raises(CommandExecutionError, match="MASTER in office.*force=True"):
        a.ha.restore()
    assert a.live_db.read_bytes() == live
    assert a.running()

    would = a.ha.restore(test=True)
    assert (would["refused"], would["role"], would["restored"]) == (True, "MASTER", False)
    assert would["comment"].startswith("would refuse: this node is the MASTER in office")

    forced = a.ha.restore(force=True)
    assert (forced["restored"], forced["role"]) == (True, "MASTER") and a.running()
    assert os.path.isfile(forced["pre_restore_copy"])


def test_restore_test_on_a_backup_says_proxysql_stays_stopped(pair):
    a, b = pair.a, pair.b
    shipped = a.ha.ship()["name"]

    would = b.ha.restore(test=True)

    assert (would["refused"], would["would_start"], would["chosen"]) == (False, False, shipped)
    assert "ProxySQL would stay stopped" in would["comment"] and "start ProxySQL" not in would["comment"]
    done = b.ha.restore()
    assert (done["restored"], done["started"]) == (True, False)
    assert not b.running()


# ---- status and check -------------------------------------------------------------------------


def test_status_exits_non_zero_when_the_role_cannot_be_read(pair):
    b = pair.b
    b.ha.status()
    b.loaders.context.pop("retcode", None)
    assert b.ha.status()["role"] == "BACKUP" and b.loaders.context.get("retcode", 0) == 0
    b.configure(role_source="freebsd_carp")  # Linux has no carp(4) in ifconfig: unreadable

    report = b.ha.status()

    assert report["role"] is None
    assert "role_unreadable" in [p["kind"] for p in report["problems"]]
    assert b.loaders.context.get("retcode") == 1


def test_check_is_not_green_without_a_datadir_or_shipping_keys(pair, tmp_path):
    a = pair.a
    a.ha.ship()
    a.ha.promote()
    a.configure(datadir=str(tmp_path / "no-datadir"),
                peer={"transport": "ssh", "host": "192.0.2.12",
                      "identity_file": str(tmp_path / "no-key"),
                      "known_hosts": str(tmp_path / "no-known-hosts")})

    assert a.ha.check() is False
    kinds = {p["kind"]: p["message"] for p in a.ha.status()["problems"]}
    assert "datadir_missing" in kinds and "proxysql_ha:datadir" in kinds["datadir_missing"]
    assert "ssh_key_missing" in kinds and "ssh_private_key" in kinds["ssh_key_missing"]


# ---- the beacon through Salt's loader ---------------------------------------------------------


def beacon_loader(node):
    opts = copy.deepcopy(node.loaders.opts)
    opts["beacons_dirs"] = [os.path.join(REPO, "_beacons")]
    context = {}
    assert node.ha  # the node's pillar loaded into its modules, which the beacon calls
    beacons = salt.loader.beacons(opts, node.loaders.modules, context=context)
    return beacons, context


def test_the_beacon_sends_one_event_per_new_and_cleared_problem(pair):
    a = pair.a
    a.ha.ship()
    a.ha.promote()
    beacons, context = beacon_loader(a)
    config = [{"interval": 60}]

    assert beacons["proxysql_ha.validate"](config) == (True, "valid proxysql_ha beacon configuration")
    assert beacons["proxysql_ha.beacon"](config) == []  # healthy: nothing to say
    a.standin("stop")  # the MASTER's ProxySQL dies
    raised = beacons["proxysql_ha.beacon"](config)
    assert [(e["tag"], e["state"]) for e in raised] == [("alert/master_proxysql_down", "raised")]
    assert raised[0]["node_id"] == "node-a" and raised[0]["role"] == "MASTER"
    assert beacons["proxysql_ha.beacon"](config) == []  # still down: no repeat
    assert a.standin("start").returncode == 0
    cleared = beacons["proxysql_ha.beacon"](config)
    assert [(e["tag"], e["state"]) for e in cleared] == [("alert/master_proxysql_down", "cleared")]
    assert "proxysql_ha.beacon.problems" in context


@pytest.mark.parametrize("config, message", [
    ({"cleared": "yes"}, "'cleared' must be true or false"),
    ([{"interval": 10}, {"colour": "red"}], "unknown option(s) colour"),
    ("interval: 10", "must be a list of mappings"),
])
def test_the_beacon_refuses_a_bad_configuration(pair, config, message):
    beacons, _ = beacon_loader(pair.a)
    valid, comment = beacons["proxysql_ha.validate"](config)
    assert valid is False and message in comment
