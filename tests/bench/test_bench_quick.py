"""
The quick bench (``make bench QUICK=1``) runs end to end and writes every section of the report.

It runs ``python -m bench.run --quick`` once for the module, the two-host lab included when this
machine can run it, and reads the Markdown it wrote. These tests check that the bench runs and
reports, never a timing: each section has its rows with numbers in them, or says why it was
skipped, for the reason this machine gives.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lab import LabUnavailable
from lab.netns import require
from standin import proxysql_db, sshd

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
HANG = 900  # seconds: only catches a hang (the quick bench builds two labs: cold and warm)
NUMBER = re.compile(r"\d[\d,]*(\.\d+)? (ms|µs|MB)")
LOCAL = ("1. Idle shipping tick", "2. A saved change", "3. Restore", "4. Cost as the work grows")
LAB = ("5. Failover time", "6. RPO")
LAB_ROWS = {"5. Failover time": ("as set up", "reactor alone", "master down", "classic recipe"),
            "6. RPO": ("proxysql-ha", "cron every 60 s", "transfer alone")}


def lab_unavailable():
    """Why the lab cannot run here, or None."""
    try:
        require()
    except LabUnavailable as exc:
        return str(exc)
    return None


@pytest.fixture(scope="module")
def bench(tmp_path_factory, shared_dir):
    """The quick bench's run: ``(Markdown written, what it printed)``."""
    out = tmp_path_factory.mktemp("bench") / "B.md"
    env = dict(os.environ, PROXYSQL_SCHEMA=str(proxysql_db.schema_path(shared_dir, "3.0.1")))
    proc = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--out", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=HANG,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out.read_text(encoding="utf-8"), proc.stdout


@pytest.fixture(scope="module")
def sections(bench):
    """``{heading: body}`` of the report's ``##`` sections."""
    parts = re.split(r"^## ", bench[0], flags=re.MULTILINE)[1:]
    return {part.split("\n", 1)[0].strip(): part.split("\n", 1)[1] for part in parts}


def section(sections, prefix):
    found = [body for heading, body in sections.items() if heading.startswith(prefix)]
    assert found, f"no section {prefix!r} in the report: {list(sections)}"
    return found[0]


def first_table(text):
    """The data rows (lists of cells) of the first Markdown table in ``text``."""
    table = []
    for line in text.splitlines():
        if line.startswith("|"):
            table.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif table:
            break
    return table[2:]  # after the header and its separator


def test_quick_bench_names_its_command_and_mode_and_prints_what_it_wrote(bench):
    written, printed = bench
    assert "by `make bench QUICK=1`" in written
    assert "Quick mode" in written
    assert written.strip() in printed


def test_quick_bench_fills_every_local_section_or_says_why(sections):
    why = sshd.missing()
    if why:
        assert f"Skipped: {why}." in section(sections, "On one machine")
        return
    for prefix in LOCAL:
        rows = first_table(section(sections, prefix))
        assert rows, f"section {prefix!r} has no table rows"
        for row in rows:
            assert any(NUMBER.search(cell) for cell in row[1:]), f"{prefix}: no number in {row}"


def test_quick_bench_fills_both_lab_sections_or_says_why(sections):
    why = lab_unavailable()
    if why:
        assert f"Skipped: {why}." in section(sections, "In the two-host lab")
        return
    assert not any(heading.startswith("In the two-host lab") for heading in sections), \
        section(sections, "In the two-host lab")
    for prefix in LAB:
        rows = first_table(section(sections, prefix))
        for name in LAB_ROWS[prefix]:
            matching = [row for row in rows if name in row[0]]
            assert matching, f"{prefix}: no row for {name!r} in {rows}"
            count, p50, p95 = matching[0][1:4]
            assert int(count) > 0
            assert NUMBER.fullmatch(p50) and NUMBER.fullmatch(p95), matching[0]


def test_quick_bench_times_every_failover_row_on_the_vip_and_judges_the_warm_one(sections):
    if lab_unavailable():
        pytest.skip(f"the two-host lab cannot run here: {lab_unavailable()}")
    rows = first_table(section(sections, "5. Failover time"))
    warm = [row for row in rows if "warm standby" in row[0]]
    assert warm, f"no warm row (or the warm lab failed): {section(sections, '6. RPO')}"
    assert warm[0][2:4] == ["–", "–"], warm[0]  # nothing restored on a warm standby
    for row in rows:  # serving on the VIP: p50 and p95, for every row
        assert NUMBER.fullmatch(row[4]) and NUMBER.fullmatch(row[5]), row
    assert re.fullmatch(r"p95 ≤ 100 ms on the VIP: (met|MISSED)", warm[0][6]), warm[0]
    assert "restarted: 0 of" in section(sections, "6. RPO")


def test_quick_bench_profiles_the_failover_in_the_lab(sections):
    if lab_unavailable():
        pytest.skip(f"the two-host lab cannot run here: {lab_unavailable()}")
    body = section(sections, "6. RPO")
    assert "Where the failover time goes" in body
    steps = first_table(body.split("Where the failover time goes", 1)[1])
    assert steps, body
    for row in steps:  # a step a path does not take (the reactor's, on the minion's path) is "–"
        assert all(NUMBER.fullmatch(cell) or cell == "–" for cell in row[1:]), row
        assert any(NUMBER.fullmatch(cell) for cell in row[1:]), row
    total = [row for row in steps if row[0].startswith("total")]
    assert total and all(NUMBER.fullmatch(cell) for cell in total[0][1:]), total


def test_quick_bench_counts_which_path_restored_in_each_failover_row(sections):
    if lab_unavailable():
        pytest.skip(f"the two-host lab cannot run here: {lab_unavailable()}")
    body = section(sections, "6. RPO")
    alone = re.search(r"the reactor's promote did the restore in (\d+) of (\d+)\. This is", body)
    down = re.search(r"the reactor restored in (\d+) of (\d+), as it must", body)
    assert alone and down, body
    assert alone.group(1) == alone.group(2), "with the minion's path held back the reactor restores"
    assert down.group(1) == "0", "with the Salt master down no reactor can restore"
