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
