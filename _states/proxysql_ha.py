"""
States of the proxysql_ha extension: what only this extension can say.

Everything else a node needs (directories, the hook, devd or ucarp wiring,
schedules, SSH trust) is done by Salt's core states in the formula
(``proxysql_ha/*.sls``).

.. code-block:: yaml

    proxysql_ha_converged:
      proxysql_ha.converged
"""

from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "proxysql_ha"


def __virtual__():
    if "proxysql_ha.reconcile" in __salt__:
        return __virtualname__
    return (False, "proxysql_ha state: the proxysql_ha execution module is not loaded")


def converged(name):
    """
    This node's ProxySQL and shipping state matches its CARP role: on the
    MASTER, the newest valid backup is restored and ProxySQL runs with the
    ship job enabled; on a BACKUP, ProxySQL is stopped (``stop_on_backup``) and
    the purge job is enabled. When it does not, ``proxysql_ha.promote`` or
    ``proxysql_ha.demote`` is run.

    With ``test=True`` it reports the promote or demote it would run and what
    it would do (``result: None``), and changes nothing.

    name
        Any name; it only labels the state.
    """
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    try:
        plan = __salt__["proxysql_ha.reconcile"](test=True)
    except (CommandExecutionError, SaltInvocationError) as exc:
        ret["comment"] = f"cannot tell whether this node is converged: {exc}"
        return ret
    if not plan["actions"]:
        ret.update(result=True, comment=f"{plan['role']}: converged")
        return ret
    pending = "; ".join(plan["actions"])
    if __opts__["test"]:
        ret.update(result=None, comment=f"{plan['role']}: would run {plan['would_run']}: {pending}")
        return ret
    try:
        done = __salt__["proxysql_ha.reconcile"]()
        after = __salt__["proxysql_ha.reconcile"](test=True)
    except (CommandExecutionError, SaltInvocationError) as exc:
        ret["comment"] = f"{plan['would_run']} failed: {exc}"
        return ret
    errors = (done.get("report") or {}).get("errors", [])
    ret["changes"] = {plan["would_run"]: {"old": plan["actions"], "new": after["actions"]}}
    ret["result"] = not errors and not after["actions"]
    ret["comment"] = f"{after['role']}: ran {plan['would_run']}" + (
        f"; errors: {'; '.join(errors)}" if errors else "") + (
        f"; still out of line: {'; '.join(after['actions'])}" if after["actions"] else "")
    return ret
