"""
Fixtures of the end-to-end tests: the two-host lab (``lab/``), one per test module.

A lab takes about 14 s to build, so the tests of a module share one (``shared_lab``); the
``lab`` fixture brings it back to the known state before each test: A MASTER with ProxySQL
running, B BACKUP with ProxySQL stopped, a change saved on A arriving in B's inbox
(``tests.e2e.pair.known_state``, which also undoes the faults a test left). The lab needs root
and network namespaces: without them every test here is skipped with the reason. A module's
lab keeps its directory (daemon logs, recorded events) when one of its tests failed.
"""

import pytest

from lab import Lab, LabUnavailable
from lab.netns import require
from tests.e2e.pair import known_state


@pytest.fixture(scope="module")
def shared_lab(schema_path_of, request):
    """The module's lab, A MASTER and B BACKUP once built; torn down after its last test. A test
    module's ``LAB_SCHEMAS`` gives a host another ProxySQL version's DDL than 3.0.1, its
    ``LAB_PILLAR`` keys are laid over both hosts' pillars (``{"standby": "warm"}``), and
    ``LAB_PREEMPT = True`` runs ucarp with ``--preempt``."""
    try:
        require()
    except LabUnavailable as exc:
        pytest.skip(f"the two-host lab cannot run here: {exc}")
    failed = request.session.testsfailed
    versions = getattr(request.module, "LAB_SCHEMAS", {})  # e.g. {"a": "2.0.18"}: a host's own ProxySQL
    with Lab(schema_path_of("3.0.1"), narrate=False,
             schemas={host: schema_path_of(version) for host, version in versions.items()},
             preempt=getattr(request.module, "LAB_PREEMPT", False),
             pillar=getattr(request.module, "LAB_PILLAR", None)) as lab:
        yield lab
        lab.keep_dir = request.session.testsfailed > failed


@pytest.fixture
def lab(shared_lab):
    """The module's lab in the known state."""
    known_state(shared_lab)
    return shared_lab


@pytest.fixture
def summary(capsys):
    """``summary(text)``: print a test's key timings on the terminal, even when captured."""

    def say(text):
        with capsys.disabled():
            print(f"\n  e2e: {text}", flush=True)

    return say
