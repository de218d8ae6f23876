"""The metrics file: node_exporter's textfile format, read back by Prometheus' reference parser."""

import configparser
import os
import stat
from pathlib import Path

import proxysql_ha_metrics
import proxysql_ha_store
import pytest
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
NOW = 1_800_000_000.0
# A BACKUP whose ProxySQL is stopped, with a valid local and received backup, a failed last
# ship, and one problem (received_invalid) -- every number below is checked in the file.
REPORT = {
    "node_id": "node-b",
    "role": "BACKUP",
    "proxysql_running": False,
    "problems": [{"kind": "received_invalid", "message": "bad sha256"}],
    "newest_backup": {"name": "x", "valid": False, "age": 5.0, "generation": 9},
    "newest_valid_backup": {"name": "y", "valid": True, "age": 42.5, "generation": 7},
    "newest_valid_received": {"name": "z", "valid": True, "age": 3.25, "generation": 8},
    "last_ship": {"ok": False, "last_success": NOW - 100, "last_attempt": NOW - 10},
}
COUNTERS = {"ship_failures": 4, "restores": 2, "failovers": 3, "last_restore_ms": 91.5}


def parse(text):
    """``{sample name: {frozenset(labels): value}}`` and the families, as Prometheus reads them."""
    families = list(text_string_to_metric_families(text))
    samples = {}
    for family in families:
        for sample in family.samples:
            samples.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return families, samples


def one(samples, name, **labels):
    return samples[name][frozenset(labels.items())]


def render(report=REPORT, counters=COUNTERS, role_state=None):
    return proxysql_ha_metrics.render(
        proxysql_ha_metrics.facts(report, counters, role_state, "0.1.0", NOW))


def test_the_file_reads_back_with_the_values_of_the_node():
    families, samples = parse(render(role_state={"role": "BACKUP", "vip_released": 2}))
    assert one(samples, "proxysql_ha_info", version="0.1.0") == 1
    assert [one(samples, "proxysql_ha_role", role=r) for r in ("MASTER", "BACKUP", "INIT")] == [0, 1, 0]
    assert one(samples, "proxysql_ha_proxysql_running") == 0
    assert "proxysql_ha_proxysql_serving" not in samples  # not reported by status: left out
    assert one(samples, "proxysql_ha_backup_age_seconds", source="local") == 42.5
    assert one(samples, "proxysql_ha_backup_age_seconds", source="received") == 3.25
    assert one(samples, "proxysql_ha_backup_generation", source="local") == 7
    assert one(samples, "proxysql_ha_backup_generation", source="received") == 8
    assert one(samples, "proxysql_ha_last_ship_success_timestamp_seconds") == NOW - 100
    assert one(samples, "proxysql_ha_ship_failures_total") == 4
    assert one(samples, "proxysql_ha_restores_total") == 2
    assert one(samples, "proxysql_ha_last_restore_duration_seconds") == pytest.approx(0.0915)
    assert one(samples, "proxysql_ha_failovers_total") == 3
    assert one(samples, "proxysql_ha_vip_releases_total") == 2
    problems = samples["proxysql_ha_problem"]
    assert {dict(k)["kind"]: v for k, v in problems.items()} == {
        kind: (1 if kind == "received_invalid" else 0) for kind in proxysql_ha_metrics.PROBLEM_KINDS}
    types = {f.name: f.type for f in families}
    assert types["proxysql_ha_ship_failures"] == "counter"
    assert types["proxysql_ha_role"] == "gauge"


def test_every_metric_has_help_and_type_and_one_prefix():
    text = render()
    lines = text.splitlines()
    names = {line.split()[2] for line in lines if line.startswith("# TYPE")}
    helps = {line.split()[2] for line in lines if line.startswith("# HELP")}
    assert names == helps and len(names) >= 14
    assert all(name.startswith("proxysql_ha_") for name in names)
    counters = {line.split()[2] for line in lines if line.startswith("# TYPE") and line.endswith("counter")}
    assert counters and all(name.endswith("_total") for name in counters)
    # no label outside the small fixed sets (role, source, kind, version)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert set(sample.labels) <= {"role", "source", "kind", "version"}


def test_an_unreadable_node_leaves_its_unknowns_out_and_counts_zero():
    report = {"node_id": "n", "role": None, "proxysql_running": None,
              "problems": [{"kind": "role_unreadable", "message": "x"},
                           {"kind": "proxysql_unknown", "message": "y"}]}
    _, samples = parse(render(report, counters=None))
    assert "proxysql_ha_role" not in samples and "proxysql_ha_proxysql_running" not in samples
    assert "proxysql_ha_backup_age_seconds" not in samples
    assert one(samples, "proxysql_ha_ship_failures_total") == 0
    assert one(samples, "proxysql_ha_vip_releases_total") == 0  # no vip_released in state yet
    assert one(samples, "proxysql_ha_problem", kind="role_unreadable") == 1
    assert one(samples, "proxysql_ha_problem", kind="backup_stale") == 0


def test_serving_is_published_once_status_reports_it():
    _, samples = parse(render(dict(REPORT, proxysql_serving=True)))
    assert one(samples, "proxysql_ha_proxysql_serving") == 1


def test_a_problem_kind_it_does_not_know_is_still_a_gauge():
    report = dict(REPORT, problems=[{"kind": "config_unsaved", "message": "m"}])
    _, samples = parse(render(report))
    assert one(samples, "proxysql_ha_problem", kind="config_unsaved") == 1


def test_bump_counts_and_refuses_unknown_counters():
    counters = proxysql_ha_metrics.bump({}, "restores", last_restore_ms=12.0)
    counters = proxysql_ha_metrics.bump(counters, "restores")
    assert counters == {"restores": 2, "last_restore_ms": 12.0}
    with pytest.raises(ValueError, match="unknown counter"):
        proxysql_ha_metrics.bump(counters, "restorez")


def test_the_file_is_replaced_atomically_and_readable_by_the_collector(tmp_path):
    old = tmp_path / "proxysql_ha.prom"
    old.write_text("old\n")
    inode = old.stat().st_ino
    path = proxysql_ha_metrics.write_textfile(str(tmp_path), "proxysql_ha.prom", render(),
                                              proxysql_ha_store.new_tmp, proxysql_ha_store.publish)
    assert path == str(old)
    assert old.stat().st_ino != inode  # a new file renamed over the old one
    assert stat.S_IMODE(old.stat().st_mode) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["proxysql_ha.prom"]  # no temporary left behind
    parse(old.read_text())


def test_the_version_is_setup_cfgs():
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    assert proxysql_ha_metrics.version() == parser["metadata"]["version"]
