"""
The bench's report is pure: rendered here from made-up results (no timing is asserted), and the
README's "Measured" table is checked against docs/BENCHMARKS.md, which `make bench` writes from
the same run, so the two cannot drift apart.
"""

from pathlib import Path

import pytest

from bench import lab_bench, report, run

REPO = Path(__file__).resolve().parents[2]


def _row(ms):
    return {"ours_wall_ms": ms, "ours_cpu_ms": ms / 2, "classic_wall_ms": ms * 2,
            "classic_cpu_ms": ms, "wall_ratio": 0.5, "ours_from_save_ms": ms + 500,
            "ours_from_save_cpu_ms": ms / 2}


RESULTS = {
    "local": {
        "idle": {"ship_cpu_ms": 0.5, "ship_wall_ms": 0.6, "ssh_connections": 0, "runs": 3,
                 "engine_tick_cpu_us": 20.0},
        "changed": {"large": {"size_mb": 13.5, "settle_s": 0.5, "cpu_method": "a cgroup",
                              "connections": {"cold": _row(400.0), "warm": _row(150.0)}}},
        "restore": {"large": {"ours_wall_ms": 420.0, "ours_install_ms": 110.0,
                              "classic_wall_ms": 80.0, "wall_ratio": 5.25}},
        "growth": {"skipped": "not in --parts"},
    },
    "lab": {"skipped": "not in --parts"},
}


def render(results=RESULTS):
    return report.render(results, command="make bench", machine="m", date="d", quick=False)


def test_the_summary_in_benchmarks_md_is_the_readme_table_of_the_same_results():
    text = render()
    block = report.readme_block(text)
    assert block == report.readme_table(RESULTS)
    assert "| a saved change → valid copy on the peer, 13.5 MB db, cold SSH (ours incl. the 0.5 s " \
           "settle window) | 900 ms (400 ms after the window) | 800 ms (no checks) |" in block
    assert "warm SSH" in block


def test_the_readme_table_is_replaced_between_its_markers_and_nothing_else():
    readme = f"intro\n{report.README_BEGIN}\nold table\n{report.README_END}\n\nafter\n"
    new = report.with_readme_table(readme, "| new |")
    assert new == f"intro\n{report.README_BEGIN}\n| new |\n{report.README_END}\n\nafter\n"
    with pytest.raises(SystemExit, match="markers"):
        report.with_readme_table("no markers here", "| new |")


def test_a_part_not_run_says_so_and_the_others_still_render():
    text = render()
    assert "## 4. Cost as the work grows\n\nSkipped: not in --parts." in text
    assert "## 3. Restore" in text and "420.0 ms" in text


def test_unknown_parts_are_refused_by_name():
    with pytest.raises(Exception, match="nope"):
        run.parts_list("changed,nope")
    assert run.parts_list("changed, lab") == ["changed", "lab"]


def test_the_readme_carries_the_table_of_the_committed_benchmarks_md():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    benchmarks = (REPO / "docs" / "BENCHMARKS.md").read_text(encoding="utf-8")
    assert report.readme_block(readme), "README.md has no bench table markers"
    assert report.readme_block(readme) == report.readme_block(benchmarks), (
        "README.md's Measured table differs from docs/BENCHMARKS.md: run `make bench`")


def test_the_idle_cost_shows_the_forked_jobs_and_the_readme_a_save_not_noticed():
    idle = {"seconds": 120.0, "bare_pct": 0.8, "nodes": {"a": 0.95, "b": 1.2},
            "forked_pct": {"a": 0.05, "b": 0.3}, "target_pct": 0.2}
    text = "\n".join(report._idle_cost(idle))  # pylint: disable=protected-access
    assert "| host A | 0.95 % | 0.15 % | 0.05 % | yes |" in text
    assert "| host B | 1.20 % | 0.40 % | 0.30 % | NO |" in text
    noticed = {"n": 4, "p50_ms": 120.0, "p95_ms": 240.0, "missed": 1}
    lab = {"keyed": {"rpo": {"noticed": noticed}}}
    table = report.readme_table({"local": {}, "lab": lab})
    assert "| a save noticed: saved change → the engine's run_job for the ship job, p95 | 240 ms " \
           "(1 not noticed) | – | p95 ≤ 300 ms, none missed |" in table


def _failover(key, totals, vips):
    """A keyed failover row as the lab bench aggregates it (``lab_bench.failover_summary``)."""
    rows = [{"total": total, "vip": vip} for total, vip in zip(totals, vips)]
    return dict(lab_bench.failover_summary(rows), key=key)


def test_a_failover_row_aggregates_to_proxysql_running_and_serving_on_the_vip():
    warm = _failover("warm", [None] * 10, [float(ms) for ms in range(10, 110, 10)])
    assert warm["n"] == 10 and warm["p50_ms"] is None and warm["p95_ms"] is None
    assert (warm["vip_p50_ms"], warm["vip_p95_ms"]) == (50.0, 100.0)
    cold = _failover("race", [400.0, 500.0, 450.0], [410.0, 520.0, None])
    assert (cold["n"], cold["p95_ms"], cold["vip_p95_ms"]) == (3, 500.0, 520.0)


def test_the_warm_row_stands_beside_cold_and_classic_with_its_verdict():
    failover = {"race": _failover("race", [400.0, 500.0], [410.0, 520.0]),
                "classic": _failover("classic", [90.0, 95.0], [100.0, 130.0]),
                "warm": _failover("warm", [None, None], [40.0, 101.0])}
    lab = {"failover": {f"row {key}": row for key, row in failover.items()},
           "rpo": {}, "keyed": {"failover": failover, "rpo": {}}}
    text = "\n".join(report._lab(lab))  # pylint: disable=protected-access
    assert "| row warm | 2 | – | – | 40.0 ms | 101.0 ms | p95 ≤ 100 ms on the VIP: MISSED |" in text
    assert "| row race | 2 | 400.0 ms | 500.0 ms | 410.0 ms | 520.0 ms | p95 ≤ 1 s: met |" in text
    assert "| row classic | 2 | 90.0 ms | 95.0 ms | 100.0 ms | 130.0 ms | – |" in text
    table = report.readme_table({"local": {}, "lab": lab})
    assert ("| failover p95, warm standby: up-script → serving A's last saved configuration on "
            "the VIP (a client's connect) | 101 ms (cold standby: 520 ms) | 130 ms (no checks) | "
            "p95 ≤ 100 ms on the VIP: MISSED |") in table
    failover["warm"] = _failover("warm", [None], [60.0])
    assert "p95 ≤ 100 ms on the VIP: met |" in report.readme_table({"local": {}, "lab": lab})


def test_the_idle_section_states_the_layer_check_it_was_measured_with():
    idle = {"seconds": 120.0, "bare_pct": 0.8, "nodes": {"a": 0.95, "b": 1.2},
            "forked_pct": {"a": 0.05, "b": 0.3}, "target_pct": 0.2}
    settings = {"admin_enabled": True, "layer_check": (30, 30), "standby": "cold"}
    text = "\n".join(report._idle_cost(idle, settings))  # pylint: disable=protected-access
    assert "layer check every 30 s (`admin:layer_check_interval`, the default)" in text
    settings["layer_check"] = (2, 30)
    text = "\n".join(report._idle_cost(idle, settings))  # pylint: disable=protected-access
    assert "layer check every 2 s (`admin:layer_check_interval`, the default is 30 s)" in text
    text = "\n".join(report._idle_cost(idle, dict(settings, admin_enabled=False)))  # pylint: disable=protected-access
    assert "not in use" in text and "every 2 s" not in text


def test_the_warm_apply_shows_its_steps_and_its_verdict_reaches_the_readme_table():
    results = {**RESULTS, "local": {**RESULTS["local"], "warm_apply": {"large": {
        "size_mb": 13.5, "runs": 10, "p50_ms": 900.0, "p95_ms": 950.0,
        "how": [("flush", True, True)],
        "steps_p50_ms": {"install": 150.0, "flush": 300.0, "verify": 400.0, "apply": 890.0}}}}}
    text = report.render(results, command="make bench", machine="m", date="d", quick=False)
    assert "| large | 13.5 MB | 900.0 ms | 950.0 ms | 150.0 ms | 300.0 ms | 400.0 ms | 10 | flush |" in text
    assert "13.5 MB db, p95 (install, flush, loads, verification) | 950 ms | – | " \
           "≤ 0.5 s on the large (14 MB) database: MISSED |" in report.readme_table(results)


def test_the_idle_cost_per_node_and_its_verdict_reach_the_readme_table():
    lab = {"keyed": {}, "idle": {"seconds": 120.0, "bare_pct": 0.6, "target_pct": 0.2,
                                 "nodes": {"a": 0.75, "b": 0.9}}}
    table = report.readme_table({**RESULTS, "lab": lab})
    assert "MASTER A / BACKUP B | 0.15 % / 0.30 % of a core | – | ≤ 0.2 % on each node: MISSED |" in table
    lab["idle"]["nodes"]["b"] = 0.7
    assert "0.15 % / 0.10 % of a core | – | ≤ 0.2 % on each node: met |" in report.readme_table(
        {**RESULTS, "lab": lab})
