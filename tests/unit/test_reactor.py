"""The master's reactor ``reactor/proxysql_ha_carp.sls``, rendered by Salt's own renderers.

It sees what the master hands a reactor for a minion's ``fire_master``: ``data['id']`` (the
minion Salt authenticated) and ``data['data']`` (the hook's payload), and must turn a good
payload into promote or demote on that minion only, and anything else into nothing but a
warning in the master's log.
"""

import pytest

from tests.unit.conftest import REPO

REACTOR = REPO / "reactor" / "proxysql_ha_carp.sls"
MINION = "proxysql-a.example.net"


def event(state="MASTER", sender=MINION, **changes):
    """The reactor's ``data`` for the hook's event ``proxysql_ha/carp/<state>`` from ``sender``."""
    payload = {"state": state, "vhid": 9, "iface": "em0", "source": "devd", "timestamp": 1795634072.5}
    payload.update(changes)
    return {"id": sender, "data": payload, "_stamp": "2026-11-25T19:14:32.668484"}


def job(action):
    return {f"proxysql_ha_{action}": {f"local.proxysql_ha.{action}": [
        {"tgt": MINION}, {"tgt_type": "list"}, {"kwarg": {"vhid": 9, "interface": "em0"}}]}}


@pytest.fixture
def react(render_sls):
    """``react(data)``: what the reactor renders for ``data``, and the warnings it logged."""

    def run(data, tag="proxysql_ha/carp/MASTER"):
        warnings = []
        rendered = render_sls(REACTOR, {"log.warning": warnings.append}, data=data, tag=tag)
        return rendered, warnings

    return run


@pytest.mark.parametrize("state, action", [("MASTER", "promote"), ("BACKUP", "demote"), ("INIT", "demote")])
def test_a_transition_runs_promote_or_demote_on_the_minion_that_sent_it(react, state, action):
    rendered, warnings = react(event(state), tag=f"proxysql_ha/carp/{state}")

    assert rendered == job(action)
    assert warnings == []


def test_a_minion_named_in_the_payload_is_never_the_target(react):
    rendered, _ = react(event(id="proxysql-b.example.net", minion_id="proxysql-b.example.net",
                              tgt="*", minion="proxysql-b.example.net"))

    assert rendered == job("promote")


def test_a_vhid_given_as_text_is_passed_as_a_number(react):
    rendered, _ = react(event(vhid="9"))

    assert rendered == job("promote")


BAD = [
    pytest.param(event(state="FAULT"), id="state-fault"),
    pytest.param(event(state="master"), id="state-lowercase"),
    pytest.param(event(state="MASTER\n"), id="state-newline"),
    pytest.param(event(vhid=0), id="vhid-0"),
    pytest.param(event(vhid=256), id="vhid-256"),
    pytest.param(event(vhid="9; rm -rf /"), id="vhid-shell"),
    pytest.param(event(vhid="9\n"), id="vhid-trailing-newline"),
    pytest.param(event(vhid=None), id="vhid-none"),
    pytest.param(event(iface="eth0 -rf"), id="iface-space"),
    pytest.param(event(iface="em0\n"), id="iface-trailing-newline"),
    pytest.param(event(iface="em0\n  - tgt: '*'"), id="iface-yaml-injection"),
    pytest.param(event(iface=""), id="iface-empty"),
    pytest.param(event(sender="*"), id="minion-glob"),
    pytest.param(event(sender="proxysql-a\n"), id="minion-trailing-newline"),
    pytest.param({"id": MINION, "_stamp": "2026-11-25T19:14:32.668484"}, id="no-payload"),
    pytest.param({"id": MINION, "data": "MASTER 9@em0"}, id="payload-text"),
    pytest.param({"id": MINION, "data": ["MASTER", 9, "em0"]}, id="payload-list"),
    pytest.param({"data": event()["data"]}, id="no-minion-id"),
]


@pytest.mark.parametrize("data", BAD)
def test_a_bad_event_renders_nothing_and_is_logged(react, data):
    rendered, warnings = react(data)

    assert rendered == {}
    assert len(warnings) == 1 and warnings[0].startswith("proxysql_ha reactor: ignored proxysql_ha/carp/MASTER")
