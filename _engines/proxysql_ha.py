"""
proxysql_ha engine: the node's cheap safety net, running inside the minion.

A schedule job costs the minion a fork (50-260 ms of CPU) on every run, so
the engine does the periodic looks itself and asks the minion to run a job
(``manage_schedule`` ``run_job``) only when something is out of line:

- when ProxySQL writes ``proxysql.db`` (an inotify watch of the datadir on
  Linux, woken once the save's writes pause; elsewhere every ``interval``
  s) it ``stat()``\\ s it (and reads SQLite's change counter); a save on the MASTER (or where the role is unknown) asks
  for the ship job; a save on a node last seen as BACKUP reads the role again
  first (it may have just taken over);
- every ``check_interval`` s it reads the role (Linux: one netlink dump of
  the interface's addresses; FreeBSD: ``ifconfig <iface>``) and whether
  ProxySQL runs (its pid file and ``/proc``, or the status command when that
  is all there is); a role change, ProxySQL down on the MASTER or up on a
  BACKUP, a BACKUP that released the VIP (the probe that takes it back) asks
  for the reconcile job, a failed last ship on the MASTER for the ship job (a
  lasting condition again every 10 s);
- every ``admin:layer_check_interval`` s on the MASTER (``admin:enabled``)
  it compares ProxySQL's configuration layers through the admin interface
  (one client run, bounded by the connect timeout); a change loaded to
  runtime but not saved to disk (or edited but not loaded) fires
  ``proxysql_ha/alert/config_not_saved`` (``config_not_loaded``) naming
  the modules, once per new finding, and asks for the check job;
- on a warm standby (``standby: warm``) a backup arriving on a node that is
  not MASTER asks for the reconcile job, which applies it to the running
  ProxySQL: at once on Linux (an inotify watch of the inbox wakes the look
  when a manifest is put in place, the arrival's last step), else when a
  look's ``stat()`` of the inbox sees it changed;
- it relays CARP transitions the hook (``proxysql-ha-event``) drops into
  ``spool``: the newest per vhid, one reconcile job and one event each.

The jobs do the work with the minion's current pillar and check the role
themselves; their own slow schedules stay as the last resort. The engine
reads the same ``proxysql_ha`` pillar (``config.get``), and again when the
minion reports a pillar refresh (compiled in a thread: the looks go on with
the settings they have meanwhile). A job it could not ask for is asked for
again at the next look, and nothing a look raises stops the loop.

Minion configuration (the formula writes it; every option defaults to the
pillar's value):

.. code-block:: yaml

    engines:
      - proxysql_ha:
          spool: /var/db/proxysql-ha/state/carp
"""

import contextlib
import importlib
import json
import logging
import os
import select
import signal
import stat
import subprocess
import sys
import threading
import time

import salt.utils.event

log = logging.getLogger(__name__)

__virtualname__ = "proxysql_ha"

RETRY = 10.0  # seconds before a lasting condition (ProxySQL down on the MASTER) is asked for again
BUS_BATCH = 1000  # events read from the minion's bus per look (the rest at the next one)
SPOOL_BATCH = 256  # transitions read from the spool per look: the hook keeps one per vhid anyway
REFRESH_TAG = "minion_pillar_refresh_complete"
COMPILE_WAIT = 0.05  # seconds a look waits for a pillar being compiled before going on without it
SETTLE, SETTLE_MAX = 0.02, 0.25  # s: a save's writes, paused for SETTLE, wake one look
WAKES_PER_WAIT = 1000  # a wait ends at its interval anyway: this bounds the wake-ups it ignores
CLAIMED = ".relaying-"  # a spooled file the engine has taken: the hook never writes this name
_PLAIN = ("proxysql_ha_watch.",)  # helpers that are pure or touch only the kernel
_HELPERS = {}  # "module.function": the function, resolved once per start
_BUS = {}  # the minion's event bus, connected once and kept: ``{"pusher", "listener"}``


def __virtual__():
    return __virtualname__


def _util(name):
    """
    A function of this extension's ``_utils``: through the loader when synced,
    else the package; resolved once per ``start`` (a loader lookup at every
    look was a good part of an idle look's CPU).
    """
    if name not in _HELPERS:
        utils = globals().get("__utils__") or {}
        if name in utils:
            loaded = utils[name]
            # the watch's helpers use no loader dunder: called as plain functions, without the
            # loader's context switch around each call (25 µs, ten calls a look)
            _HELPERS[name] = getattr(loaded, "func", loaded) if name.startswith(_PLAIN) else loaded
        else:
            module, function = name.split(".", 1)
            _HELPERS[name] = getattr(importlib.import_module(f"saltext.proxysql_ha.utils.{module}"),
                                     function)
    return _HELPERS[name]


def _signature(path):
    """
    What changes when ProxySQL saves: the file's stat, its journal, and
    SQLite's change counter (bytes 24-27 of the header), which moves on every
    commit even when two saves fall within one tick of the file system's clock.
    """
    try:
        with open(path, "rb") as handle:
            st = os.fstat(handle.fileno())
            counter = handle.read(28)[24:]
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, counter, os.path.lexists(path + "-journal"))


def _pusher(opts):
    if "pusher" not in _BUS:
        _BUS["pusher"] = salt.utils.event.MinionEvent(opts, listen=False)
    return _BUS["pusher"]


def _drop_bus(key):
    bus = _BUS.pop(key, None)
    if bus is not None:
        with contextlib.suppress(Exception):
            bus.destroy()


def _fire(opts, data, tag, master=False):
    """Fire one event on the minion's bus (and on to the master); False, never raise, when it fails."""
    try:
        bus = _pusher(opts)
        sent = bus.fire_event(dict(data), tag, timeout=1000)
        if sent and master:
            sent = bus.fire_master(dict(data), tag, timeout=1000)
    except Exception as exc:  # pylint: disable=broad-except
        log.warning("proxysql_ha engine: event %s not sent: %s", tag, exc)
        sent = False
    if not sent:
        _drop_bus("pusher")  # connect afresh next time
    return bool(sent)


def _ask(opts, job):
    """Ask the minion to run schedule job ``job`` now; False when the bus did not take it."""
    return _fire(opts, {"func": "run_job", "name": job}, "manage_schedule")


def _relay(opts, payloads, reconcile_job):
    """Hand CARP transitions to the minion: run reconcile once, send each event."""
    sent = _ask(opts, reconcile_job)
    for payload in payloads:
        sent = _fire(opts, payload, f"proxysql_ha/carp/{payload['state']}", master=True) and sent
    log.info("proxysql_ha engine: relayed %s", [p["state"] for p in payloads])
    return sent


def _pillar_refreshed(opts, now):
    """
    Whether the minion refreshed its pillar since the last look: its bus, read
    without waiting. Without a bus to listen to, tried again after ``RETRY``.
    """
    if now < _BUS.get("listen_after", 0):
        return False
    try:
        if "listener" not in _BUS:
            listener = salt.utils.event.MinionEvent(opts, listen=False)
            if not listener.connect_pub(timeout=1):
                listener.destroy()
                raise OSError("the minion's event publisher does not answer")
            _BUS["listener"] = listener
        if _bus_quiet(_BUS["listener"]):
            return False
        refreshed = False
        for _ in range(BUS_BATCH):
            event = _BUS["listener"].get_event(wait=0, full=True, no_block=True)
            if not event:
                _BUS["more"] = False
                return refreshed
            refreshed = refreshed or str(event.get("tag", "")).endswith(REFRESH_TAG)
        _BUS["more"] = True  # left decoded in the subscriber: read on at the next look
        return refreshed
    except Exception as exc:  # pylint: disable=broad-except
        log.debug("proxysql_ha engine: cannot listen on the minion's bus: %s", exc)
        _drop_bus("listener")
        _BUS["listen_after"] = now + RETRY
        return False


def _bus_quiet(listener):
    """
    Whether no event can be waiting for ``listener``: no byte in its socket
    nor in its stream's buffer, none left decoded. A read runs the bus's event
    loop (0.8 ms of CPU and up to 10 ms of wait: most of an idle look's cost);
    this is one ``select()``. False (read it) when Salt's transport does not
    show these (another Salt than 3008's TCP/IPC client).
    """
    if _BUS.get("more"):
        return False
    try:
        client = listener.subscriber.obj  # salt.utils.asynchronous.SyncWrapper
        stream = client._stream  # pylint: disable=protected-access  # a tornado IOStream
        if stream is None or stream._read_buffer_size:  # pylint: disable=protected-access
            return False
        return not select.select([stream.socket.fileno()], [], [], 0)[0]
    except (AttributeError, OSError, ValueError):
        return False


def _node_config(opts, fresh=False):
    """
    The node's ``proxysql_ha`` configuration, as the jobs read it; with
    ``fresh``, from a newly compiled pillar (after the minion's refresh).
    None when there is none usable: the engine then only watches the db.
    """
    try:
        grains = globals().get("__grains__") or opts.get("grains") or {
            "os_family": "FreeBSD" if sys.platform.startswith("freebsd") else None}
        raw = {} if fresh else __salt__["config.get"]("proxysql_ha", {})
        if not raw:  # engines start before the minion compiles its pillar: compile it here
            raw = _compile_pillar(opts, grains).get("proxysql_ha", {})
        return _util("proxysql_ha_config.build")(raw, grains.get("os_family"), opts.get("id"))
    except Exception as exc:  # pylint: disable=broad-except
        log.warning("proxysql_ha engine: no usable proxysql_ha pillar (%s): "
                    "watching the database only", exc)
        return None


def _compile_pillar(opts, grains):
    """
    The minion's pillar, compiled as the minion does, once the minion has
    signed in. The engine's copy of the options predates the minion's
    connection: the master's address is resolved here, without DNS retries
    (an unresolvable master is an error, not a wait).
    """
    import salt.minion  # pylint: disable=import-outside-toplevel
    import salt.pillar  # pylint: disable=import-outside-toplevel

    opts = dict(opts)
    if opts.get("file_client") != "local":
        # never before the minion signed in once: an engine signing in first would make
        # the minion's keys itself, racing the minion, which then cannot decrypt its master
        if not os.path.isfile(os.path.join(opts.get("pki_dir") or "", "minion_master.pub")):
            raise OSError("the minion has not signed in to its master yet")
        if not opts.get("master_uri"):
            opts.update(salt.minion.resolve_dns(dict(opts, retry_dns=0)))
    return salt.pillar.get_pillar(opts, grains, opts["id"], saltenv=opts.get("saltenv"),
                                  pillarenv=opts.get("pillarenv")).compile_pillar()


def _settings(conf, given):
    """What the loop uses: the engine's own options where given, else the pillar's, else defaults."""
    sched = (conf or {}).get("schedule", {})
    picked = {
        "db": os.path.join(conf["datadir"], "proxysql.db") if conf else None,
        "job": sched.get("ship_job", "proxysql_ha_ship"),
        "interval": sched.get("watch_interval", 0.25),
        "spool": None,
        "reconcile_job": sched.get("reconcile_job", "proxysql_ha_reconcile"),
        "check_interval": sched.get("engine_check_interval", 0) if conf else 0,
    }
    picked.update({key: value for key, value in given.items() if value is not None})
    if conf:
        conf = dict(conf, schedule=dict(sched, ship_job=picked["job"],
                                        reconcile_job=picked["reconcile_job"]))
    return dict(picked, conf=conf)


def _read_role(conf):
    """MASTER, BACKUP or INIT, read the cheapest way this system allows; None when unreadable."""
    try:
        if conf["role_source"] == "vip":
            addresses = _util("proxysql_ha_watch.interface_addresses")(conf["interface"])
            return _util("proxysql_ha_watch.vip_role")(addresses, conf["vip"])
        out = subprocess.run(["ifconfig", conf["interface"]], capture_output=True, text=True,
                             timeout=5, check=True)
        return _util("proxysql_ha_carp.parse_ifconfig")(out.stdout, conf["vhid"])
    except Exception as exc:  # pylint: disable=broad-except
        log.debug("proxysql_ha engine: role unreadable: %s", exc)
        return None


def _proxysql_running(conf):
    """Whether ProxySQL runs: its pid file, else the status command (a fork: only when that is all)."""
    if conf["pidfile"]:
        return _util("proxysql_ha_watch.pid_running")(conf["pidfile"])
    argv = conf["commands"]["status"] or ["service", conf["service"]["name"], "status"]
    try:
        return subprocess.run(argv, capture_output=True, timeout=conf["service"]["timeout"],
                              check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("proxysql_ha engine: %s failed: %s", argv, exc)
        return None


def _state_says(conf, name, key, value):
    """Whether state file ``name`` (one small read) holds ``key: value``; False when unreadable."""
    try:
        with open(os.path.join(conf["state_dir"], name), encoding="utf-8") as handle:
            return json.load(handle).get(key) is value
    except (OSError, ValueError, AttributeError):
        return False


def _open_wake(spool):
    """The spool directory (0700) and its FIFO, opened so that select() waits on it."""
    os.makedirs(spool, mode=0o700, exist_ok=True)
    wake = os.path.join(spool, "wake")
    if not os.path.exists(wake):
        os.mkfifo(wake, 0o600)
    if not stat.S_ISFIFO(os.lstat(wake).st_mode):
        raise OSError(f"{wake} is not a FIFO")
    # read-write: the engine is a writer itself, so the FIFO never reads as closed
    return os.open(wake, os.O_RDWR | os.O_NONBLOCK)


def _wait(wake, interval):
    """
    Sleep ``interval`` seconds, or less when the hook pokes the FIFO or a
    watched directory has what its watch waits for (a save of the db, an
    arrival in the inbox). ``wake``: None, the FIFO's fd, or ``{"fifo": fd or
    None, "watches": {kind: watch}}`` (:func:`_watched`). A watch wakes the
    look once the directory's writes have paused for ``SETTLE`` s (a save is
    several commits; at most ``SETTLE_MAX`` s), so one save asks for one job;
    other files of the directory (ProxySQL's log) do not wake it. Returns
    what woke it: ``{"fifo"}`` or the kinds of the watches, empty at the end
    of the interval.
    """
    if not isinstance(wake, dict):
        wake = {"fifo": wake}
    fifo = wake["fifo"]
    watches = {kind: w for kind, w in (wake.get("watches") or {}).items() if w["fd"] is not None}
    fds = ([fifo] if fifo is not None else []) + [w["fd"] for w in watches.values()]
    deadline = time.monotonic() + interval
    for _ in range(WAKES_PER_WAIT):
        left = deadline - time.monotonic()
        if left <= 0:
            return set()
        if not fds:  # nothing can wake it: it sleeps its interval out
            select.select([], [], [], left)
            return set()
        ready = select.select(fds, [], [], left)[0]
        if not ready:
            return set()
        if fifo in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(fifo, 4096)
            return {"fifo"}
        woke = {kind for kind, w in watches.items() if w["fd"] in ready and _fired(w)}
        if woke:
            return woke
    return set()


def _fired(watch):
    """A watch's fd is readable: whether for what it waits for (then once the directory's
    writes paused), its events drained; a watch whose directory went is marked ended."""
    drain = _util("proxysql_ha_watch.drain")
    events = drain(watch["fd"])
    ours = watch["wants"](events)
    until = time.monotonic() + SETTLE_MAX
    while ours and time.monotonic() < until and select.select([watch["fd"]], [], [], SETTLE)[0]:
        events += drain(watch["fd"])
    if _util("proxysql_ha_watch.watch_ended")(events):
        watch["ended"] = True
    return ours


def _targets(watch):
    """
    What the waits watch with inotify: ``{kind: (directory, wants)}``, where
    ``wants(events)`` says whether that directory's events are for it: the
    db's directory for its saves and, on a warm standby, the inbox for arrivals.
    """
    targets = {}
    if watch["db"]:
        name, touches = os.path.basename(watch["db"]), _util("proxysql_ha_watch.touches")
        targets["db"] = (os.path.dirname(watch["db"]), lambda events: touches(events, name))
    conf = watch["conf"]
    if conf and conf.get("standby") == "warm":
        targets["inbox"] = (conf["inbox_dir"], _util("proxysql_ha_watch.arrived"))
    return targets


def _watched(wake, targets, now):
    """
    ``wake`` with an inotify watch (an fd of its own) of each directory of
    ``targets`` (:func:`_targets`), opened again when its directory changed
    (a pillar refresh) or the watch ended, closed when no longer wanted;
    without one (another system, no directory yet) the looks poll it, and it
    is tried again after RETRY.
    """
    watches = wake.setdefault("watches", {})
    for kind in list(watches):
        w = watches[kind]
        if w["fd"] is not None and (w["ended"] or kind not in targets
                                    or w["dir"] != targets[kind][0]):
            os.close(w["fd"])
            w.update(fd=None, ended=False, retry_at=0.0)
        if kind not in targets:
            del watches[kind]
    for kind, (directory, wants) in targets.items():
        w = watches.setdefault(kind, {"fd": None, "dir": None, "ended": False, "retry_at": 0.0})
        w["wants"] = wants
        if w["fd"] is None and now >= w["retry_at"]:
            try:
                w.update(fd=_util("proxysql_ha_watch.watch_directory")(directory), dir=directory)
            except OSError as exc:
                log.debug("proxysql_ha engine: not watching %s (polling instead): %s",
                          directory, exc)
                w["retry_at"] = now + RETRY
    return wake


def _all_watched(wake):
    """Whether every directory the looks watch has its inotify watch (then a look need only
    come every check interval: the watches wake it for the rest)."""
    watches = wake.get("watches") or {}
    return bool(watches) and all(w["fd"] is not None for w in watches.values())


def _spooled(spool):
    """
    The transitions the hook dropped (at most ``SPOOL_BATCH``), oldest name
    first, removed from the spool. Each file is claimed first (renamed to a
    name the hook never writes), so a newer transition the hook puts in its
    place meanwhile is left for the next look, not deleted unread.
    """
    payloads = []
    names = sorted(n for n in os.listdir(spool) if n.endswith(".json")
                   and (n.startswith("carp-") or n.startswith(CLAIMED + "carp-")))
    for name in names[:SPOOL_BATCH]:
        path = os.path.join(spool, name)
        claimed = path if name.startswith(CLAIMED) else os.path.join(spool, CLAIMED + name)
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                continue
            if claimed != path:
                os.rename(path, claimed)
            with open(claimed, encoding="utf-8") as handle:
                payload = json.load(handle)
            os.unlink(claimed)
        except (OSError, ValueError) as exc:  # the hook renames complete files: this is junk
            log.warning("proxysql_ha engine: dropped unreadable transition %s: %s", name, exc)
            with contextlib.suppress(OSError):
                os.unlink(claimed)
            continue
        if isinstance(payload, dict) and payload.get("state") in ("MASTER", "BACKUP", "INIT"):
            payloads.append(payload)
    return payloads


def _look(opts, watch, state, now, woke=frozenset()):
    """
    One look: relay the spool, notice a save, and every ``check_interval`` the
    role and ProxySQL; ask for the jobs that are due. A job that could not be
    asked for stays due (the save is not forgotten: it is asked for again).
    ``woke``: what woke it (:func:`_wait`).
    """
    if watch["spool"]:
        payloads = _util("proxysql_ha_watch.coalesce")(_spooled(watch["spool"]))
        if payloads:
            state["asked"]["relayed"] = now  # reconcile asked for: the role change it brings too
            if not _relay(opts, payloads, watch["reconcile_job"]):
                log.warning("proxysql_ha engine: the minion did not take every relayed event; "
                            "the role check asks for reconcile again")
                state["asked"].pop("relayed")
    current = _signature(watch["db"]) if watch["db"] else None
    conf = watch["conf"]
    seen = {"role": state["role"], "previous_role": state["role"], "running": None,
            "db_changed": current != state["last"] and current is not None,
            "asked": state["asked"]}
    if conf and watch["check_interval"] and now >= state["next_check"]:
        state["next_check"] = now + watch["check_interval"]
        seen["role"] = _read_role(conf) or state["role"]
        seen["running"] = _proxysql_running(conf)
        seen["ship_failed"] = _state_says(conf, "ship.json", "ok", False)  # the job retries it
        seen["vip_released"] = _state_says(conf, "vip.json", "released", True)
        state["role"] = seen["role"]
    elif conf and watch["check_interval"] and seen["db_changed"] and state["role"] != "MASTER":
        # a save on a node last seen as BACKUP: it may have become MASTER since that look
        # (a save right after a takeover was dropped as a BACKUP's, and waited for the schedule)
        seen["role"] = state["role"] = _read_role(conf) or state["role"]
    if conf:
        _layer_check(conf, state, now)
    shipped = True
    bare = {"stop_on_backup": True,
            "schedule": {"ship_job": watch["job"], "reconcile_job": watch["reconcile_job"]}}
    for job, why in _util("proxysql_ha_watch.decide")(seen, now, conf or bare, RETRY):
        if _ask(opts, job):
            state["asked"][why] = now
            log.info("proxysql_ha engine: asked for %s: %s", job, why)
        else:
            log.warning("proxysql_ha engine: could not ask the minion to run %s (%s): "
                        "asking again at the next look", job, why)
            shipped = shipped and job != watch["job"]
    if shipped:
        state["last"] = current
    _arrivals(opts, conf, state, seen["role"], watch["reconcile_job"], "inbox" in woke)


def _arrivals(opts, conf, state, role, job, arrived=False):
    """
    A backup arrived on a warm standby: ask for reconcile, which applies it.
    ``arrived``: the inbox's watch saw it; else (no inotify, the safety net)
    the inbox changed since the last look (one ``stat()``). One that could not
    be asked for is asked for again at the next look.
    """
    if not conf or conf.get("standby") != "warm" or role == "MASTER":
        return
    try:
        mark = os.stat(conf["inbox_dir"]).st_mtime_ns
    except OSError:
        return
    previous, state["inbox"] = state.get("inbox"), mark
    due = arrived or state.pop("arrival_due", False) or previous not in (None, mark)
    if not due:
        return
    if _ask(opts, job):
        log.info("proxysql_ha engine: asked for %s: a backup arrived on a warm standby", job)
    else:
        state["arrival_due"] = True


def _layer_check(conf, state, now):
    """
    Every ``admin:layer_check_interval`` s on the MASTER: the layer checks
    (``proxysql_ha_layers.difference_problems``) over one admin client run, kept
    short (the connect timeout bounds it: this loop also relays CARP
    transitions). A new finding fires its alert and asks for the check job, so
    that metrics and the beacon follow; the same finding is not fired again
    while the file and runtime stay as they were: after a save, or a load to
    runtime (a module's version in ``runtime_checksums_values`` moved), a
    finding is a new one, about another change, even when no check saw the
    layers agree in between. A check that cannot be made is logged once per
    reason (the check job reports it).
    """
    admin = conf.get("admin") or {}
    interval = admin.get("layer_check_interval") or 0
    if not (admin.get("enabled") and interval) or now < state.get("next_layer_check", 0.0):
        return
    state["next_layer_check"] = now + interval
    if state["role"] != "MASTER":
        state["layers_seen"] = {}
        return
    live = os.path.join(conf["datadir"], "proxysql.db")
    disk = _signature(live)
    try:
        params = _util("proxysql_ha_admin.resolve")(admin, live)
        params["query_timeout"] = min(params["query_timeout"], params["connect_timeout"] + 2)
        flags, loads = _util("proxysql_ha_admin.check_layers_loaded")(
            params, live, _layer_statement(state, live, disk))
        problems = _util("proxysql_ha_layers.difference_problems")(flags)
    except Exception as exc:  # pylint: disable=broad-except  # the check job reports it
        reason = str(exc)
        (log.debug if state.get("layers_failed") == reason else log.warning)(
            "proxysql_ha engine: layer check not made: %s", reason)
        state["layers_failed"] = reason
        return
    state["layers_failed"] = None
    previous = state.get("layers_seen") if state.get("layers_version") == (disk, loads) else {}
    fresh = _util("proxysql_ha_layers.new_alerts")(previous, problems)
    state["layers_seen"] = _util("proxysql_ha_layers.seen")(problems)
    state["layers_version"] = (disk, loads)
    for problem in fresh:
        log.warning("proxysql_ha engine: %s: %s", problem["problem"], problem["message"])
        _fire(__opts__, {"kind": problem["problem"], "modules": problem["modules"],
                         "message": problem["message"], "node_id": conf["node_id"],
                         "role": "MASTER"},
              f"proxysql_ha/alert/{problem['problem']}", master=True)
    if fresh:
        _ask(__opts__, conf["schedule"]["check_job"])


def _layer_statement(state, live, disk):
    """The layer check's statement for the live db, built again only when the file changed
    (``disk``: its :func:`_signature`; building it reads the db's whole schema and row counts)."""
    kept = state.get("layers_statement")
    if disk is not None and kept and kept[0] == disk:
        return kept[1]
    statement = _util("proxysql_ha_admin.layer_statement_of")(live)
    state["layers_statement"] = (disk, statement) if disk is not None else None
    return statement


def _compile(state):
    """
    Compile the minion's pillar in a thread of its own: a slow or absent master
    (a compile can wait on it for minutes) never holds up the looks, which go
    on with the settings they have. Asked again while one runs: once more after it.
    """
    running = state.get("compiling")
    if running is not None and running.is_alive():
        state["compile_again"] = True
        return
    box = {}

    def work():
        box["conf"] = _node_config(__opts__, fresh=True)

    thread = threading.Thread(target=work, name="proxysql_ha pillar", daemon=True)
    thread.box = box
    state["compiling"], state["compile_again"] = thread, False
    thread.start()


def _refreshed(watch, given, state):
    """
    The settings from the pillar compiled last, once its thread is done (waited
    for at most ``COMPILE_WAIT`` s); else ``watch`` as it is. The spool and its
    FIFO stay as opened.
    """
    thread = state.get("compiling")
    if thread is None:
        return watch
    thread.join(COMPILE_WAIT)
    if thread.is_alive():
        return watch
    state["compiling"] = None
    if state.pop("compile_again", False):
        _compile(state)
    fresh = thread.box.get("conf")
    if not fresh:
        return watch
    log.info("proxysql_ha engine: pillar refreshed")
    return dict(_settings(fresh, given), spool=watch["spool"])


def start(db=None, job=None, interval=None, spool=None, reconcile_job=None, check_interval=None,
          max_loops=None):
    """
    Watch the node (see the module's docstring) until SIGTERM (the minion
    stopping, within ``interval`` seconds) or ``max_loops`` looks. Every
    option defaults to the ``proxysql_ha`` pillar's value.
    """
    stopping = []
    _HELPERS.clear()
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    given = {"db": db, "job": job, "interval": interval, "spool": spool,
             "reconcile_job": reconcile_job, "check_interval": check_interval}
    watch = _settings(_node_config(__opts__), given)
    if watch["db"] is None:
        log.error("proxysql_ha engine: no database to watch yet: give db or the proxysql_ha "
                  "pillar (asked again every %ss)", RETRY)
    wake = {"fifo": None, "watches": {}}
    if watch["spool"]:
        try:
            wake["fifo"] = _open_wake(watch["spool"])
        except OSError as exc:  # still relays, at every look instead of at once
            log.error("proxysql_ha engine: cannot open the spool's FIFO: %s", exc)
    state = {"last": _signature(watch["db"]) if watch["db"] else None, "role": None,
             "asked": {}, "next_check": 0.0, "next_refresh": 0.0,
             "next_config": time.monotonic() + RETRY}
    log.info("proxysql_ha engine: watching %s every %ss for job %s", watch["db"], watch["interval"],
             watch["job"])
    loops = 0
    while not stopping and (max_loops is None or loops < max_loops):
        wake = _watched(wake, _targets(watch), time.monotonic())
        # watched directories wake the look themselves: then it only needs to come every
        # check interval
        woke = _wait(wake, max(watch["interval"], watch["check_interval"] or 0.0)
                     if _all_watched(wake) else watch["interval"]) or set()
        loops += 1
        try:
            now = time.monotonic()
            if watch["conf"] is None and now >= state["next_config"]:
                state["next_config"] = now + RETRY  # none yet: the minion may not have connected
                _compile(state)
            elif now >= state["next_refresh"]:
                state["next_refresh"] = now + (watch["check_interval"] or 1.0)
                if _pillar_refreshed(__opts__, now):
                    _compile(state)
            watch = _refreshed(watch, given, state)
            _look(__opts__, watch, state, now, woke)
        except Exception:  # pylint: disable=broad-except
            log.exception("proxysql_ha engine: a look failed; going on")
    for key in list(_BUS):
        _drop_bus(key)
    for fd in [wake["fifo"]] + [w["fd"] for w in wake["watches"].values()]:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
    log.info("proxysql_ha engine: stopped")
