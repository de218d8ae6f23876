"""
What a transition must do, decided from one snapshot of facts. Pure
functions, no I/O: promote, demote, reconcile and the ``converged`` state all
act on :func:`plan`'s answer, and every rule is tested on data.

The facts (gathered once per call by the execution module):

``role``            CARP's role now: MASTER, BACKUP or INIT
``running``         whether ProxySQL runs
``recorded``        ``role.json``: the role this node last completed a transition to
``journal``         the journal of an unfinished transition, or None
``progress``        how far an unfinished takeover got (``proxysql_ha_journal.takeover_progress``)
``schedule``        ``{job: enabled}``: the schedule jobs that must change
``stop_on_backup``  the pillar's
``standby``         the pillar's: ``cold`` or ``warm``
``received``        on a warm BACKUP: the verdict of the newest valid received backup
                    newer than the live db, or None
``vip``             ``vip.json``: ``released`` (bool), ``since`` (when it was released)
``health``          the pillar's ``health`` (``enabled``, ``hold_down``)
``now``             the time
"""

import time

__virtualname__ = "proxysql_ha_plan"


def __virtual__():
    return __virtualname__


def plan(facts):
    """
    The plan: ``actions`` (in words, empty when the node is in line) and what
    to do:

    ``takeover``  ``"restore"`` (choose and restore the newest valid copy),
                  ``"finish"`` (a takeover whose copy is live already: never
                  restore again) or None
    ``handover``  a hand-over to BACKUP to record
    ``start``     start ProxySQL
    ``stop``      stop ProxySQL
    ``probe``     start ProxySQL on a node that released the VIP, to see
                  whether it runs again
    ``reclaim``   undo the VIP's release (ProxySQL runs again, hold-down over)
    ``release_if_down``  give up the VIP when ProxySQL does not run after the start
    ``apply``     on a warm BACKUP: what :func:`apply_plan` says (None: nothing)
    ``schedule``  ``{job: enabled}`` to change
    """
    result = {"actions": [], "takeover": None, "handover": False, "start": False,
              "stop": False, "probe": False, "reclaim": False, "release_if_down": False,
              "apply": None, "schedule": dict(facts.get("schedule") or {})}
    if facts["role"] == "MASTER":
        _master(facts, result)
    else:
        _standby(facts, result)
    result["actions"] += [f"{'enable' if want else 'disable'} schedule job {job}"
                          for job, want in result["schedule"].items()]
    return result


def _master(facts, result):
    actions = result["actions"]
    journal = facts.get("journal")
    progress = facts.get("progress")
    in_office = (facts.get("recorded") or {}).get("role") == "MASTER"
    if progress == "installed":
        result["takeover"] = "finish"
        actions.append(f"finish the takeover begun at {_when(journal)}"
                       + (f" ({journal['restoring']} is live)" if (journal or {}).get("restoring")
                          else ""))
    elif progress == "restore" or not in_office:
        result["takeover"] = "restore"
        actions.append("take over as MASTER" + (
            f" (resuming the takeover begun at {_when(journal)})" if progress else ""))
    released = _released(facts)
    if not facts["running"]:
        result["start"] = True
        actions.append("start ProxySQL")
        result["release_if_down"] = _health_on(facts)
        if released:
            actions.append("keep the VIP released while ProxySQL is down")
    elif released and _held_down(facts):
        result["reclaim"] = True
        actions.append("reclaim the VIP: ProxySQL runs again")


def _standby(facts, result):
    actions = result["actions"]
    journal = facts.get("journal")
    recorded = (facts.get("recorded") or {}).get("role")
    if recorded == "MASTER" or (journal or {}).get("transition") in ("promote", "demote"):
        result["handover"] = True
        actions.append(f"hand over as {facts['role']}")
    running = facts["running"]
    if _released(facts) and _held_down(facts):
        if running:
            result["reclaim"] = True
            actions.append("reclaim the VIP: ProxySQL runs again")
        elif _held_down(facts, "probed"):
            result["probe"] = True
            actions.append("try starting ProxySQL (the VIP was released while it was down)")
    if (running or result["probe"]) and facts["stop_on_backup"]:
        result["stop"] = True
        if running:
            actions.append("stop ProxySQL")
    if facts.get("standby") == "warm":
        if not running and not result["probe"] and not _released(facts):
            result["start"] = True
            actions.append("start ProxySQL (warm standby)")
        warm = apply_plan(facts)
        result["apply"] = warm["apply"]
        actions.extend(warm["actions"])


def needs_migration(verdict):
    """
    Whether ProxySQL must restart to take ``verdict``'s backup: its judge found
    tables that ProxySQL's start-up migrates or creates (another layout).
    ``PROXYSQL FLUSH CONFIGDB`` does no DDL check or migration
    (lib/ProxySQL_Admin.cpp, flush_configdb), so only a restart may apply it.
    """
    tables = (verdict or {}).get("tables") or {}
    return bool(tables.get("migrated") or tables.get("recreated_empty")
                or tables.get("created_empty"))


def apply_plan(facts):
    """
    What a warm BACKUP does with what it received: ``{"apply", "actions"}``,
    ``apply`` one of

    ``"flush"``    install the newest received backup under the running ProxySQL, then
                   FLUSH CONFIGDB, LOAD FROM DISK and TO RUNTIME, and verify;
    ``"restart"``  install it and restart ProxySQL (a migration is needed, or
                   ProxySQL does not run);
    ``"reload"``   nothing new, but an apply did not finish (its journal is
                   left): load the live file again and verify;
    None           nothing to do (a cold standby, a MASTER, nothing new).
    """
    if facts.get("standby") != "warm" or facts["role"] == "MASTER":
        return {"apply": None, "actions": []}
    received = facts.get("received")
    if received is None:
        if (facts.get("journal") or {}).get("transition") == "apply" and facts["running"]:
            return {"apply": "reload", "actions": ["finish the unfinished apply (load the live db)"]}
        return {"apply": None, "actions": []}
    if needs_migration(received):
        return {"apply": "restart", "actions": [
            f"apply {received['name']} with a restart (its tables need ProxySQL's migration)"]}
    if not facts["running"]:
        return {"apply": "restart", "actions": [f"install {received['name']} before the start"]}
    return {"apply": "flush", "actions": [f"apply {received['name']} to the running ProxySQL"]}


def _health_on(facts):
    return bool((facts.get("health") or {}).get("enabled"))


def _released(facts):
    return bool((facts.get("vip") or {}).get("released"))


def _held_down(facts, key="since"):
    """
    Whether the hold-down since the VIP's release (``key`` ``probed``: since
    the last try to start ProxySQL) is over, so the VIP cannot flap and a
    broken ProxySQL is tried once per hold-down.
    """
    since = (facts.get("vip") or {}).get(key) or 0
    return facts["now"] - since >= (facts.get("health") or {}).get("hold_down", 0)


def _when(journal):
    since = (journal or {}).get("since")
    if since is None:
        return "an unknown time"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))

