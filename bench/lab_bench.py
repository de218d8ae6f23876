"""
Benchmarks 5 and 6, in the two-host lab (``lab/``): failover time and RPO of proxysql-ha and
of the classic recipe (``bench/classic/``), in one lab, in one run.

Failover: from ucarp running the up-script on the new MASTER (the time its wrapper notes
before it does anything else) to ProxySQL (the stand-in) running on the restored
configuration (the time the stand-in notes once it has loaded the database). Each failover
first saves a change on the MASTER and waits until the BACKUP holds it, so every failover
restores a configuration that host never ran; then the MASTER's ucarp steps down (SIGUSR2)
and the peer takes over: A to B, B to A, and so on. ucarp's own detection is not counted.
The rows run in this order: as set up (the Salt master up: its reactor and the minion's
reconcile job race for the lock); the reactor alone (the reconcile job held back with Salt's
``dry_run``); the Salt master stopped (the reconcile job alone); the classic recipe
(salt-minions stopped, ucarp's scripts swapped for the classic ones, backups shipped by the
classic cron script over the same sshd). Each proxysql-ha failover is counted by the path that
restored (the master's recorded promote job returns say when it was the reactor). Every
failover is also timed to the new MASTER serving on the VIP: the first TCP connection its
traffic port accepts on the VIP, seen by a client in the lab's net namespace
(``bench/vip_probe.py``). The warm row runs in a second lab whose pair has ``standby: warm``:
each change is checked in the BACKUP's runtime (its admin interface) before the step-down and
in the new MASTER's after it; nothing is restored, so only the VIP column applies.

Health failover (in the cold lab, the Salt master up): ProxySQL dies on the MASTER and its start
is broken (the lab's start gate), after a change saved there reached the BACKUP; the clock starts
at the death and stops when the peer's ProxySQL has loaded that change, and when its traffic port
accepts on the VIP. The broken host's start is then fixed and it takes the VIP back (released
and reclaimed by the module), so the next one breaks the other host.

RPO: from a change saved on the MASTER to a complete copy that holds it in the BACKUP's inbox.

Where the time goes comes from what the lab records: ucarp's script runs, the events on each
minion's bus with their arrival times (the hook's, the engine's, promote's report with its
steps) and the stand-in's start time.
"""

import contextlib
import json
import os
import random
import shlex
import sqlite3
import subprocess
import sys
import time
import traceback
from pathlib import Path

from _engines.proxysql_ha import RETRY  # how often the engine asks again for a lasting condition
from bench import cpu, stats
import yaml
from saltext.proxysql_ha.utils import proxysql_ha_config

from lab import Lab, LabTimeout, LabUnavailable, netns
from lab import salt as labsalt
from lab.hosts import ADVBASE, HEALTH, generation, newest_after
from lab.lab import ADVSKEW
from lab.timeline import first, restored, stepped
from standin import proxysql_standin, sshd

CLASSIC = Path(__file__).resolve().parent / "classic"
PROBE = Path(__file__).resolve().parent / "vip_probe.py"
# both labs: the admin interface in use with its default layer check (every 30 s), as an operator
# who enables it gets it (the lab's own 2 s is for the tests' alerts); the warm lab adds standby
ADMIN_PILLAR = {"admin": {"enabled": True}}
WARM_PILLAR = dict(ADMIN_PILLAR, standby="warm")
ROUNDS = {True: (2, 3), False: (10, 20)}  # quick or not: (failovers per row, changes)
HEALTH_ROUNDS = {True: 1, False: 5}  # health failovers: each waits out the hold-down after it
WAIT = 30  # seconds one step may take before the lab run is called failed
STEP_DOWN_PAUSE = 3.5  # ucarp listens again 3 s after SIGUSR2: wait that long between step-downs
CRON_PERIOD = 60  # seconds: the classic recipe's cron job runs every minute
TARGETS_MS = {"up": 1000, "down": 3000, "rpo": 3000, "warm": 100}
RECONCILE_JOB, SHIP_JOB = "proxysql_ha_reconcile", "proxysql_ha_ship"
PROMOTE = "proxysql_ha.promote"
SALT_IMPORTS = "salt.config, salt.utils.event, salt.transport.tcp"
ROWS = {
    "race": "proxysql-ha as set up: Salt master up, its reactor and the minion's reconcile job race",
    "reactor": "proxysql-ha, the master's reactor alone (the minion's reconcile job held back)",
    "down": "proxysql-ha, Salt master down: the minion's reconcile job alone",
    "classic": "classic recipe (up-script: newest file, cp, chown, start)",
    "warm": "proxysql-ha, warm standby (standby: warm): the VIP moves to a ProxySQL that runs "
            "A's last saved configuration",
    "health": "proxysql-ha, health: ProxySQL dies on the MASTER and cannot start; clock from "
              "its death (the grace, the release, CARP, the peer's restore and start)",
    "rpo": "proxysql-ha (engine, ship job, ssh)",
    "noticed": "proxysql-ha: the save → the engine's run_job for the ship job (target ≤ 300 ms)",
    "cron": f"classic recipe: cron every {CRON_PERIOD} s, plus transfer (modelled)",
    "transfer": "classic recipe: the transfer alone (backup.sh right after the save)",
}
CLASSIC_WRAPPER = """#!/bin/sh
# ucarp {direction}-script of the benchmark's classic rows: note the time, run the classic script.
echo "$(date +%s.%N) {direction} $*" >> {log}
PATH=/usr/sbin:/usr/bin:/sbin:/bin; export PATH
exec {script} "$1" "$2" {args}
"""


def run(quick, schema):
    """The lab's part of ``bench.run``: ``{"failover", "rpo", "notes"}``, or ``{"skipped": why}``."""
    try:
        netns.require()
    except LabUnavailable as exc:
        return {"skipped": str(exc)}
    failovers, changes = ROUNDS[bool(quick)]
    load = os.getloadavg()[0]
    try:
        with Lab(schema, narrate=False, keep_dir=keep(), pillar=ADMIN_PILLAR) as lab:
            try:  # first: measure() ends with the minions stopped
                idle = idle_cost(lab, IDLE_SECONDS[bool(quick)])
            except (LabTimeout, RuntimeError, OSError) as exc:
                idle = {"skipped": f"the idle measurement failed: {exc}"}
            pair = Pair(lab)
            timelines = pair.measure_cold(failovers, changes, HEALTH_ROUNDS[bool(quick)])
        timelines["warm"] = warm_failovers(schema, failovers)
        results = pair.results(timelines)
        results["idle"] = idle
    except LabUnavailable as exc:
        return {"skipped": str(exc)}
    except (LabTimeout, RuntimeError, OSError, sqlite3.Error, subprocess.TimeoutExpired) as exc:
        traceback.print_exc()
        return {"skipped": f"the lab run failed: {exc} (the lab's logs were kept: see stderr)"}
    results["notes"].append(f"Load average (1 min) of this {os.cpu_count()}-core machine: "
                            f"{load:.1f} before the lab run, {os.getloadavg()[0]:.1f} after it; "
                            "every process of the lab shares these cores.")
    return results


def run_idle(quick, schema):
    """``--parts lab_idle``: the idle cost alone, in a lab of its own (no failover, no RPO rows):
    ``{"idle", "settings"}``, or ``{"skipped": why}``."""
    try:
        netns.require()
        with Lab(schema, narrate=False, keep_dir=keep(), pillar=ADMIN_PILLAR) as lab:
            return {"idle": idle_cost(lab, IDLE_SECONDS[bool(quick)]), "settings": lab_settings(lab)}
    except LabUnavailable as exc:
        return {"skipped": str(exc)}
    except (LabTimeout, RuntimeError, OSError) as exc:
        traceback.print_exc()
        return {"skipped": f"the idle lab run failed: {exc} (the lab's logs were kept: see stderr)"}


def keep():
    return bool(os.environ.get("PROXYSQL_HA_LAB_KEEP"))


def warm_failovers(schema, failovers):
    """The warm row, in a second lab whose pair runs ``standby: warm``: its failovers' timelines,
    or ``{"skipped": why}`` (the cold rows stand without it)."""
    try:
        with Lab(schema, narrate=False, keep_dir=keep(), pillar=WARM_PILLAR) as lab:
            pair = Pair(lab)
            return [pair.failover_warm() for _ in range(failovers)], pair.wrong["warm"]
    except (LabUnavailable, LabTimeout, RuntimeError, OSError, sqlite3.Error,
            subprocess.TimeoutExpired, ValueError) as exc:
        traceback.print_exc()
        return {"skipped": f"the warm lab run failed: {exc} (the lab's logs were kept: see stderr)"}


# ---- small readers --------------------------------------------------------------------------


def summary(values):
    """``{n, p50_ms, p95_ms}`` of ``values`` (ms)."""
    return {"n": len(values), "p50_ms": stats.percentile(values, 50),
            "p95_ms": stats.percentile(values, 95)}


def failover_summary(rows):
    """A failover row: ``summary`` of the totals (up-script → ProxySQL running on the restored
    copy; None where nothing is restored), with ``vip_p50_ms``/``vip_p95_ms``: up-script → the
    traffic port accepting on the VIP, from the client's side."""
    out = summary([row["total"] for row in rows if row.get("total") is not None])
    vip = summary([row["vip"] for row in rows if row.get("vip") is not None])
    out.update(n=len(rows), vip_p50_ms=vip["p50_ms"], vip_p95_ms=vip["p95_ms"])
    return out


def p50_of(rows, key):
    return stats.percentile([row[key] for row in rows if row.get(key) is not None], 50)








def runs_user(host, user):
    """Whether ``host``'s ProxySQL runs ``user`` (its ``runtime_mysql_users``, asked through its
    admin interface as an operator would); False while it does not answer."""
    try:
        rows = host.admin_session("SELECT username FROM runtime_mysql_users;")
    except (RuntimeError, ValueError, subprocess.TimeoutExpired):
        return False
    return any(row["username"] == user for row in rows)


def journal(host):
    """Whether a transition of ``host`` is under way (its journal, ``transition.json``)."""
    return (host.node.state_dir / "transition.json").exists()


def asked_for(job):
    return lambda data: data.get("func") == "run_job" and data.get("name") == job


def users_in(path):
    """Rows of ``mysql_users`` in the SQLite file at ``path`` (None when it cannot be read)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            return conn.execute("SELECT COUNT(*) FROM mysql_users").fetchone()[0]
    except sqlite3.Error:
        return None


def run_in(namespace, argv):
    """Run ``argv`` inside ``namespace``; its stdout. RuntimeError when it fails."""
    out = subprocess.run(netns.exec_argv(namespace, argv), capture_output=True, text=True,
                         timeout=WAIT, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed (exit {out.returncode}): {out.stderr.strip()[-500:]}")
    return out.stdout


# ---- the measurements --------------------------------------------------------------------------


class Pair:
    """The lab's two hosts, measured: failovers back and forth, changes from MASTER to BACKUP."""

    def __init__(self, lab):
        self.lab = lab
        self.hosts = (lab.host("a"), lab.host("b"))
        self.stepped_down = 0.0
        self.classic_keys = {}
        self.wrong = {"race": 0, "reactor": 0, "down": 0, "classic": 0, "warm": 0,
                      "health": 0}  # ran another configuration
        self.traffic_port = int(self.hosts[0].loaded()["traffic"].rsplit(":", 1)[1])
        self.measured = {}

    def master(self):
        """``(MASTER, BACKUP)`` as the VIP says now."""
        a, b = self.hosts
        return (a, b) if a.role() == "MASTER" else (b, a)

    def measure_cold(self, failovers, changes, health=0):
        """The cold lab's rows: their timelines (what ``results`` needs besides is kept)."""
        self.measured["rpo"] = [self.rpo_ours() for _ in range(changes)]
        self.measured["settings"] = lab_settings(self.lab)
        timelines = {"race": [self.failover_ours("race") for _ in range(failovers)]}
        if health:
            timelines["health"] = [self.failover_health() for _ in range(health)]
        with self.held_back():
            timelines["reactor"] = [self.failover_ours("reactor") for _ in range(failovers)]
        self.lab.stop_master()
        timelines["down"] = [self.failover_ours("down") for _ in range(failovers)]
        self.measured["imports"] = [self.salt_imports() for _ in range(max(2, failovers // 2))]
        self.go_classic()
        self.measured["transfers"] = [self.rpo_classic() for _ in range(changes)]
        timelines["classic"] = [self.failover_classic() for _ in range(failovers)]
        return timelines

    def results(self, timelines):
        """The lab's results from ``measure_cold``'s timelines and ``timelines["warm"]``:
        ``(rows, failovers that ran another configuration)``, or ``{"skipped": why}``."""
        rpo, imports, transfers = (self.measured[key] for key in ("rpo", "imports", "transfers"))
        warm = timelines.pop("warm")
        if "skipped" not in warm:
            timelines["warm"], self.wrong["warm"] = warm
        failover = {ROWS[row]: dict(failover_summary(timelines[row]), key=row) for row in timelines}
        modelled = summary(transfers)
        modelled.update(p50_ms=CRON_PERIOD * 500 + modelled["p50_ms"],
                        p95_ms=CRON_PERIOD * 950 + modelled["p95_ms"])
        noticed = [r["noticed"] for r in rpo if r["noticed"] is not None]
        rpo_rows = {ROWS["rpo"]: summary([r["total"] for r in rpo]),
                    ROWS["noticed"]: dict(summary(noticed), missed=len(rpo) - len(noticed)),
                    ROWS["cron"]: modelled, ROWS["transfer"]: summary(transfers)}
        profile = {"timelines": timelines, "rpo": rpo, "imports": stats.median(imports),
                   "wrong": self.wrong, "settings": self.measured["settings"],
                   "warm_skipped": warm.get("skipped") if isinstance(warm, dict) else None}
        keyed = {"failover": {row: failover[ROWS[row]] for row in timelines},
                 "rpo": {"ours": rpo_rows[ROWS["rpo"]], "noticed": rpo_rows[ROWS["noticed"]]}}
        return {"failover": failover, "rpo": rpo_rows, "keyed": keyed,
                "settle_s": profile["settings"]["settle"][0], "settings": profile["settings"],
                "notes": notes(failover, rpo_rows, profile)}

    @contextlib.contextmanager
    def held_back(self):
        """
        The minion's own path held back on both hosts, so that only the master's reactor can
        promote: the reconcile job gets Salt's ``dry_run`` (``Schedule._run_job`` returns
        before it forks), so the engine's ``run_job`` request and the job's own 10 s schedule
        run nothing. Set through the minion's ``manage_schedule`` event (``modify``, not
        persisted: ``schedule.modify`` does not take ``dry_run``); put back afterwards.
        """
        ids = [host.minion_id for host in self.hosts]

        def status(minion):  # schedule.list leaves out the keys it does not know, dry_run too
            return self.lab.salt([minion], "schedule.job_status", RECONCILE_JOB)[minion]

        saved = {minion: {key: value for key, value in status(minion).items()
                          if not key.startswith("_")} for minion in ids}  # not the run-time keys

        def modify(minion, data):
            self.lab.salt([minion], "event.fire", json.dumps({
                "func": "modify", "name": RECONCILE_JOB, "persist": False,
                "schedule": data}), "manage_schedule")

        for minion in ids:
            modify(minion, dict(saved[minion], dry_run=True))
        for minion in ids:
            self.lab.wait_until(lambda m=minion: status(m).get("dry_run"), WAIT,
                                f"{minion}'s reconcile job to be held back")
        try:
            yield
        finally:
            for minion in ids:
                modify(minion, saved[minion])

    # ---- changes travelling from the MASTER to the BACKUP ---------------------------------

    def rpo_ours(self):
        """One change saved on the MASTER: ms until the BACKUP's inbox holds it, and until the
        engine asked for the ship job."""
        source, target = self.master()
        time.sleep(random.uniform(0.3, 0.8))  # land anywhere in the engine's 1 s look
        total, saved_at, _ = self.change_reaches(source, target)
        noticed = first(source.events("manage_schedule"), saved_at, asked_for(SHIP_JOB))
        return {"total": total, "noticed": (noticed["t"] - saved_at) * 1000 if noticed else None}

    def change_reaches(self, source, target):
        """Save a change on ``source``; wait for a complete copy holding it in ``target``'s inbox.
        Returns ``(ms from the save to its arrival, when it was saved, the configuration saved)``."""
        names = target.backups()
        since = generation(names[-1]) if names else 0
        counted = {}

        def holding():
            name = newest_after(target, since)
            if name and name not in counted:
                counted[name] = users_in(target.node.inbox_dir / f"{name}.db")
            return name and counted[name] == users

        saved_at = time.time()
        saved = source.save_change()
        users = len(saved["mysql_users"])
        self.lab.wait_until(holding, WAIT, f"{target.minion_id}'s inbox to hold the change",
                            interval=0.01)
        return (time.time() - saved_at) * 1000, saved_at, saved

    def rpo_classic(self):
        """The classic cron job's transfer, run right after a change: ms from the save."""
        source, target = self.master()
        saved_at = time.time()
        saved = source.save_change()
        copy = self.classic_ship(source, target)
        elapsed = (time.time() - saved_at) * 1000
        if users_in(copy) != len(saved["mysql_users"]):
            raise RuntimeError(f"the classic copy {copy} does not hold the change just saved")
        return elapsed

    # ---- failovers ------------------------------------------------------------------------

    def step_down(self, host):
        """Make ``host``'s ucarp give up MASTER; return when that was asked (epoch)."""
        time.sleep(max(0.0, self.stepped_down + STEP_DOWN_PAUSE - time.time()))
        self.stepped_down = time.time()
        host.step_down()
        return self.stepped_down

    def failover_ours(self, row):
        """One failover of proxysql-ha after a saved change: where its time went (ms)."""
        old, new = self.master()
        _, _, saved = self.change_reaches(old, new)
        asked = self.step_down(old)

        def promoted():
            event = first(new.events("proxysql_ha/promoted"), asked, restored)
            loaded = new.loaded()
            return event and loaded and loaded["started"] > asked and (event, loaded)

        with self.client(old) as served:
            event, loaded = self.lab.wait_until(promoted, WAIT, f"{new.minion_id} to restore and start")
            vip = served(new, asked)
        self.lab.wait_until(lambda: not old.proxysql_running(), WAIT,
                            f"{old.minion_id}'s demote to stop ProxySQL")
        self.wrong[row] += loaded["config"]["mysql_users"] != len(saved["mysql_users"])
        return dict(timeline(new, asked, event, loaded, self.lab.master_events()), vip=vip)

    def failover_health(self):
        """
        ProxySQL dies on the MASTER after a change saved there reached the BACKUP, and its start
        is broken: ms from the death to the peer's ProxySQL running (``total``) and serving on
        the VIP (``vip``), and the steps between (``released``: the MASTER gave up the VIP;
        ``carp``: then the peer's up-script; ``start``: then its ProxySQL loaded). The broken
        host's start is fixed afterwards; it takes the VIP back once the hold-down has passed
        (its engine keeps asking reconcile to probe ProxySQL), as a BACKUP.
        """
        old, new = self.master()
        _, _, saved = self.change_reaches(old, new)
        old.break_start()
        try:
            died = time.time()
            if old.node.standin("stop").returncode != 0:
                raise RuntimeError(f"{old.minion_id}'s ProxySQL did not stop")

            def promoted():
                event = first(new.events("proxysql_ha/promoted"), died, restored)
                loaded = new.loaded()
                return event and loaded and loaded["started"] > died and (event, loaded)

            with self.client(old) as served:
                _, loaded = self.lab.wait_until(promoted, WAIT + HEALTH["grace"] + RETRY,
                                                f"{new.minion_id} to take over from a dead ProxySQL")
                vip = served(new, died)
        finally:
            old.fix_start()
        up = stepped(new, died, "up")
        released = first(old.events("proxysql_ha/vip/released"), died)
        self.wrong["health"] += loaded["config"]["mysql_users"] != len(saved["mysql_users"])
        self.lab.wait_until(lambda: first(old.events("proxysql_ha/vip/reclaimed"), died),
                            WAIT + HEALTH["hold_down"] + RETRY,
                            f"{old.minion_id} to take the VIP back once ProxySQL starts")
        return {"host": new.minion_id, "total": (loaded["started"] - died) * 1000,
                "vip": vip + (up - died) * 1000,
                "released": (released["t"] - died) * 1000 if released else None,
                "carp": (up - released["t"]) * 1000 if released else None,
                "start": (loaded["started"] - up) * 1000}

    def failover_warm(self):
        """
        One failover of a warm pair after a saved change: the change reaches the BACKUP's inbox
        and its runtime (asked through its admin interface), then the MASTER steps down; ms from
        the new MASTER's up-script to its traffic port accepting on the VIP (``vip``), from the
        client's side. Counted wrong when, after it, the new MASTER's runtime lacks the change or
        its ProxySQL was restarted.
        """
        old, new = self.master()
        _, _, saved = self.change_reaches(old, new)
        user = old.added_user(saved)  # the user this change added (not always the last row)
        self.lab.wait_until(lambda: runs_user(new, user) and not journal(new), WAIT,
                            f"{new.minion_id}'s runtime to hold {user}", interval=0.1)
        pid = new.node.pidfile.read_text(encoding="utf-8")
        asked = self.step_down(old)
        with self.client(old) as served:
            event = self.lab.wait_until(lambda: first(new.events("proxysql_ha/promoted"), asked),
                                        WAIT, f"{new.minion_id} to take over")
            vip = served(new, asked)
        restarted = new.node.pidfile.read_text(encoding="utf-8") != pid
        self.wrong["warm"] += restarted or not runs_user(new, user)
        up = stepped(new, asked, "up")
        carp = first(new.events("proxysql_ha/carp/MASTER"), up)
        return {"host": new.minion_id, "total": None, "vip": vip, "restarted": restarted,
                "hook": (carp["data"]["timestamp"] - up) * 1000 if carp else None,
                "promote": event["data"].get("ms"), "how": (event["data"].get("apply") or {}).get("how")}

    @contextlib.contextmanager
    def client(self, old):
        """
        A client of the VIP in the lab's net namespace (neither host): once ``old`` has dropped
        the VIP (its down-script), ``bench/vip_probe.py`` tries ProxySQL's traffic port on the
        VIP until it accepts. Yields ``served(new, asked)``: ms from ``new``'s up-script after
        ``asked`` to the first accepted connection. RuntimeError when the probe saw nothing, or
        began after the up-script (it would have measured less than the failover).
        """
        self.lab.wait_until(lambda: old.role() == "BACKUP", WAIT,
                            f"{old.minion_id}'s down-script to drop the VIP", interval=0.01)
        probe = subprocess.Popen(  # pylint: disable=consider-using-with
            netns.exec_argv(self.lab.net_ns, [sys.executable, PROBE, self.lab.vip,
                                              self.traffic_port, WAIT]),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def served(new, asked):
            out, err = probe.communicate(timeout=WAIT + 10)
            seen = json.loads(out or "{}")
            up = stepped(new, asked, "up")
            if not seen.get("served") or up is None:
                raise RuntimeError(f"no connection to {self.lab.vip}:{self.traffic_port} accepted "
                                   f"within {WAIT} s of {old.minion_id}'s step-down ({seen}, {err})")
            if seen["started"] >= up:
                raise RuntimeError("the VIP's client began after the up-script: nothing measured")
            if new.role() != "MASTER":
                raise RuntimeError(f"{new.minion_id} does not hold the VIP after the failover")
            return (seen["served"] - up) * 1000

        try:
            yield served
        finally:
            if probe.poll() is None:
                probe.kill()
                probe.communicate()

    def salt_imports(self):
        """ms a fresh Python takes to import what the hook's send pulls in (in host A)."""
        code = (f"import time; t = time.perf_counter(); import {SALT_IMPORTS}; "
                "print((time.perf_counter() - t) * 1000)")
        return float(run_in(self.hosts[0].namespace, [sys.executable, "-c", code]))

    def failover_classic(self):
        """One failover of the classic recipe after a saved change shipped its way (ms)."""
        old, new = self.master()
        saved = old.save_change()
        self.classic_ship(old, new)
        asked = self.step_down(old)

        def started():
            loaded = new.loaded()
            return loaded and loaded["started"] > asked and loaded

        with self.client(old) as served:
            loaded = self.lab.wait_until(started, WAIT, f"{new.name}'s classic up-script to start it")
            vip = served(new, asked)
        self.lab.wait_until(lambda: not old.proxysql_running(), WAIT,
                            f"{old.name}'s classic down-script to stop ProxySQL")
        self.wrong["classic"] += loaded["config"]["mysql_users"] != len(saved["mysql_users"])
        return {"total": (loaded["started"] - stepped(new, asked, "up")) * 1000, "vip": vip}

    # ---- the classic recipe ---------------------------------------------------------------

    def go_classic(self):
        """Stop the salt-minions, swap ucarp's scripts for the classic ones, and let each host
        scp into its peer's classic inbox (an unrestricted key, as the classic recipe has it)."""
        for host in self.hosts:
            host.stop_minion(seconds=1)
            for sub in ("inbox", "outgoing"):
                (host.root / "classic" / sub).mkdir(parents=True)
            key = self.classic_keys[host.name] = host.root / "classic" / "id_ed25519"
            public = sshd.generate_key(key, f"classic@{host.minion_id}")
            with host.peer.sshd.authorized_keys.open("a", encoding="utf-8") as handle:
                handle.write(public + "\n")
        for host in self.hosts:
            start = [host.root / "classic" / "inbox", host.node.datadir, "root:root",
                     *host.node.standin_argv("start")]
            swap_script(host, "up", start)
            swap_script(host, "down", host.node.standin_argv("stop"))

    def classic_ship(self, source, target):
        """``backup.sh`` in ``source``'s namespace into ``target``'s classic inbox; the copy."""
        inbox = target.root / "classic" / "inbox"
        run_in(source.namespace, [
            CLASSIC / "backup.sh", source.node.live_db, source.root / "classic" / "outgoing",
            self.classic_keys[source.name], source.known_hosts, 22, "root", target.address, inbox])
        return max(inbox.glob("*.db"), key=lambda p: p.stat().st_mtime)


def swap_script(host, direction, args):
    """Replace ``host``'s ucarp ``direction`` script by a wrapper of the classic one."""
    script = host.root / "ucarp" / direction
    tmp = script.with_suffix(".classic")
    tmp.write_text(CLASSIC_WRAPPER.format(
        direction=direction, log=shlex.quote(str(host.transitions_log)),
        script=shlex.quote(str(CLASSIC / f"ucarp-{direction}.sh")),
        args=shlex.join(str(a) for a in args)), encoding="utf-8")
    tmp.chmod(0o755)
    tmp.replace(script)


def tagged(events, prefix):
    return [e for e in events if e["tag"].startswith(prefix)]


def reactor_restore(master_events, minion, since):
    """The return (a master's bus event) of a reactor's promote that restored on ``minion``."""
    return first(tagged(master_events, "salt/job/"), since, lambda d: d.get("fun") == PROMOTE
                 and d.get("id") == minion and restored(d.get("return") or {}))


def split_plan(host, begin, report):
    """
    What promote's report leaves beside its restore and its start: ``plan`` (config, lock,
    role re-read, plan: promote's ``plan_ms``, before the restore), ``schedule`` (after the
    start) and ``after`` (the rest, after the start: the runtime verified against the
    installed copy, the role and the metrics recorded). The schedule step lists the
    minion's schedule (a ``manage_schedule`` ``list`` event on its bus; a takeover's plan no
    longer does, a plan in office does first): the last such event within promote's run
    marks the schedule step's start. A report without ``plan_ms`` (older) counts all of
    the rest as the plan.
    """
    end = begin + report["ms"] / 1000
    rest = report["ms"] - ((report.get("restore") or {}).get("ms") or 0) - (report.get("start_ms") or 0)
    lists = [e["t"] for e in host.events("manage_schedule")
             if begin <= e["t"] <= end and e["data"].get("func") == "list"]
    schedule = (end - lists[-1]) * 1000 if lists else None
    rest -= schedule or 0
    plan = report.get("plan_ms")
    if plan is None:
        return {"plan": rest, "schedule": schedule, "after": None}
    return {"plan": plan, "schedule": schedule, "after": max(0.0, rest - plan)}


def timeline(host, asked, promoted, loaded, master_events):
    """
    Where one failover of proxysql-ha spent its time (ms), from the recorded events: the
    hook's payload carries the time it was built, the bus events (the minion's and the
    master's) their arrival, promote's report its duration (its start is its event's arrival
    minus that), its restore's and its start's. ``by``: which path restored, the master's
    reactor (a ``proxysql_ha.promote`` job whose return says it restored) or the minion's
    reconcile job.
    """
    up = stepped(host, asked, "up")
    carp = first(host.events("proxysql_ha/carp/MASTER"), up)
    hook = carp["data"]["timestamp"] if carp else None
    report = promoted["data"]
    begin = promoted["t"] - report["ms"] / 1000
    running = loaded["started"]
    restore = report.get("restore") or {}
    since = hook or up
    sent = first(tagged(master_events, "proxysql_ha/carp/MASTER"), since,
                 lambda d: d.get("id") == host.minion_id)
    published = first(tagged(master_events, "salt/job/"), since,
                      lambda d: d.get("fun") == PROMOTE and host.minion_id in (d.get("minions") or []))
    won = reactor_restore(master_events, host.minion_id, since)
    ran = first(host.events("manage_schedule"), up, asked_for(RECONCILE_JOB))
    row = {
        "host": host.minion_id,
        "up_at": up,
        "by": "reactor" if won else "minion",
        "early": False,
        "total": (running - up) * 1000,
        "hook": (hook - up) * 1000 if hook else None,
        "promote": (running - begin) * 1000,
        **split_plan(host, begin, report),
        "install": restore.get("ms"),
        "start_ms": report.get("start_ms"),
        "published": (published["t"] - up) * 1000 if published else None,
        "began": (begin - up) * 1000,
        "relay": None, "reactor": None, "dispatch": None,
    }
    if won and sent and published and hook:
        row.update(relay=(sent["t"] - hook) * 1000, reactor=(published["t"] - sent["t"]) * 1000,
                   dispatch=(begin - published["t"]) * 1000)
    elif not won and ran and hook:
        dispatch = (begin - ran["t"]) * 1000
        row.update(relay=(ran["t"] - hook) * 1000, early=dispatch < 0,  # its own schedule came first
                   dispatch=None if dispatch < 0 else dispatch)
    return row


# ---- what the numbers say -----------------------------------------------------------------------

PHASES = (
    ("hook", "ucarp's up-script → the hook has checked its arguments, added the VIP and built "
             "the event"),
    ("relay", "→ relayed by the engine (hook → spool and FIFO → engine): the `run_job` request "
              "on the minion's bus (minion's path), or the event on the master's bus (reactor's "
              "path)"),
    ("reactor", "→ the reactor has rendered its SLS and the master published the promote job "
                "(reactor's path only)"),
    ("dispatch", "→ promote begins: the minion forks the job (the reconcile job, or the "
                 "reactor's promote) and loads the module"),
    ("promote", "→ ProxySQL running: promote, until the stand-in has loaded the restored copy"),
    ("plan", "promote's own report: its settings, the lock, role re-read, plan (ProxySQL's "
             "state from its pid file; choice of the newest backup, its verdict cached from "
             "arrival)"),
    ("install", "promote's own report: restore (install the copy the plan verified; no stop, "
                "ProxySQL is known stopped)"),
    ("start_ms", "promote's own report: start ProxySQL and wait until it serves"),
    ("after", "promote's own report: after the start, the runtime verified against the "
              "installed copy (the admin interface), the role and metrics recorded"),
    ("schedule", "promote's own report: after the start, the schedule jobs switched for "
                 "MASTER (`schedule.list`, enable and disable)"),
    ("total", "total: up-script → ProxySQL running"),
)
SERIES = ("race", "reactor", "down")
SERIES_NAMES = {"race": "race (as set up)", "reactor": "reactor alone", "down": "master down"}
SHORT = {"hook": "the hook", "relay": "the engine's relay", "reactor": "the reactor",
         "dispatch": "the job's start", "promote": "promote until ProxySQL runs"}


def early_note(timelines):
    """A sentence on the failovers whose promote began before the engine's request arrived."""
    early = {row: sum(t["early"] for t in timelines[row]) for row in SERIES}
    if not any(early.values()):
        return ""
    return (" In " + ", ".join(f"{early[row]} ({SERIES_NAMES[row]})" for row in SERIES)
            + " failovers the reconcile job's own schedule (every 10 s) began the promote before "
            "the engine's request reached the minion: their job-start step is left out below.")


def verdict(value, target):
    return f"{stats.fmt(value, 'ms')} ({'met' if value is not None and value <= target else 'MISSED'})"


def lab_settings(lab):
    """What the lab runs with, read from the files it wrote, beside the extension's defaults."""
    host = lab.host("a")
    pillar = host.pillar()
    engine = yaml.safe_load(host.minion_config.read_text(encoding="utf-8"))["engines"][0]["proxysql_ha"]
    defaults = proxysql_ha_config.defaults("Debian")
    return {
        "settle": (pillar["settle"], defaults["settle"]),
        "advbase": ADVBASE, "advskew": dict(ADVSKEW),
        "engine_interval": engine.get("interval", pillar.get("schedule", {}).get(
            "watch_interval", defaults["schedule"]["watch_interval"])),
        "ship_interval": defaults["schedule"]["ship_interval"],
        "reconcile_interval": defaults["schedule"]["reconcile_interval"],
        "connect_timeout": pillar["peer"]["connect_timeout"],
        "standby": pillar.get("standby", defaults["standby"]),
        "admin_enabled": pillar.get("admin", {}).get("enabled", defaults["admin"]["enabled"]),
        "layer_check": (pillar.get("admin", {}).get("layer_check_interval",
                                                    defaults["admin"]["layer_check_interval"]),
                        defaults["admin"]["layer_check_interval"]),
        "service_timeout": pillar["service"]["timeout"],
        "health_grace": (pillar["health"]["grace"], defaults["health"]["grace"]),
        "load_delay": float(os.environ.get(proxysql_standin.ENV_LOAD_DELAY,
                                           proxysql_standin.DEFAULT_LOAD_DELAY)),
    }


def settings_note(settings):
    lab_settle, default_settle = settings["settle"]
    return (
        f"The lab's settings: settle window {lab_settle:g} s (the default is {default_settle:g} s; "
        "the one-machine rows above use the default), ucarp advbase "
        f"{settings['advbase']} s with advskew {settings['advskew']['a']} (A, the preferred "
        f"MASTER) and {settings['advskew']['b']} (B), the engine woken by an inotify watch of "
        f"the datadir (where there is none, its `stat()` every {settings['engine_interval']:g} s), "
        "the ship and reconcile jobs every "
        f"{settings['ship_interval']} s and {settings['reconcile_interval']} s (the defaults), "
        f"peer connect timeout {settings['connect_timeout']} s, service timeout "
        f"{settings['service_timeout']} s; SSH multiplexing as shipped (ControlPersist 60 s); "
        f"standby {settings['standby']} (the warm row's lab: warm); the admin interface "
        f"{'in use' if settings['admin_enabled'] else 'not in use'} (`admin:enabled`), its layer "
        f"check on the MASTER every {settings['layer_check'][0]:g} s ("
        + ("the default" if settings["layer_check"][0] == settings["layer_check"][1]
           else f"the default is {settings['layer_check'][1]:g} s") + "). "
        "ProxySQL is the test suite's stand-in (`standin/proxysql_standin.py`), not "
        f"ProxySQL: its start returns at the pid file and it loads the database "
        f"{settings['load_delay']:g} s later (its --load-delay), as ProxySQL's start returns "
        "before it loads; every clock here stops at the load. The lab's daemons cache Python "
        "bytecode as a production minion does for its synced modules "
        "(`lab.netns.daemon_env`), so a forked job does not compile the extension again.")


def notes(failover, rpo, profile):
    """The lines under the lab's tables: method, targets, where the time goes and why."""
    timelines = profile["timelines"]
    race, reactor, down, classic = (failover[ROWS[row]] for row in (*SERIES, "classic"))
    n = race["n"]
    p50s = {row: {key: p50_of(timelines[row], key) for key, _ in PHASES} for row in SERIES}
    slowest = {row: max(timelines[row], key=lambda t: t["total"]) for row in SERIES}
    by = {row: sum(t["by"] == "reactor" for t in timelines[row]) for row in SERIES}
    wrong = sum(profile["wrong"].values())
    out = [
        f"Each failover first saves a change on the MASTER and waits until the BACKUP holds it; "
        f"then the MASTER's ucarp steps down (SIGUSR2) and the peer takes over, A→B, B→A, ... "
        f"({n} failovers per row). The clock starts when ucarp runs the up-script on the new "
        "MASTER (the wrapper's first line) and stops when the stand-in has loaded the restored "
        "database (its own timestamp), so ucarp's detection, the same for every recipe, is left "
        f"out. With {n} failovers p95 is the slowest one.",
        "",
        ("Every failover ran the configuration saved just before it (the stand-in's row counts)."
         if not wrong else
         f"**{wrong} failover(s) did not run the configuration saved just before them** "
         f"({profile['wrong']}): PROXYSQL_HA_LAB_KEEP=1 keeps the lab's logs."),
        "",
        "The three proxysql-ha rows run in this order, each promote counted by the path that did "
        "the restore (the master's recorded `proxysql_ha.promote` job returns, or else the "
        "minion's reconcile job):",
        "",
        f"- **Race (as set up)**: the engine asks the minion for its reconcile job and sends the "
        f"event on to the master, whose reactor runs `proxysql_ha.promote`; both take the lock, "
        f"the second finds the node in line. The reactor's promote did the restore in "
        f"{by['race']} of {n}. Its job was published "
        f"{stats.fmt(p50_of(timelines['race'], 'published'), 'ms')} after the up-script (p50) "
        f"and then still had to reach the minion, be forked and load the module "
        f"({stats.fmt(p50_of(timelines['reactor'], 'dispatch'), 'ms')} p50 in the reactor-alone "
        f"row) before it asked for the lock; the reconcile job's promote began "
        f"{stats.fmt(p50_of(timelines['race'], 'began'), 'ms')} after the up-script. The "
        "minion's path is one bus hop and a fork; the reactor's adds the trip to the master, "
        "the render and the publication back, so with both asked the minion's wins, and the "
        "loser's job still costs a fork and a module load on the same cores.",
        f"- **Reactor alone**: the minion's path held back on both hosts (the reconcile job set "
        f"to Salt's `dry_run`, so the engine's `run_job` request and its 10 s schedule run "
        f"nothing): the reactor's promote did the restore in {by['reactor']} of {n}. This is "
        "the path a node takes when its own job cannot run.",
        f"- **Master down**: the salt-master stopped (its reactor gone) before these failovers, "
        f"the reconcile job as set up: the minion's path alone (the reactor restored in "
        f"{by['down']} of {n}, as it must). With the master up that path wins the race anyway, "
        "so this row differs from the race by what the master's absence costs the minion.",
        early_note(timelines),
        "",
        settings_note(profile["settings"]),
        "",
        "Classic rows: the salt-minions are stopped and ucarp's scripts swapped for "
        "`bench/classic/ucarp-up.sh` (add the VIP, then `restore.sh`: newest file of the inbox by "
        "mtime, cp, chown, start; no validation) and `ucarp-down.sh` (drop the VIP, stop "
        "ProxySQL); backups are shipped by `bench/classic/backup.sh` (sqlite3 `.backup` + scp, "
        "a new SSH connection each time) from the MASTER's namespace over the lab's sshd.",
        "",
        f"Classic RPO is modelled, not waited for: a change waits for the next cron run, "
        f"uniformly 0-{CRON_PERIOD} s (p50 {CRON_PERIOD // 2} s, p95 {CRON_PERIOD * 0.95:.0f} s), "
        "plus the transfer measured here (backup.sh run right after the save). Up to "
        f"{CRON_PERIOD} s plus the transfer. Ours is measured from the save, the settle window "
        f"({profile['settings']['settle'][0]:g} s here) included.",
        "",
        f"Targets: failover p95, master up {verdict(race['p95_ms'], TARGETS_MS['up'])} as set up, "
        f"{verdict(reactor['p95_ms'], TARGETS_MS['up'])} by the reactor alone, target ≤ 1 s; "
        f"master down {verdict(down['p95_ms'], TARGETS_MS['down'])}, target ≤ 3 s; RPO p95 "
        f"{verdict(rpo[ROWS['rpo']]['p95_ms'], TARGETS_MS['rpo'])}, target ≤ 3 s. Against the "
        f"classic up-script (p50 {stats.fmt(classic['p50_ms'], 'ms')}): "
        + ", ".join(f"{stats.fmt(stats.ratio(failover[ROWS[row]]['p50_ms'], classic['p50_ms']))}× "
                    f"({SERIES_NAMES[row]})" for row in SERIES) + ".",
        "",
        warm_note(failover, profile),
        "",
        health_note(failover, profile),
        "",
        "### Where the failover time goes (proxysql-ha)",
        "",
        "Each step's p50 over the row's failovers, and the slowest failover's steps. The steps "
        "marked → follow each other and add up to the total (p50s of steps need not add up to "
        "the p50 of the total); the rows of promote's own report split its work as promote "
        "timed it, to its return, which comes after ProxySQL runs. A step a path does not take "
        "shows –.",
        "",
        stats.table(["step"] + [f"{SERIES_NAMES[row]}: {what}" for row in SERIES
                                for what in ("p50", "slowest")],
                    [[label] + [stats.fmt(value, "ms") for row in SERIES for value in (
                        p50s[row][key], slowest[row][key])]
                     for key, label in PHASES]),
        "",
    ]
    return out + explain(p50s, slowest, classic, rpo, profile)


def health_note(failover, profile):
    """How the health row was measured, and where its time goes (p50 of each step)."""
    if ROWS["health"] not in failover:
        return "Health row: not measured in this run."
    row, timelines = failover[ROWS["health"]], profile["timelines"]["health"]
    grace = profile["settings"].get("health_grace") or (None, None)
    step = {key: stats.fmt(p50_of(timelines, key), "ms") for key in ("released", "carp", "start")}
    return (
        f"Health row: {row['n']} times ProxySQL was stopped on the MASTER with its start broken "
        "(the lab's start gate makes the stand-in's start exit 1), after a change saved there had "
        "reached the BACKUP; the clock starts at the death, with the Salt master up. p50 of each "
        f"step: the MASTER gave up the VIP {step['released']} after the death (its engine saw "
        "ProxySQL gone at its next look and asked for reconcile, whose start of ProxySQL failed: "
        "a start gets at most the grace time to serve, `health:grace`, "
        f"{grace[0]:g} s in the lab, the default {grace[1]:g} s, and one that fails ends it at "
        "once; then SIGUSR2 and SIGSTOP to its ucarp), the peer's up-script "
        f"{step['carp']} later (ucarp's detection of a silent MASTER, 3 × advbase), its ProxySQL "
        f"running on the change {step['start']} after that (the cold path of the rows above). "
        f"Serving on the VIP: p95 {stats.fmt(row['vip_p95_ms'], 'ms')} from the death. "
        f"Each time the broken host's start was then fixed and it took the VIP back as BACKUP "
        "(its reconcile probe after `health:hold_down`), so the next death was on the other host."
        if grace[0] is not None else
        f"Health row: {row['n']} deaths of ProxySQL on the MASTER, p95 "
        f"{stats.fmt(row['p95_ms'], 'ms')} to the peer's ProxySQL running.")


def warm_note(failover, profile):
    """How the warm row was measured, its checks and its verdict."""
    if ROWS["warm"] not in failover:
        return f"Warm standby row: skipped: {profile['warm_skipped']}."
    warm, classic = failover[ROWS["warm"]], failover[ROWS["classic"]]
    timelines = profile["timelines"]["warm"]
    restarted = sum(bool(t["restarted"]) for t in timelines)
    how = sorted({str(t["how"]) for t in timelines})
    hook = p50_of(timelines, "hook")
    after_load = {row: stats.percentile([t["vip"] - t["total"] for t in profile["timelines"][row]
                                         if t.get("vip") is not None and t.get("total") is not None], 50)
                  for row in (*SERIES, "classic")}
    return (
        f"Warm standby row: a second lab, its pair with `standby: warm` and otherwise the same "
        f"settings, {warm['n']} failovers. Each first saves a change on the MASTER (a new MySQL "
        "user), waits until the BACKUP's inbox holds the copy and its ProxySQL runs that user "
        "(`runtime_mysql_users`, asked through its admin interface with the mariadb client), then "
        "steps the MASTER down. Nothing is restored or started: the up-script adds the VIP and "
        f"promote checks that ProxySQL serves (its report's apply: {', '.join(how)}). The clock "
        "stops when the traffic port first accepts a TCP connection on the VIP, as a client sees "
        "it: `bench/vip_probe.py` in the lab's net namespace (neither host; started once the old "
        "MASTER's down-script has dropped the VIP) starts a connect every 5 ms, and the cold and "
        "classic rows' \"serving on the VIP\" columns come from the same client, so all rows "
        "share that definition (their other columns stop at the stand-in's load instead). After "
        "each warm failover the new MASTER's runtime was asked again; a failover counts as "
        "wrong above when it lacked the change or ProxySQL was restarted "
        f"(restarted: {restarted} of {warm['n']}). Where the warm time goes: the hook had added "
        f"the VIP and built its event {stats.fmt(hook, 'ms')} after the up-script (p50; a Python "
        "process started by ucarp), the rest is the time until the client's connection to the VIP "
        "was accepted. On the cold rows the VIP accepted, p50, "
        + ", ".join(f"{stats.fmt(after_load[row], 'ms')} ({SERIES_NAMES[row]})" for row in SERIES)
        + f" and {stats.fmt(after_load['classic'], 'ms')} (classic) after the stand-in's load: "
        "between the two the stand-in starts its admin interface, then its traffic port, as "
        "ProxySQL starts its admin before its listeners. "
        "Target: warm p95 "
        f"{verdict(warm['vip_p95_ms'], TARGETS_MS['warm'])} on the VIP, target ≤ 100 ms; "
        f"the classic recipe's p95 on the VIP {stats.fmt(classic['vip_p95_ms'], 'ms')}, "
        f"{stats.fmt(stats.ratio(warm['vip_p95_ms'], classic['vip_p95_ms']))}× that.")


def slower(p50s, slowest, row):
    """Where the slowest failover of ``row`` lost the most time against the p50 of each step."""
    extra = {key: (slowest[row][key] or 0) - (p50s[row][key] or 0) for key in SHORT}
    worst = max(extra, key=extra.get)
    return (f"{stats.fmt(slowest[row]['total'], 'ms')}, {stats.fmt(extra[worst], 'ms')} more "
            f"than the p50 in {SHORT[worst]}")


def own_share(p50s):
    """The p50 ms of the extension's own steps before ProxySQL's start (hook, relay, reactor,
    the job's start, promote's plan and install); None when a step was not measured."""
    parts = [p50s.get(key) for key in ("hook", "relay", "dispatch", "plan", "install")]
    if any(part is None for part in parts):
        return None
    return sum(parts) + (p50s.get("reactor") or 0)


def explain(p50s, slowest, classic, rpo, profile):
    """What remains and why, with this run's numbers."""
    race, reactor, down = (p50s[row] for row in SERIES)
    return [
        "What remains, and why:",
        "",
        f"- **The relay ({stats.fmt(race['relay'], 'ms')} to the minion's bus, "
        f"{stats.fmt(reactor['relay'], 'ms')} to the master's).** The hook, standard library "
        "only, drops the transition into the engine's spool and pokes its FIFO; the engine, "
        "running inside the minion with Salt loaded, wakes and puts `run_job` and the events on "
        "the buses. The hook used to import Salt to send them itself (it still does when no "
        f"spool is configured): a fresh `import {SALT_IMPORTS}` takes "
        f"{stats.fmt(profile['imports'], 'ms')} here (median, in the lab).",
        f"- **The reactor ({stats.fmt(reactor['reactor'], 'ms')}).** The master renders "
        "`reactor/proxysql_ha_carp.sls` for the event and publishes `proxysql_ha.promote` to "
        f"that minion; the minion then forks the job ({stats.fmt(reactor['dispatch'], 'ms')} to "
        "promote's start, with the module's load).",
        f"- **Starting the reconcile job ({stats.fmt(race['dispatch'], 'ms')} as set up, "
        f"{stats.fmt(down['dispatch'], 'ms')} with the master down).** The minion forks a job "
        "process for `run_job` and loads the module; `reconcile` calls the same transition as "
        "`promote`.",
        f"- **Inside promote ({stats.fmt(race['promote'], 'ms')} to ProxySQL running).** The "
        f"lock, the role re-read and the plan ({stats.fmt(race['plan'], 'ms')}: ProxySQL's "
        "state read from its pid file, no status command forked while the pid file is one "
        "ProxySQL was seen writing; the choice of the newest backup, its verdict cached when it "
        "arrived; the minion's schedule is not listed before a takeover), the install "
        f"({stats.fmt(race['install'], 'ms')}: the bytes read once, their sha256 checked "
        "against the verdict, written, the uuid put back, and a check of the installed copy "
        "that re-runs `quick_check` only on the table the uuid went into) and ProxySQL's start "
        f"with the wait until it serves ({stats.fmt(race['start_ms'], 'ms')}: the stand-in's "
        "start command, a Python process, returns at its pid file, then its 0.2 s load delay; "
        "the wait looks every 20 ms), which the classic up-script pays too (its whole run: "
        f"{stats.fmt(classic['p50_ms'], 'ms')} p50, with no check of any kind). The "
        f"verification of the runtime against the installed copy and the records "
        f"({stats.fmt(race['after'], 'ms')}) and the schedule step "
        f"({stats.fmt(race['schedule'], 'ms')}) come after ProxySQL runs and are not in the "
        "total.",
        f"- **What the extension adds to ProxySQL's start** (p50, as set up): "
        f"{stats.fmt(own_share(race), 'ms')} of the {stats.fmt(race['total'], 'ms')} (the hook, "
        "the relay, the job's start and promote before the start), against the start itself "
        f"{stats.fmt(race['start_ms'], 'ms')}. The cold target (p95 ≤ 300 ms) is below what "
        "the stand-in's start alone takes, and the classic recipe, which does nothing but that "
        "start, pays it too; the warm standby, which does not start ProxySQL, is the row that "
        "meets a sub-100 ms failover.",
        "- **The slowest failovers** ("
        + "; ".join(f"{SERIES_NAMES[row]} {slower(p50s, slowest, row)}" for row in SERIES)
        + "): the same steps as the others, each of them CPU work (imports, forks, short-lived "
        "Python processes) on cores the whole lab shares.",
        f"- **RPO ({stats.fmt(rpo[ROWS['rpo']]['p50_ms'], 'ms')} p50).** The engine asks for "
        f"the ship job {stats.fmt(p50_of(profile['rpo'], 'noticed'), 'ms')} after the save "
        "(an inotify watch of the datadir wakes it once the save's writes pause for 20 ms); "
        "the rest is the job's start, the settle "
        f"window ({profile['settings']['settle'][0]:g} s in the lab: no write for that long), the "
        "backup and its checks, the transfer over the multiplexed connection and the sha256 "
        "check on arrival.",
        "",
    ]


# ---- idle cost per node, above a bare minion ---------------------------------------------------

IDLE_SECONDS = {True: 15, False: 120}  # quick or not; 120 s: two runs of each 60 s schedule job
IDLE_SETTLE = 15  # seconds for the jobs a minion's start runs (run_on_start) to finish first
IDLE_TARGET_PCT = 0.2
CGROUP_V2, CGROUP_V1 = Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/cpuacct")


def idle_cost(lab, seconds):
    """
    CPU of each host's salt-minion (all its processes, the forked jobs included: a cgroup
    each) over ``seconds`` of nothing changing, and of a bare salt-minion of the same master
    (no engine, no schedule) alongside: ``{"seconds", "bare_pct", "nodes": {host: pct}}``,
    in % of one core, or ``{"skipped": why}``.
    """
    root = _cgroup_root()
    if root is None:
        return {"skipped": "no cgroup v2 hierarchy nor v1 cpuacct to account a minion's CPU"}
    bare = _bare_minion(lab)
    groups, families = {}, {}
    try:
        time.sleep(IDLE_SETTLE)
        minions = {name: lab.host(name).minion.pid for name in ("a", "b")}
        minions["bare"] = bare.pid
        for name, pid in minions.items():
            families[name] = _family(pid)
            groups[name] = _cgroup(root, f"proxysql-ha-bench-{os.getpid()}-{name}", families[name])
        # Salt titles its processes (setproctitle): /proc/<pid>/cmdline names each
        titles = {name: [netns.cmdline(pid) for pid in pids] for name, pids in families.items()}
        before = {name: _usage_s(group) for name, group in groups.items()}
        lived = {name: [cpu.proc_cpu_seconds(pid) for pid in pids] for name, pids in families.items()}
        begin = time.monotonic()
        time.sleep(seconds)
        took = time.monotonic() - begin
        used = {name: _usage_s(group) - before[name] for name, group in groups.items()}
        # each process there at the start, by its title: the rest is the jobs forked meanwhile
        lived = {name: [(title, cpu.proc_cpu_seconds(pid) - was)
                        for pid, title, was in zip(families[name], titles[name], cpus)]
                 for name, cpus in lived.items()}
    finally:
        for group in groups.values():
            _release(group)
        bare.stop()
    pct = {name: value / took * 100 for name, value in used.items()}
    return {"seconds": round(took, 1), "bare_pct": round(pct["bare"], 3),
            "nodes": {name: round(pct[name], 3) for name in ("a", "b")},
            "forked_pct": {name: round(max(0.0, used[name] - sum(s for _, s in lived[name])) / took
                                       * 100, 3) for name in minions},
            "processes": {name: [[process_label(title), round(max(0.0, s) / took * 100, 3)]
                                 for title, s in rows] for name, rows in lived.items()},
            "target_pct": IDLE_TARGET_PCT}


def process_label(cmdline):
    """
    A process of a salt-minion's family named by its title (``/proc/<pid>/cmdline``):
    Salt appends each process's name to the title it inherits (``salt.utils.process.
    appendproctitle``), so the last word names it (``MinionProcessManager``,
    ``Engine(salt.loaded.ext.engines.proxysql_ha)``); a process never retitled
    (its arguments still NUL-separated) is the command it runs (``salt-minion``).
    """
    args = [arg for arg in cmdline.decode("utf-8", "replace").split("\0") if arg]
    if not args:
        return "(gone)"
    if len(args) > 1:  # never retitled: its program, or the script an interpreter runs
        program = [os.path.basename(arg) for arg in args if not arg.startswith("-")]
        named = program[1:] if program[0].startswith("python") and len(program) > 1 else program
        return named[0]
    return args[0].split()[-1]


def _cgroup_root():
    if (CGROUP_V2 / "cgroup.controllers").exists():
        return CGROUP_V2
    if (CGROUP_V2 / "unified" / "cgroup.procs").exists():
        return CGROUP_V2 / "unified"
    return CGROUP_V1 if (CGROUP_V1 / "cpuacct.usage").exists() else None


def _bare_minion(lab):
    """A salt-minion of the lab's master in A's namespace, without the extension."""
    host = lab.host("a")
    root = host.root / "bare-minion"
    config = root / "etc" / "minion"
    labsalt.write_yaml(config, {
        "id": f"{host.minion_id}-bare", "master": lab.master_address, "root_dir": str(root),
        "pki_dir": str(root / "pki"), "cachedir": str(root / "cache"), "sock_dir": str(root / "sock"),
        "pidfile": str(root / "minion.pid"), "log_file": str(root / "minion.log"),
        "log_level_logfile": "info", "enable_fqdns_grains": False, "acceptance_wait_time": 1,
        "random_reauth_delay": 0})
    process = netns.Process(host.namespace, labsalt.minion_argv(config.parent), root / "minion.out").start()
    lab.wait_until(lambda: labsalt.logged_since(root / "minion.log", 0, labsalt.MINION_READY)
                   or not process.running(), WAIT, "the bare salt-minion to connect")
    if not process.running():
        raise RuntimeError(f"the bare salt-minion did not start: see {root / 'minion.out'}")
    return process


def _family(pid):
    """``pid`` and every process below it (the minion's process manager, engine, jobs)."""
    children = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(proc.name))
    family, todo = [], [pid]
    while todo:
        current = todo.pop()
        family.append(current)
        todo.extend(children.get(current, []))
    return family


def _cgroup(root, name, pids):
    group = root / name
    group.mkdir()
    for pid in pids:
        with contextlib.suppress(OSError):  # ended meanwhile
            (group / "cgroup.procs").write_text(f"{pid}\n")
    return group


def _usage_s(group):
    """CPU seconds used by the cgroup's processes, the ended ones included."""
    if (group / "cpu.stat").exists():
        stat = dict(line.split() for line in (group / "cpu.stat").read_text().splitlines())
        return int(stat["usage_usec"]) / 1e6
    return int((group / "cpuacct.usage").read_text()) / 1e9


def _release(group):
    """Move what is left back to the parent cgroup and remove the group."""
    for pid in (group / "cgroup.procs").read_text().split():
        with contextlib.suppress(OSError):
            (group.parent / "cgroup.procs").write_text(f"{pid}\n")
    with contextlib.suppress(OSError):
        group.rmdir()
