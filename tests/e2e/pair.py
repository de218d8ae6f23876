"""The lab's two hosts as the end-to-end tests see them: the known state, waits, timings.

The known state: A MASTER with ProxySQL running, B BACKUP with ProxySQL stopped, and a change
saved on A arriving in B's inbox. :func:`known_state` undoes what a test may have left broken
(a dead host, a cut link, sshd or the salt-master stopped) and waits for it.

Every wait is bounded far above what it takes: a bound catches a hang, it does not judge speed.
"""

import json
import time

from lab.hosts import generation
from lab.timeline import first, restored
from saltext.proxysql_ha.utils.proxysql_ha_store import TMP_PREFIX, read_manifest, sha256_file
from standin import proxysql_db

ARRIVAL_SECONDS = 30  # a saved change to reach the peer's inbox
TAKEOVER_SECONDS = 40  # a CARP transition to be carried out (restore, start or stop ProxySQL)
SETTLE_SECONDS = 90  # the pair to come back to the known state
STEP_DOWN_EVERY = 10  # seconds between two planned switchovers while settling


# ---- when things happened ---------------------------------------------------------------


def ms(seconds):
    return f"{seconds * 1000:.0f} ms"


# ---- what a host holds ------------------------------------------------------------------


def comparable(config):
    """A configuration without what ProxySQL writes itself at start (``global_settings``, each node's
    own Cluster uuid, and the default ``global_variables``): ``proxysql_db.without_startup_writes``."""
    return proxysql_db.without_startup_writes(config)


def row_counts(config):
    """Rows per table, but for the two tables ProxySQL's start writes (their rows are compared whole)."""
    return {table: len(rows) for table, rows in config.items() if table not in proxysql_db.STARTUP_TABLES}


def copy_path(host, name, where="inbox"):
    directory = host.node.inbox_dir if where == "inbox" else host.node.backup_dir
    return directory / f"{name}.db"


def copy_config(host, name, where="inbox"):
    """The configuration held by the backup ``name`` of ``host``."""
    return proxysql_db.dump_config(copy_path(host, name, where))


def intact(host, name, where="inbox"):
    """Whether the copy ``name`` has a manifest whose sha256 and size its bytes match."""
    path = copy_path(host, name, where)
    manifest = read_manifest(str(path.with_suffix(".json")))
    return sha256_file(str(path)) == (manifest["sha256"], manifest["size"])


def newest_generation(host, where="inbox"):
    names = host.backups(where)
    return generation(names[-1]) if names else 0


def state(host, name):
    """A JSON file of the host's state dir (``ship.json``, ``live.json``), or {}."""
    path = host.node.state_dir / name
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def stray_files(host):
    """Inbox files that are neither a backup's ``.db``/``.json`` nor a hidden temporary file."""
    return sorted(p.name for p in host.node.inbox_dir.iterdir()
                  if not p.name.startswith(TMP_PREFIX)
                  and not (p.name.startswith("proxysql-ha-g") and p.suffix in (".db", ".json")))


def temporary_files(host):
    return sorted(p.name for p in host.node.inbox_dir.iterdir() if p.name.startswith(TMP_PREFIX))


# ---- roles ------------------------------------------------------------------------------


def active(master, backup):
    """Whether ``master`` is MASTER with ProxySQL running and ``backup`` BACKUP with it stopped
    (running, on a warm standby: the lab's pillar ``standby: warm``)."""
    warm = backup.lab.pillar.get("standby") == "warm"
    return (master.role() == "MASTER" and master.proxysql_running()
            and backup.role() == "BACKUP" and backup.proxysql_running() == warm)


def took_over(host, since):
    """The ``proxysql_ha/promoted`` event of ``host`` after ``since`` that restored a backup, once
    ``host`` is MASTER with ProxySQL running; else None."""
    if host.role() != "MASTER" or not host.proxysql_running():
        return None
    return first(host.events("proxysql_ha/promoted"), since, restored)


def wait_takeover(lab, host, since):
    """Wait until ``host`` took over after ``since`` (see :func:`took_over`); return the event."""
    return lab.wait_until(lambda: took_over(host, since), TAKEOVER_SECONDS,
                          f"{host.minion_id} to become MASTER, restore and start ProxySQL")


def switch_over(lab, master, backup):
    """
    A planned switchover from ``master`` to ``backup``: wait until ``backup`` was promoted and
    runs ProxySQL as MASTER, ``master`` BACKUP without it. Returns when it was asked (epoch).
    """
    asked = time.time()
    master.step_down()
    lab.wait_until(
        lambda: active(backup, master) and first(backup.events("proxysql_ha/promoted"), asked),
        TAKEOVER_SECONDS, f"{backup.minion_id} to take over from {master.minion_id}")
    return asked


def proxysql_breaks(lab, master, backup):
    """
    ProxySQL dies on ``master`` and cannot start again (the lab's start gate), after a change
    saved on it reached ``backup``; wait until ``backup`` took over. Returns ``(saved
    configuration, copy name, when it died, backup's promoted event, master's vip/released
    event or None)``.
    """
    saved, copy, _ = change_arrives(lab, master, backup)
    master.break_start()
    died = time.time()
    assert master.node.standin("stop").returncode == 0
    promoted = wait_takeover(lab, backup, died)
    return saved, copy, died, promoted, first(master.events("proxysql_ha/vip/released"), died)


# ---- shipping ---------------------------------------------------------------------------


def wait_copy_of(lab, host, config, since_generation, seconds=ARRIVAL_SECONDS):
    """The first copy above ``since_generation`` in ``host``'s inbox that holds ``config``
    (uuid aside), once there is one; copies of older saves may arrive before it."""
    looked_at = set()

    def holding():
        for name in reversed(host.backups()):
            if generation(name) <= since_generation:
                return None
            if name not in looked_at:
                looked_at.add(name)
                if comparable(copy_config(host, name)) == comparable(config):
                    return name
        return None

    return lab.wait_until(holding, seconds, f"a copy of the saved change in "
                          f"{host.minion_id}'s inbox", interval=0.02)


def change_arrives(lab, source, target):
    """
    Save a new MySQL user on ``source``; wait until a copy holding it is in ``target``'s inbox.
    Returns ``(saved configuration, copy name, seconds from the save to the arrival)``.
    """
    before = newest_generation(target)
    saved_at = time.time()
    saved = source.save_change()
    name = wait_copy_of(lab, target, saved, before)
    return saved, name, time.time() - saved_at


# ---- the known state --------------------------------------------------------------------


def repair(lab):
    """Undo the faults a test may have left: the salt-master, links, sshd, dead hosts."""
    if not lab.master.running():
        lab.start_master()
    for host in lab.hosts.values():
        host.fix_start()
        host.unpause()
        host.wake_ucarp()
        host.restore_link()
        if host.sshd.process is None:
            host.start_sshd()
        if not host.ucarp.running():
            host.revive()
        elif not host.minion.running():
            host.start_minion()


def known_state(lab, either=False):
    """
    Repair the lab, then wait for A MASTER with ProxySQL running and B BACKUP with it stopped
    (stepping B down when it holds the VIP: the lab's ucarp does not preempt unless built with
    it), and check that a change
    saved on A reaches B and that A recorded that ship as done (no ssh left in flight).
    With ``either``, B MASTER and A BACKUP is as good (nobody steps down). Returns
    ``(MASTER, BACKUP)``.
    """
    a, b = lab.host("a"), lab.host("b")
    repair(lab)
    deadline = time.monotonic() + SETTLE_SECONDS
    stepped = 0.0
    while not active(a, b):
        if either and active(b, a):
            a, b = b, a
            break
        if time.monotonic() >= deadline:
            wanted = "one host MASTER, the other BACKUP" if either else "A MASTER, B BACKUP"
            raise AssertionError(f"the lab did not come back to {wanted} within "
                                 f"{SETTLE_SECONDS} s: A {a.role()}, B {b.role()}")
        if (not either and b.role() == "MASTER" and a.role() == "BACKUP"
                and time.monotonic() - stepped > STEP_DOWN_EVERY):
            b.step_down()
            stepped = time.monotonic()
        time.sleep(0.2)
    _, name, _ = change_arrives(lab, a, b)
    lab.wait_until(lambda: _shipped(a, name), ARRIVAL_SECONDS,
                   f"{a.minion_id} to record {name} as shipped")
    return a, b


def _shipped(host, name):
    """Whether ``host``'s last ship succeeded, with ``name`` or a newer copy."""
    last = state(host, "ship.json")
    return last.get("ok") and generation(last["name"]) >= generation(name)
