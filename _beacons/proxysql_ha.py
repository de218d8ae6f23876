"""
proxysql_ha beacon: one event when a problem appears, one when it clears.

The check job (``proxysql_ha.check``) fires ``proxysql_ha/alert/<kind>`` on
every run while a problem lasts, and returns True when healthy (so Salt's
``salt_monitor`` beacon would fire on every healthy run). This beacon runs
``proxysql_ha.status`` every ``interval`` seconds, keeps the previous set of
problem kinds in ``__context__`` and sends only the changes, as
``salt/beacon/<minion id>/proxysql_ha/alert/<kind>`` with ``state`` ``raised``
or ``cleared``.

Minion configuration (or pillar ``beacons``):

.. code-block:: yaml

    beacons:
      proxysql_ha:
        - interval: 60
        - cleared: true      # also send an event when a problem goes away (default)
"""

import logging

log = logging.getLogger(__name__)

__virtualname__ = "proxysql_ha"

CONTEXT_KEY = "proxysql_ha.beacon.problems"
# Keys Salt's beacon machinery reads itself, and this beacon's own.
SALT_KEYS = ("interval", "disable_during_state_run", "run_once", "beacon_module")
OWN_KEYS = ("cleared",)


def __virtual__():
    return __virtualname__


def _options(config):
    """A beacon's configuration: a list of one-key mappings (Salt's form) or one mapping."""
    if isinstance(config, dict):
        return dict(config)
    merged = {}
    for item in config:
        merged.update(item)
    return merged


def validate(config):
    """Salt's beacon contract: ``(True, message)`` when ``config`` is usable, else ``(False, why)``."""
    if not isinstance(config, (list, dict)) or (
        isinstance(config, list) and not all(isinstance(item, dict) for item in config)
    ):
        return False, "proxysql_ha beacon: the configuration must be a list of mappings"
    options = _options(config)
    unknown = sorted(set(options) - set(SALT_KEYS) - set(OWN_KEYS))
    if unknown:
        return False, (f"proxysql_ha beacon: unknown option(s) {', '.join(unknown)} "
                       f"(known: {', '.join(SALT_KEYS + OWN_KEYS)})")
    if not isinstance(options.get("cleared", True), bool):
        return False, "proxysql_ha beacon: 'cleared' must be true or false"
    return True, "valid proxysql_ha beacon configuration"


def changes(previous, current, node_id, role, cleared=True):
    """The events for going from ``previous`` to ``current`` (``{kind: message}`` each). Pure."""
    events = []
    for kind in sorted(set(current) - set(previous)):
        events.append({"tag": f"alert/{kind}", "kind": kind, "state": "raised",
                       "message": current[kind], "node_id": node_id, "role": role})
    if cleared:
        for kind in sorted(set(previous) - set(current)):
            events.append({"tag": f"alert/{kind}", "kind": kind, "state": "cleared",
                           "message": f"{kind} cleared (was: {previous[kind]})",
                           "node_id": node_id, "role": role})
    return events


def beacon(config):
    """Salt's beacon contract: a list of event dicts, one per new or cleared problem."""
    options = _options(config)
    try:
        report = __salt__["proxysql_ha.status"]()
    except Exception as exc:  # pylint: disable=broad-except
        # a bad pillar or a broken node is itself a problem to report, once
        log.warning("proxysql_ha beacon: status failed: %s", exc)
        report = {"node_id": __opts__.get("id"), "role": None,
                  "problems": [{"kind": "status_failed", "message": str(exc)}]}
    current = {}
    for problem in report.get("problems") or ():
        current.setdefault(problem["kind"], problem["message"])
    previous = __context__.get(CONTEXT_KEY, {})
    __context__[CONTEXT_KEY] = current
    return changes(previous, current, report.get("node_id"), report.get("role"),
                   cleared=options.get("cleared", True))
