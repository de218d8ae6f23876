"""
Reading the CARP role from what the system prints. Pure functions, no I/O.

FreeBSD's ``ifconfig <iface>`` prints one line per vhid::

    \tcarp: MASTER vhid 9 advbase 1 advskew 0
    \t      peer 224.0.0.18 peer6 ff02::12          (FreeBSD 14 and later)
    \tvrrp: MASTER vrid 9 prio 100 interval 100     (FreeBSD 15, VRRPv3 mode)

On Linux (ucarp, keepalived) the role is whether the virtual IP is on the
interface. Anything that cannot be read is an error, never a guess.
"""

import ipaddress
import re

from salt.exceptions import CommandExecutionError

__virtualname__ = "proxysql_ha_carp"

ROLES = ("MASTER", "BACKUP", "INIT")
_CARP_LINE = re.compile(
    r"^\s*(?P<proto>carp|vrrp):\s+(?P<state>\S+)\s+(?:vhid|vrid)\s+(?P<vhid>\d+)\b"
)


def __virtual__():
    return __virtualname__


def parse_ifconfig(text, vhid):
    """
    Return the role of ``vhid`` in the output of FreeBSD's ``ifconfig <iface>``.

    Raises ``CommandExecutionError`` when the vhid is absent, listed twice, or
    in a state this module does not know.
    """
    found = []
    for line in text.splitlines():
        match = _CARP_LINE.match(line)
        if match and int(match.group("vhid")) == vhid:
            found.append(match.group("state"))
    if not found:
        raise CommandExecutionError(
            f"ifconfig shows no CARP vhid {vhid} on this interface: "
            "is CARP configured (ifconfig <iface> vhid N ...)?"
        )
    if len(found) > 1:
        raise CommandExecutionError(f"ifconfig shows vhid {vhid} {len(found)} times: {found}")
    state = found[0]
    if state not in ROLES:
        raise CommandExecutionError(f"vhid {vhid} is in an unknown CARP state {state!r}")
    return state


def vip_role(interfaces, iface, vip):
    """
    Return ``MASTER`` if ``vip`` is an address of ``iface`` in ``interfaces``
    (the shape of Salt's ``network.interfaces``), else ``BACKUP``.

    An interface that does not exist is an error (the pillar may name the
    wrong one); an interface that is down and lacks the VIP is ``INIT``.
    """
    if iface not in interfaces:
        known = ", ".join(sorted(interfaces)) or "none"
        raise CommandExecutionError(f"interface {iface!r} does not exist (interfaces: {known})")
    data = interfaces[iface]
    want = ipaddress.ip_address(vip)
    for entry in _addresses(data):
        try:
            if ipaddress.ip_address(entry) == want:
                return "MASTER"
        except ValueError:
            continue
    if data.get("up") is False:
        return "INIT"
    return "BACKUP"


def _addresses(data):
    for key in ("inet", "inet6", "secondary"):
        for entry in data.get(key, []) or []:
            address = entry.get("address")
            if address:
                yield address.split("%")[0]


# ---- giving up the VIP and taking it back --------------------------------------------
#
# A MASTER whose ProxySQL cannot run gives up the VIP, each implementation by
# its own mechanism; these functions build what to run, the module runs it.
#
# FreeBSD carp(4): the vhid's advskew is raised to DEMOTED_ADVSKEW and the vhid
# forced to BACKUP (``ifconfig <if> vhid N advskew 240 state backup``); with
# ``net.inet.carp.preempt=1`` on the peer (the formula sets it) the peer, which
# advertises faster, takes the VIP and keeps it, and this node does not
# preempt back while it advertises slower. Per vhid rather than the global
# ``net.inet.carp.demotion`` sysctl, which would demote every vhid of the host
# (and is also raised by the kernel itself on link and pfsync events). The
# undo puts back the advskew read before the release. In VRRPv3 mode
# (FreeBSD 15) the same is done with ``vrrpprio``.
#
# ucarp: SIGUSR2 makes it drop to BACKUP (it runs its down-script), sleep 3 s
# and listen again (ucarp's carp.c, ``case 2`` of its main loop). It has no
# way to lower its priority at run time: with ``--preempt`` and a better
# advskew than the peer's it takes the VIP straight back at the peer's first
# advertisement (``preempt != 0 && timercmp(&sc_tv, &ch_tv, <)``: "Putting
# MASTER down - preemption"), ProxySQL still down. So once the VIP has left
# the interface the module freezes ucarp (SIGSTOP: a BACKUP that says nothing
# and takes nothing), with or without preemption; taking the VIP back is
# SIGCONT, and ucarp's own rules decide from there (with preemption and the
# better advskew it becomes MASTER again; without, it stays BACKUP). The module
# sends SIGUSR2 again on every run that finds the node MASTER with ProxySQL
# still down (ucarp was restarted, or the VIP did not leave in time to freeze).
#
# keepalived: a ``track_file`` the module writes: ``1`` while released, ``0``
# otherwise; with ``weight 0`` keepalived puts the instance in FAULT while the
# value is not 0 (README), so it cannot take the VIP back until it is 0.

DEMOTED_ADVSKEW = 240
DEMOTED_VRRP_PRIO = 1
IMPLEMENTATIONS = ("freebsd", "ucarp", "keepalived")
_CARP_PARAMS = re.compile(
    r"^\s*carp:\s+\S+\s+vhid\s+(?P<vhid>\d+)\s+advbase\s+\d+\s+advskew\s+(?P<advskew>\d+)\b"
)
_VRRP_PARAMS = re.compile(r"^\s*vrrp:\s+\S+\s+vrid\s+(?P<vhid>\d+)\s+prio\s+(?P<prio>\d+)\b")


def parse_vhid_params(text, vhid):
    """
    ``{"proto": "carp", "advskew": N}`` or ``{"proto": "vrrp", "prio": N}`` of
    ``vhid`` in FreeBSD's ``ifconfig <iface>``: what the undo puts back.
    """
    found = []
    for line in text.splitlines():
        match = _CARP_PARAMS.match(line)
        if match and int(match.group("vhid")) == vhid:
            found.append({"proto": "carp", "advskew": int(match.group("advskew"))})
        match = _VRRP_PARAMS.match(line)
        if match and int(match.group("vhid")) == vhid:
            found.append({"proto": "vrrp", "prio": int(match.group("prio"))})
    if len(found) != 1:
        raise CommandExecutionError(
            f"ifconfig shows vhid {vhid} {len(found)} times with its advskew or prio: "
            "cannot demote it"
        )
    return found[0]


def release_step(implementation, interface, vhid, params=None, pid=None, track_file=None):
    """
    What gives up the VIP: ``{"argv": [...]}`` to run, or ``{"write": path,
    "text": ...}``. ``params``: :func:`parse_vhid_params` (FreeBSD); ``pid``:
    ucarp's process id; ``track_file``: keepalived's.
    """
    if implementation == "freebsd":
        if params["proto"] == "vrrp":
            knob = ["vrrpprio", str(DEMOTED_VRRP_PRIO)]
        else:
            knob = ["advskew", str(DEMOTED_ADVSKEW)]
        return {"argv": ["ifconfig", interface, "vhid", str(vhid), *knob, "state", "backup"]}
    if implementation == "ucarp":  # then, once the VIP has left: "freeze"
        return {"argv": ["kill", "-USR2", str(_pid(pid))], "freeze": ["kill", "-STOP", str(pid)]}
    if implementation == "keepalived":
        return {"write": track_file, "text": "1\n"}
    raise CommandExecutionError(f"no way to give up the VIP with {implementation!r}")


def reclaim_step(implementation, interface, vhid, params=None, track_file=None, pid=None):
    """
    What undoes :func:`release_step`: the same shapes, or None (ucarp without
    a ``pid``: no ucarp runs, nothing frozen to wake). ``params``: those read
    before the release.
    """
    if implementation == "ucarp":
        return {"argv": ["kill", "-CONT", str(_pid(pid))]} if pid is not None else None
    if implementation == "freebsd":
        if params["proto"] == "vrrp":
            knob = ["vrrpprio", str(params["prio"])]
        else:
            knob = ["advskew", str(params["advskew"])]
        return {"argv": ["ifconfig", interface, "vhid", str(vhid), *knob]}
    if implementation == "keepalived":
        return {"write": track_file, "text": "0\n"}
    raise CommandExecutionError(f"no way to take the VIP back with {implementation!r}")


def parse_pid(text, path):
    """The process id in a pid file's ``text`` (``path`` names it in errors)."""
    try:
        return _pid(int(text.strip().split()[0]))
    except (ValueError, IndexError):
        raise CommandExecutionError(  # pylint: disable=raise-missing-from
            f"{path} holds no process id: is ucarp running (proxysql_ha:health:ucarp_pidfile)?")


def _pid(pid):
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1:
        raise CommandExecutionError(f"{pid!r} is not the process id of ucarp")
    return pid
