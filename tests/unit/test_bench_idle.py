"""The idle-cost part of the lab bench: its report section on data, and the process-family reader on this machine."""

import os
import subprocess
import sys

from bench import lab_bench, report


def test_the_idle_section_shows_each_node_above_the_bare_minion_against_the_target():
    lines = report._idle_cost({"seconds": 120.0, "bare_pct": 0.5, "nodes": {"a": 0.6, "b": 0.95},  # pylint: disable=protected-access
                          "forked_pct": {"a": 0.04}, "target_pct": 0.2})
    text = "\n".join(lines)
    assert "## Idle cost per node" in text
    assert "| host A | 0.60 % | 0.10 % | 0.04 % | yes |" in text
    assert "| host B | 0.95 % | 0.45 % | – | NO |" in text  # its forks not measured: said so
    assert "bare salt-minion" in text and "120 s" in text


def test_a_skipped_idle_measurement_says_why():
    text = "\n".join(report._idle_cost({"skipped": "no cgroup"}))  # pylint: disable=protected-access
    assert "Skipped: no cgroup." in text


def test_the_family_of_a_process_holds_its_children_and_grandchildren():
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code])
    family = []
    try:
        for _ in range(200):
            family = lab_bench._family(os.getpid())  # pylint: disable=protected-access
            if len([p for p in family if p != os.getpid()]) >= 2:
                break
            subprocess.run(["sleep", "0.05"], check=True)
        assert os.getpid() in family and child.pid in family
        assert len(family) >= 3  # this process, the child and the grandchild (at least)
    finally:
        for pid in lab_bench._family(child.pid)[1:]:  # pylint: disable=protected-access
            os.kill(pid, 9)  # the grandchild this test started, by its pid
        child.kill()
        child.wait()


def test_a_process_is_named_by_the_last_name_salt_appended_to_its_title():
    argv = b"/venv/bin/python /venv/bin/salt-minion -c /lab/a/salt/etc -l quiet"
    assert lab_bench.process_label(argv + b" MultiMinionProcessManager MinionProcessManager\0") \
        == "MinionProcessManager"
    assert lab_bench.process_label(argv + b" MultiMinionProcessManager MinionProcessManager "
                                   b"Engine(salt.loaded.ext.engines.proxysql_ha)\0") \
        == "Engine(salt.loaded.ext.engines.proxysql_ha)"
    # never retitled (the keep-alive parent): its arguments are still NUL-separated
    assert lab_bench.process_label(argv.replace(b" ", b"\0") + b"\0") == "salt-minion"
    assert lab_bench.process_label(b"") == "(gone)"


def test_the_profile_shows_each_process_of_each_minion_beside_the_bare_one():
    idle = {"seconds": 120.0, "bare_pct": 0.6, "nodes": {"a": 0.9, "b": 0.7},
            "forked_pct": {"a": 0.05, "b": 0.0, "bare": 0.0}, "target_pct": 0.2,
            "processes": {"a": [["salt-minion", 0.0], ["MinionProcessManager", 0.62],
                                ["Engine(x)", 0.2], ["Engine(x)", 0.03]],
                          "b": [["salt-minion", 0.0], ["MinionProcessManager", 0.61], ["Engine(x)", 0.09]],
                          "bare": [["salt-minion", 0.0], ["MinionProcessManager", 0.6]]}}
    text = "\n".join(report._idle_cost(idle))  # pylint: disable=protected-access
    assert "|  | host A | host B | bare salt-minion |" in text
    assert "| `MinionProcessManager` | 0.62 % | 0.61 % | 0.60 % |" in text
    assert "| `Engine(x)` | 0.23 % | 0.09 % | – |" in text  # two of one name: summed; none in the bare one
    assert "| forked jobs (the rest of the cgroup) | 0.05 % | 0.00 % | 0.00 % |" in text


def test_without_a_profile_the_idle_section_has_no_process_table():
    text = "\n".join(report._idle_cost({"seconds": 15.0, "bare_pct": 0.5, "nodes": {"a": 0.6},  # pylint: disable=protected-access
                                        "target_pct": 0.2}))
    assert "host A" in text and "Where it goes" not in text


def test_an_idle_only_lab_run_says_the_failover_rows_were_not_run():
    idle = {"seconds": 120.0, "bare_pct": 0.5, "nodes": {"a": 0.6}, "target_pct": 0.2}
    text = "\n".join(report._lab({"idle": idle}))  # pylint: disable=protected-access
    assert "Skipped: only its idle cost was run." in text and "## Idle cost per node" in text


def test_the_lab_idle_part_is_chosen_alone_and_the_lab_is_not_run_without_a_lab_part():
    from bench import run  # pylint: disable=import-outside-toplevel

    assert run.parts_list("lab_idle") == ["lab_idle"]
    assert run.run_lab(True, True, ["changed"]) == {"skipped": "not in --parts"}
    assert run.run_lab(True, False, ["lab_idle"]) == {"skipped": "--no-lab given"}
