"""The skip policy of tests/support/skips.py: a failure under CI, a summary of reasons outside it.

Each case runs pytest in a subprocess on a small temporary test directory whose conftest uses
the suite's own hooks, once without ``CI`` and once with it.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent

CONFTEST = """
from tests.support.skips import (  # the suite's own hooks
    pytest_make_collect_report, pytest_runtest_makereport, pytest_terminal_summary)
"""

TESTS = """
import pytest
from tests.support.skips import skip_beyond_ci

def test_passes():
    pass

def test_needs_a_unicorn():
    pytest.skip("needs a unicorn")

@pytest.mark.skipif(True, reason="needs root")
def test_needs_root():
    pass

@pytest.fixture
def lab():
    pytest.skip("needs root")

def test_in_the_lab(lab):
    pass

def test_needs_another_kernel():
    skip_beyond_ci("no such qdisc in this kernel")

@pytest.mark.xfail(reason="a known bug, not a skip")
def test_known_bug():
    assert False
"""

MODULE_SKIP = """
import pytest
pytest.skip("needs ../shared", allow_module_level=True)

def test_never_collected():
    pass
"""


def run(tmp_path, ci, *options):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_sample.py").write_text(TESTS)
    (tmp_path / "test_module_skip.py").write_text(MODULE_SKIP)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(REPO)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", *options,
                           str(tmp_path)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.parametrize("ci", [None, ""], ids=["unset", "empty"])
def test_outside_ci_tests_skip_and_the_run_says_what_they_need(tmp_path, ci):
    out = run(tmp_path, ci)

    assert out.returncode == 0, out.stdout
    assert "1 passed, 5 skipped, 1 xfailed" in out.stdout
    summary = out.stdout.split("5 tests skipped: what they need", 1)[1]
    assert "    2  needs root" in summary
    assert "    1  needs a unicorn" in summary
    assert "    1  needs ../shared" in summary
    assert "    1  beyond CI: no such qdisc in this kernel" in summary


def test_under_ci_every_skip_is_a_failure_naming_what_is_missing(tmp_path):
    out = run(tmp_path, "1", "--continue-on-collection-errors")  # a module-level skip is a collection error

    assert out.returncode == 1, out.stdout
    assert "1 failed, 1 passed, 1 skipped, 1 xfailed, 3 errors" in out.stdout  # a skip at setup is an error
    for reason in ("needs a unicorn", "needs root", "needs ../shared"):
        assert f"skipped under CI, which must provide what it needs: {reason}" in out.stdout
    summary = out.stdout.split("1 tests skipped: what they need", 1)[1].split("(CI is set", 1)[0]
    assert "beyond CI: no such qdisc in this kernel" in summary and "needs root" not in summary
