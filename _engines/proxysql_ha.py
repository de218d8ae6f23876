"""
proxysql_ha engine: notice a saved ProxySQL configuration at once, for nearly nothing.

A schedule job costs the minion a fork (about 70 ms of CPU) on every run, so
checking ``proxysql.db`` every second that way would spend several percent of
a core on doing nothing. This engine runs inside the minion and ``stat()``\\ s
the file every ``interval`` seconds; when it changed, it asks the minion to
run the ship job now (``manage_schedule`` ``run_job``). The job does the
work, with the minion's current pillar, and checks the role itself, so on a
BACKUP it does nothing. The job's own schedule stays as the safety net.

It also relays CARP transitions. The hook (``proxysql-ha-event``) must return
at once and would spend about 0.4 s importing Salt just to reach the minion's
event bus; with ``spool`` set it drops the transition as a file into that
directory and pokes the FIFO ``<spool>/wake``. The engine, which has Salt
loaded already, wakes up, asks the minion to run the reconcile job and sends
``proxysql_ha/carp/<state>`` on the bus and on to the master's reactor.

Minion configuration (the formula writes it):

.. code-block:: yaml

    engines:
      - proxysql_ha:
          db: /var/db/proxysql/proxysql.db
          job: proxysql_ha_ship
          interval: 0.25
          spool: /var/db/proxysql-ha/state/carp
          reconcile_job: proxysql_ha_reconcile
"""

import contextlib
import json
import logging
import os
import select
import signal
import stat

import salt.utils.event

log = logging.getLogger(__name__)

__virtualname__ = "proxysql_ha"


def __virtual__():
    return __virtualname__


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


def _ask(opts, job):
    with salt.utils.event.MinionEvent(opts, listen=False) as bus:
        return bus.fire_event({"func": "run_job", "name": job}, "manage_schedule", timeout=1000)


def _relay(opts, payloads, reconcile_job):
    """Hand CARP transitions from the spool to the minion: run reconcile, send the events."""
    with salt.utils.event.MinionEvent(opts, listen=False) as bus:
        bus.fire_event({"func": "run_job", "name": reconcile_job}, "manage_schedule", timeout=1000)
        for payload in payloads:
            tag = f"proxysql_ha/carp/{payload['state']}"
            bus.fire_event(payload, tag, timeout=1000)
            bus.fire_master(payload, tag, timeout=1000)
    log.info("proxysql_ha engine: relayed %s", [p["state"] for p in payloads])


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
    """Sleep ``interval`` seconds, or less when the hook pokes the FIFO."""
    if wake is None:
        select.select([], [], [], interval)
        return
    ready, _, _ = select.select([wake], [], [], interval)
    if ready:
        try:
            os.read(wake, 4096)
        except BlockingIOError:
            pass


def _spooled(spool):
    """The transitions the hook dropped, oldest first, removed from the spool."""
    payloads = []
    for name in sorted(os.listdir(spool)):
        if not (name.startswith("carp-") and name.endswith(".json")):
            continue
        path = os.path.join(spool, name)
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                continue
            with open(path, encoding="utf-8") as handle:
                payload = json.load(handle)
            os.unlink(path)
        except (OSError, ValueError) as exc:  # the hook renames complete files: this is junk
            log.warning("proxysql_ha engine: dropped unreadable transition %s: %s", name, exc)
            with contextlib.suppress(OSError):
                os.unlink(path)
            continue
        if isinstance(payload, dict) and payload.get("state") in ("MASTER", "BACKUP", "INIT"):
            payloads.append(payload)
    return payloads


def start(db, job="proxysql_ha_ship", interval=0.25, spool=None,
          reconcile_job="proxysql_ha_reconcile", max_loops=None):
    """
    Watch ``db`` and ask for ``job`` whenever it changed; with ``spool``,
    relay the CARP transitions the hook drops there. Returns on SIGTERM (the
    minion stopping) within ``interval`` seconds, or after ``max_loops``.
    """
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    wake = _open_wake(spool) if spool else None
    last = _signature(db)
    loops = 0
    log.info("proxysql_ha engine: watching %s every %ss for job %s", db, interval, job)
    while not stopping and (max_loops is None or loops < max_loops):
        _wait(wake, interval)
        loops += 1
        if spool:
            payloads = _spooled(spool)
            if payloads:
                _relay(__opts__, payloads, reconcile_job)
        current = _signature(db)
        if current == last:
            continue
        last = current
        if current is not None and not _ask(__opts__, job):
            log.warning("proxysql_ha engine: could not ask the minion to run %s", job)
    log.info("proxysql_ha engine: stopped")
