"""
Fixtures of the end-to-end tests: the two-host lab (``lab/``), one per kind of lab.

A lab takes 15-30 s to build, so the modules that ask for the same lab (the same
``LAB_SCHEMAS``, ``LAB_PILLAR`` and ``LAB_PREEMPT``) share one (``shared_lab``), and the e2e
modules run grouped by that kind (``pytest_collection_modifyitems``), the default lab first;
one lab runs at a time. The ``lab`` fixture brings it back to the known state before each
test: A MASTER with ProxySQL running, B BACKUP with ProxySQL stopped (running on a warm
standby), a change saved on A arriving in B's inbox (``tests.e2e.pair.known_state``, which also
undoes the faults a test left). The lab needs root and network namespaces: without them every
test here is skipped with the reason. A lab keeps its directory (daemon logs, recorded events)
when one of the tests that used it failed.
"""

import contextlib
import json

import pytest

from lab import Lab, LabUnavailable
from lab.netns import require
from tests.e2e.pair import known_state


def lab_kind(module):
    """What a test module asks of its lab, as a sortable key (the default lab sorts first).

    ``LAB_SCHEMAS`` gives a host another ProxySQL version's DDL than 3.0.1 (``{"a": "2.0.18"}``),
    ``LAB_PILLAR`` keys are laid over both hosts' pillars (``{"standby": "warm"}``),
    ``LAB_PREEMPT = True`` runs ucarp with ``--preempt``.
    """
    return json.dumps([getattr(module, "LAB_SCHEMAS", {}), getattr(module, "LAB_PILLAR", {}) or {},
                       bool(getattr(module, "LAB_PREEMPT", False))], sort_keys=True)


def pytest_collection_modifyitems(items):
    """Run the e2e modules grouped by the lab they ask for (module order kept within a kind)."""
    e2e = [i for i, item in enumerate(items) if "/e2e/" in str(item.path).replace("\\", "/")]
    if not e2e:
        return
    chosen = [items[i] for i in e2e]
    default = lab_kind(None)
    chosen.sort(key=lambda item: (lab_kind(item.module) != default, lab_kind(item.module)))
    for index, item in zip(e2e, chosen):
        items[index] = item


class _Labs:
    """The one lab running now, by kind; a lab of another kind replaces it."""

    def __init__(self):
        self.kind, self.lab, self.stack, self.failed = None, None, None, False

    def get(self, kind, build):
        if kind != self.kind:
            self.close()
            self.stack = contextlib.ExitStack()
            self.lab = self.stack.enter_context(build())
            self.kind, self.failed = kind, False
        return self.lab

    def close(self):
        if self.stack is not None:
            self.lab.keep_dir = self.failed
            self.stack.close()
        self.kind, self.lab, self.stack = None, None, None


@pytest.fixture(scope="session")
def _labs():
    labs = _Labs()
    yield labs
    labs.close()


@pytest.fixture(scope="module")
def shared_lab(schema_path_of, request, _labs):
    """The lab of the module's kind (:func:`lab_kind`), A MASTER and B BACKUP once built, shared
    with the other modules of its kind; torn down when a lab of another kind is needed, or at the end."""
    try:
        require()
    except LabUnavailable as exc:
        pytest.skip(f"the two-host lab cannot run here: {exc}")
    failed = request.session.testsfailed
    module = request.module
    versions = getattr(module, "LAB_SCHEMAS", {})  # e.g. {"a": "2.0.18"}: a host's own ProxySQL

    def build():
        return Lab(schema_path_of("3.0.1"), narrate=False,
                   schemas={host: schema_path_of(version) for host, version in versions.items()},
                   preempt=getattr(module, "LAB_PREEMPT", False),
                   pillar=getattr(module, "LAB_PILLAR", None))

    lab = _labs.get(lab_kind(module), build)
    yield lab
    _labs.failed = _labs.failed or request.session.testsfailed > failed


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
