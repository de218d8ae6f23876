"""pytest hooks that keep skips honest (tests/conftest.py imports them).

- With ``CI`` set (non-empty), a skip is a failure: whatever a test needs (``../shared``, root,
  network namespaces, sshd, ucarp, ...) CI must provide, so a skip there would hide a whole layer.
- Outside CI a test may skip; the run ends with how many did and what they need, grouped by reason.
- ``skip_beyond_ci(reason)`` is for what no CI job can provide (a kernel feature the runner's
  kernel lacks, say): such a skip stays a skip under CI, and says so.
"""

import collections
import os

import pytest


BEYOND_CI = "beyond CI: "


def skip_beyond_ci(reason):
    """Skip for a reason no CI job can satisfy; it stays a skip (and is listed) under CI."""
    pytest.skip(BEYOND_CI + reason)


def in_ci():
    return bool(os.environ.get("CI"))


def _reason(report):
    """The reason a skipped report gives (pytest's ``longrepr`` is ``(path, line, "Skipped: ...")``)."""
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ")


def _fail_skip(report):
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = _reason(report)
        if reason.startswith(BEYOND_CI):
            return
        report.outcome = "failed"
        report.longrepr = (f"skipped under CI, which must provide what it needs: {reason}\n"
                           "(CI is set: every skip is a failure; unset CI to let it skip)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # pylint: disable=unused-argument
    outcome = yield
    _fail_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):  # pylint: disable=unused-argument
    outcome = yield
    _fail_skip(outcome.get_result())


def pytest_terminal_summary(terminalreporter):
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if not hasattr(r, "wasxfail")]
    if not skipped:
        return
    reasons = collections.Counter(_reason(r) for r in skipped)
    terminalreporter.section(f"{len(skipped)} tests skipped: what they need")
    for reason, count in reasons.most_common():
        terminalreporter.line(f"{count:5d}  {reason}")
    terminalreporter.line("(CI is set: only skips beyond CI's reach remain)" if in_ci() else
                          "(with CI set, each of these is a failure unless it is beyond CI)")
