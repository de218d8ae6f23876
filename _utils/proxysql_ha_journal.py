"""
The journal of a transition: the intent recorded before acting, and what a
run after a crash makes of it. Pure functions, no I/O.

Promote writes ``{"transition": "promote", "since": T, "restoring": X,
"replacing": <stat of the live db>}`` before it stops ProxySQL; demote writes
``{"transition": "demote", "since": T}`` before it changes anything. The
journal is removed once the transition is complete. Whether a takeover got as
far as installing its copy is read from the live database itself, never from
a state file written afterwards: the install replaces the live file by an
atomic rename, so its inode differs from the one the journal recorded from
the moment the restored copy is live, whatever ProxySQL has saved into it
since.
"""

__virtualname__ = "proxysql_ha_journal"

NAME = "transition.json"


def __virtual__():
    return __virtualname__


def begin_promote(now, restoring, live_state):
    """The intent of a takeover: restore ``restoring`` (a name, or None) over ``live_state``."""
    return {"transition": "promote", "since": now, "restoring": restoring,
            "replacing": _inode(live_state)}


def begin_demote(now, stepped_down):
    """The intent of a hand-over: this node stopped being MASTER at ``stepped_down``."""
    return {"transition": "demote", "since": now, "stepped_down": stepped_down}


def takeover_progress(journal, live_state):
    """
    How far an unfinished takeover got, from its journal and the live db's
    ``source_state`` (None: no live db):

    - ``None``: no takeover under way (no journal, or one of a demote);
    - ``"restore"``: its copy is not live yet: restoring is still safe (the
      live db is the one the node had before taking over);
    - ``"installed"``: the restored copy is live (the live db was replaced
      since the journal was written), or there was nothing to restore:
      never restore again, only start ProxySQL and finish.
    """
    if not isinstance(journal, dict) or journal.get("transition") != "promote":
        return None
    if not journal.get("restoring"):
        return "installed"
    before = journal.get("replacing")
    now = _inode(live_state)
    if now is None:
        return "restore"
    return "restore" if before == now else "installed"


def stepped_down(journal, recorded, now):
    """
    When this node stopped being MASTER, for a demote: the time the journal
    of an unfinished demote recorded (a run after a crash keeps it, so the
    peer's copies shipped since then still count as newer); ``now`` when
    the node was MASTER or was taking over; else the recorded time.
    """
    if isinstance(journal, dict) and journal.get("transition") == "demote" \
            and journal.get("stepped_down") is not None:
        return journal["stepped_down"]
    recorded = recorded or {}
    was_master = recorded.get("role") in (None, "MASTER") or (
        isinstance(journal, dict) and journal.get("transition") == "promote")
    if was_master or recorded.get("since") is None:
        return now
    return recorded["since"]


def _inode(live_state):
    if not live_state:
        return None
    return live_state.get("ino")
