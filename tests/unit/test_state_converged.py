"""The state ``proxysql_ha.converged``: its own logic, around ``proxysql_ha.reconcile``.

``reconcile`` is replaced by a fake that answers with the plans a node would give, one per call
(``test=True`` first, then the real run, then ``test=True`` again to see what remains).
"""

import pytest
from salt.exceptions import CommandExecutionError

from _states import proxysql_ha

PENDING = ["restore proxysql-ha-g0000000002-20261125T184816123Z-node-a", "start ProxySQL"]


def plan(actions, role="MASTER"):
    """What ``reconcile(test=True)`` answers."""
    transition = "promote" if role == "MASTER" else "demote"
    return {"role": role, "actions": actions, "would_run": transition if actions else None, "test": True}


def ran(errors=()):
    """What a real ``reconcile()`` answers after running promote."""
    return {"role": "MASTER", "actions": PENDING, "would_run": "promote", "comment": "ran promote",
            "report": {"acted": True, "role": "MASTER", "errors": list(errors)}}


class FakeReconcile:
    """``proxysql_ha.reconcile``: answers ``replies`` in order (raises those that are exceptions)."""

    def __init__(self):
        self.replies = []
        self.calls = []

    def __call__(self, test=False):
        self.calls.append({"test": test})
        reply = self.replies[len(self.calls) - 1]
        if isinstance(reply, Exception):
            raise reply
        return reply


@pytest.fixture
def reconcile():
    return FakeReconcile()


@pytest.fixture
def configure_loader_modules(reconcile):
    return {proxysql_ha: {"__salt__": {"proxysql_ha.reconcile": reconcile}, "__opts__": {"test": False}}}


@pytest.fixture
def dry_run(monkeypatch):
    """The state runs with ``test=True``."""
    monkeypatch.setitem(proxysql_ha.__opts__, "test", True)


def test_a_converged_node_reports_no_changes_and_runs_nothing(reconcile):
    reconcile.replies = [plan([])]

    ret = proxysql_ha.converged("pair")

    assert ret == {"name": "pair", "result": True, "changes": {}, "comment": "MASTER: converged"}
    assert reconcile.calls == [{"test": True}]


@pytest.mark.usefixtures("dry_run")
def test_pending_transition_in_test_mode_names_it_and_changes_nothing(reconcile):
    reconcile.replies = [plan(PENDING)]

    ret = proxysql_ha.converged("pair")

    assert (ret["result"], ret["changes"]) == (None, {})
    assert "would run promote" in ret["comment"]
    assert all(action in ret["comment"] for action in PENDING)
    assert reconcile.calls == [{"test": True}]


@pytest.mark.usefixtures("dry_run")
def test_converged_node_in_test_mode_is_true_not_none(reconcile):
    reconcile.replies = [plan([], role="BACKUP")]

    ret = proxysql_ha.converged("pair")

    assert (ret["result"], ret["changes"], ret["comment"]) == (True, {}, "BACKUP: converged")


def test_pending_transition_runs_it_and_reports_old_and_new_actions(reconcile):
    reconcile.replies = [plan(PENDING), ran(), plan([])]

    ret = proxysql_ha.converged("pair")

    assert ret["result"] is True
    assert ret["changes"] == {"promote": {"old": PENDING, "new": []}}
    assert "ran promote" in ret["comment"]
    assert reconcile.calls == [{"test": True}, {"test": False}, {"test": True}]


def test_pending_demote_reports_under_demote(reconcile):
    actions = ["stop ProxySQL"]
    reconcile.replies = [plan(actions, role="BACKUP"), ran(), plan([], role="BACKUP")]

    ret = proxysql_ha.converged("pair")

    assert (ret["result"], ret["changes"]) == (True, {"demote": {"old": actions, "new": []}})


def test_actions_still_pending_after_the_run_fail_the_state_and_are_named(reconcile):
    reconcile.replies = [plan(PENDING), ran(), plan(["start ProxySQL"])]

    ret = proxysql_ha.converged("pair")

    assert ret["result"] is False
    assert ret["changes"] == {"promote": {"old": PENDING, "new": ["start ProxySQL"]}}
    assert "still out of line: start ProxySQL" in ret["comment"]


def test_errors_of_the_transition_fail_the_state_and_are_named(reconcile):
    error = "ProxySQL start command ['/usr/sbin/service', 'proxysql', 'start'] failed (exit 1)"
    reconcile.replies = [plan(PENDING), ran(errors=[error]), plan([])]

    ret = proxysql_ha.converged("pair")

    assert ret["result"] is False
    assert ret["changes"] == {"promote": {"old": PENDING, "new": []}}
    assert error in ret["comment"]


def test_reconcile_failing_to_plan_fails_the_state_with_its_message(reconcile):
    reconcile.replies = [CommandExecutionError("ifconfig em0 failed (exit 1): no such interface")]

    ret = proxysql_ha.converged("pair")

    assert (ret["result"], ret["changes"]) == (False, {})
    assert "ifconfig em0 failed (exit 1): no such interface" in ret["comment"]


def test_reconcile_failing_during_the_run_fails_the_state_with_its_message(reconcile):
    reconcile.replies = [plan(PENDING), CommandExecutionError("another proxysql_ha operation holds the lock")]

    ret = proxysql_ha.converged("pair")

    assert (ret["result"], ret["changes"]) == (False, {})
    assert "promote failed: another proxysql_ha operation holds the lock" in ret["comment"]


def test_state_does_not_load_without_the_execution_module(monkeypatch):
    monkeypatch.delitem(proxysql_ha.__salt__, "proxysql_ha.reconcile")

    assert proxysql_ha.__virtual__() == (False, "proxysql_ha state: the proxysql_ha execution module is not loaded")
