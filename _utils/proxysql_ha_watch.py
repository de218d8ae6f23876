"""
The engine's cheap looks and its decisions: what the node is now (the role,
whether ProxySQL runs) read without forking where the system allows it, and
which job, if any, must run because something is out of line.

``decide`` and ``coalesce`` are pure; the readers touch only the kernel (one
netlink dump, a pid file, ``/proc``, ``kill(pid, 0)``, an inotify watch of the
datadir and of a warm standby's inbox through libc, since the standard library has no
binding for it).
"""

import ctypes
import ctypes.util
import ipaddress
import os
import socket
import struct

__virtualname__ = "proxysql_ha_watch"

_RTM_GETADDR, _NLMSG_DONE, _NLMSG_ERROR = 22, 3, 2
_NLM_F_REQUEST_DUMP = 0x1 | 0x300
_IFA_ADDRESS, _IFA_LOCAL = 1, 2
_MAX_REPLIES = 64  # recv() calls for one dump: an interface's addresses fit in one or two


# inotify(7): the events a save, a journal or a rename of the db makes in its directory, and
# those that end the watch (the directory gone) or lose events (the queue overflowed).
_IN_MODIFY, _IN_ATTRIB, _IN_CLOSE_WRITE = 0x2, 0x4, 0x8
_IN_MOVED_FROM, _IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x40, 0x80, 0x100, 0x200
_IN_DELETE_SELF, _IN_MOVE_SELF, _IN_Q_OVERFLOW, _IN_IGNORED = 0x400, 0x800, 0x4000, 0x8000
_IN_WATCHED = (_IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_MOVED_FROM | _IN_MOVED_TO
               | _IN_CREATE | _IN_DELETE | _IN_DELETE_SELF | _IN_MOVE_SELF)
_IN_LOST = _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_Q_OVERFLOW | _IN_IGNORED
_IN_EVENT = struct.Struct("=iIII")  # wd, mask, cookie, len; then len bytes of NUL-padded name
_LIBC = []


def __virtual__():
    return __virtualname__


def inotify_events(data):
    """``[(mask, name)]`` of the ``struct inotify_event`` records in ``data`` (pure; a
    truncated record ends the list)."""
    events, offset = [], 0
    while offset + _IN_EVENT.size <= len(data):
        _, mask, _, length = _IN_EVENT.unpack_from(data, offset)
        start = offset + _IN_EVENT.size
        if start + length > len(data):
            break
        events.append((mask, bytes(data[start:start + length]).split(b"\0", 1)[0].decode(
            "utf-8", "surrogateescape")))
        offset = start + length
    return events


def touches(events, name):
    """
    Whether inotify ``events`` (from :func:`inotify_events`) concern the file
    ``name`` or its SQLite companions (``name-journal``, ``-wal``, ``-shm``),
    or may have (the queue overflowed, the watch ended): ProxySQL's log and
    stats files in the same directory do not wake the engine.
    """
    return any(mask & _IN_LOST or entry == name or entry.startswith(name + "-")
               for mask, entry in events)


def arrived(events):
    """
    Whether inotify ``events`` of an inbox hold a completed arrival, or may
    have (the queue overflowed, the watch ended): a backup's manifest
    (``proxysql-ha-*.json``, proxysql_ha_store's naming) appearing under its
    own name, which comes last (the receive command links it into place, the
    local transport renames it). The data file and the hidden temporary
    files of an arrival still under way do not count.
    """
    return any(mask & _IN_LOST or (mask & (_IN_CREATE | _IN_MOVED_TO)
                                   and entry.startswith("proxysql-ha-") and entry.endswith(".json"))
               for mask, entry in events)


def watch_directory(path):
    """
    A non-blocking inotify descriptor watching directory ``path`` (Linux);
    OSError where there is none (another system, no such directory, no
    watches left): the caller then polls.
    """
    if not _LIBC:
        _LIBC.append(ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True))
    libc = _LIBC[0]
    if not hasattr(libc, "inotify_init1"):
        raise OSError("no inotify on this system")
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), f"inotify_init1: {os.strerror(ctypes.get_errno())}")
    if libc.inotify_add_watch(fd, os.fsencode(path), _IN_WATCHED) < 0:
        errno = ctypes.get_errno()
        os.close(fd)
        raise OSError(errno, f"inotify_add_watch {path}: {os.strerror(errno)}")
    return fd


def drain(fd, limit=64):
    """The events waiting on inotify descriptor ``fd`` (at most ``limit`` reads), without
    blocking; ``[(_IN_Q_OVERFLOW, "")]`` when more were waiting than were read."""
    events = []
    for _ in range(limit):
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return events
        if not data:
            return events
        events.extend(inotify_events(data))
    return events + [(_IN_Q_OVERFLOW, "")]


def watch_ended(events):
    """Whether the watch itself is gone (its directory removed or renamed): open it again."""
    return any(mask & (_IN_DELETE_SELF | _IN_MOVE_SELF | _IN_IGNORED) for mask, _ in events)


def parse_addresses(data, index):
    """
    The addresses of interface ``index`` in netlink ``RTM_NEWADDR`` messages
    (``data``: the bytes of a dump). Returns ``(addresses, done)``.
    """
    found, offset, done = set(), 0, False
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if length < 16 or offset + length > len(data):
            break
        if kind in (_NLMSG_DONE, _NLMSG_ERROR):
            done = True
        elif offset + 24 <= offset + length:
            family, _, _, _, ifindex = struct.unpack_from("=BBBBI", data, offset + 16)
            if ifindex == index:
                found.update(_attributes(data, offset + 24, offset + length, family))
        offset += (length + 3) & ~3
    return found, done


def _attributes(data, start, end, family):
    values = {}
    while start + 4 <= end:
        length, kind = struct.unpack_from("=HH", data, start)
        if length < 4:
            break
        if kind in (_IFA_ADDRESS, _IFA_LOCAL):
            values[kind] = bytes(data[start + 4:start + length])
        start += (length + 3) & ~3
    raw = values.get(_IFA_LOCAL, values.get(_IFA_ADDRESS))  # IFA_LOCAL: the own end of a p2p link
    if raw is None or family not in (socket.AF_INET, socket.AF_INET6):
        return set()
    return {socket.inet_ntop(family, raw)}  # not ipaddress's str(): it cost more than the dump


def interface_addresses(iface, timeout=1.0):
    """The addresses on ``iface``, from one netlink dump (Linux; OSError elsewhere or when absent)."""
    index = socket.if_nametoindex(iface)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.settimeout(timeout)
        request = struct.pack("=IHHII", 24, _RTM_GETADDR, _NLM_F_REQUEST_DUMP, 1, 0)
        sock.send(request + struct.pack("=BBBBI", socket.AF_UNSPEC, 0, 0, 0, 0))
        found = set()
        for _ in range(_MAX_REPLIES):
            addresses, done = parse_addresses(sock.recv(65536), index)
            found |= addresses
            if done:
                return found
    raise OSError(f"netlink: no end of the address dump for {iface} after {_MAX_REPLIES} replies")


def vip_role(addresses, vip):
    """MASTER when ``vip`` is among ``addresses``, else BACKUP."""
    want = ipaddress.ip_address(vip)
    family = socket.AF_INET if want.version == 4 else socket.AF_INET6
    return "MASTER" if any(_packed(family, a) == want.packed for a in addresses) else "BACKUP"


def _packed(family, address):
    """``address`` as ``family``'s bytes (None when it is not one): the C parser, not ipaddress's."""
    try:
        return socket.inet_pton(family, address)
    except OSError:
        return None


def pid_running(pidfile):
    """
    Whether the process named in ``pidfile`` runs: the file holds a pid, that
    pid exists, and where ``/proc`` tells its command line, it is ProxySQL's
    (a stale file whose pid was reused is not).
    """
    return pid_state(pidfile) == "running"


def is_proxysql(cmdline):
    """
    Whether a ``/proc/<pid>/cmdline`` is ProxySQL's: its program (or, for a
    Python interpreter, its script: the test stand-in) is named ``proxysql...``. Not merely the word
    anywhere: a reused pid may belong to a process whose title or arguments
    name it (a Salt job running ``proxysql_ha.promote``, an editor on
    ``proxysql.cnf``), and that process is not ProxySQL.
    """
    args = [os.path.basename(arg.split(b" ")[0]) for arg in cmdline.split(b"\0")[:2]]
    if args and args[0].startswith(b"python") and len(args) > 1:
        args = args[1:]  # an interpreter runs it: the script is the program
    name = args[0] if args else b""
    return name.startswith(b"proxysql") and not name.startswith((b"proxysql_ha", b"proxysql-ha"))


def pid_state(pidfile):
    """
    What ``pidfile`` says of ProxySQL: ``"running"`` (it names a live process
    which, where ``/proc`` tells, is ProxySQL's), ``"absent"`` (no such file:
    ProxySQL removes it when it exits), or ``"stale"`` (unreadable, or it names
    a process that is gone, a zombie or another program's: left by a crash).
    """
    try:
        with open(pidfile, "rb") as handle:
            pid = int(handle.read(32).strip() or b"0")
    except FileNotFoundError:
        return "absent"
    except (OSError, ValueError):
        return "stale"
    if pid <= 1:
        return "stale"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "stale"
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return "running" if is_proxysql(handle.read(4096)) else "stale"
    except FileNotFoundError:  # no /proc here (FreeBSD): the pid exists
        return "stale" if os.path.isdir("/proc/self") else "running"
    except OSError:
        return "running"


def coalesce(payloads):
    """The newest transition per vhid (by timestamp, then order), oldest vhid first."""
    newest = {}
    for order, payload in enumerate(payloads):
        key = payload.get("vhid")
        rank = (payload.get("timestamp") or 0, order)
        if key not in newest or rank >= newest[key][0]:
            newest[key] = (rank, payload)
    return [payload for _, payload in sorted(newest.values(), key=lambda item: item[0])]


def decide(seen, now, conf, retry):
    """
    The jobs to ask for after one look: ``[(job, reason)]``.

    ``seen``: ``{"role", "previous_role", "running", "db_changed", "asked"}``
    (and, when looked at, ``ship_failed`` and ``vip_released``)
    (``role`` None when unknown, ``running`` None when not looked at,
    ``asked``: ``{reason: when}`` of the last asks for a condition that lasts).
    A lasting condition (ProxySQL down on the MASTER) is asked for again
    only every ``retry`` seconds; a role change needs nothing when a relayed
    CARP transition asked for reconcile less than ``retry`` seconds ago; a saved change on a node that is not MASTER
    needs nothing (the MASTER ships, and every job checks the role itself).
    """
    sched = conf["schedule"]
    role, running = seen["role"], seen["running"]
    wanted = []
    if role is not None and seen["previous_role"] not in (None, role):
        wanted.append((sched["reconcile_job"], f"role {seen['previous_role']} -> {role}"))
    elif role == "MASTER" and running is False:
        wanted.append((sched["reconcile_job"], "ProxySQL not running on the MASTER"))
    elif role in ("BACKUP", "INIT") and running and conf["stop_on_backup"]:
        wanted.append((sched["reconcile_job"], f"ProxySQL running on a {role}"))
    elif role in ("BACKUP", "INIT") and seen.get("vip_released"):
        # reconcile probes ProxySQL after the hold-down and takes the VIP back: with the
        # reconcile schedule a last resort (600 s), the engine keeps the probe going
        wanted.append((sched["reconcile_job"], "the VIP is released: probe ProxySQL"))
    if role == "MASTER" and seen.get("ship_failed") and not seen["db_changed"]:
        wanted.append((sched["ship_job"], "the last ship failed"))  # the peer may be back
    wanted = [(job, why) for job, why in wanted
              if now - seen["asked"].get("relayed" if why.startswith("role") else why,
                                         now - retry) >= retry]
    if seen["db_changed"] and role in (None, "MASTER"):
        wanted.append((sched["ship_job"], "the database changed"))
    return wanted
