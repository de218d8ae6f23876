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
