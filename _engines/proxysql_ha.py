"""
proxysql_ha engine: notice a saved ProxySQL configuration at once, for nearly nothing.

A schedule job costs the minion a fork (about 70 ms of CPU) on every run, so
checking ``proxysql.db`` every second that way would spend several percent of
a core on doing nothing. This engine runs inside the minion and ``stat()``\\ s
the file every ``interval`` seconds; when it changed, it asks the minion to
run the ship job now (``manage_schedule`` ``run_job``). The job does the
work, with the minion's current pillar, and checks the role itself, so on a
BACKUP it does nothing. The job's own schedule stays as the safety net.

Minion configuration (the formula writes it):

.. code-block:: yaml

    engines:
      - proxysql_ha:
          db: /var/db/proxysql/proxysql.db
          job: proxysql_ha_ship
          interval: 0.25
"""

import logging
import os
import signal
import time

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


def start(db, job="proxysql_ha_ship", interval=0.25, max_loops=None):
    """
    Watch ``db`` and ask for ``job`` whenever it changed. Returns on SIGTERM
    (the minion stopping) within ``interval`` seconds, or after ``max_loops``.
    """
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    last = _signature(db)
    loops = 0
    log.info("proxysql_ha engine: watching %s every %ss for job %s", db, interval, job)
    while not stopping and (max_loops is None or loops < max_loops):
        time.sleep(interval)
        loops += 1
        current = _signature(db)
        if current == last:
            continue
        last = current
        if current is not None and not _ask(__opts__, job):
            log.warning("proxysql_ha engine: could not ask the minion to run %s", job)
    log.info("proxysql_ha engine: stopped")
