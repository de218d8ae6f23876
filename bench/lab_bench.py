"""
Benchmarks 5 and 6, in the two-host lab (``lab/``): failover time and RPO of proxysql-ha and
of the classic recipe (``bench/classic/``), in one lab, in one run.

Failover: from ucarp running the up-script on the new MASTER (the time its wrapper notes
before it does anything else) to ProxySQL (the stand-in) running on the restored
configuration (the time the stand-in notes once it has loaded the database). Each failover
first saves a change on the MASTER and waits until the BACKUP holds it, so every failover
restores a configuration that host never ran; then the MASTER's ucarp steps down (SIGUSR2)
and the peer takes over: A to B, B to A, and so on. ucarp's own detection is not counted.
The rows run in this order: the Salt master up; the Salt master stopped; the classic recipe
(salt-minions stopped, ucarp's scripts swapped for the classic ones, backups shipped by the
classic cron script over the same sshd).

RPO: from a change saved on the MASTER to a complete copy that holds it in the BACKUP's inbox.

Where the time goes comes from what the lab records: ucarp's script runs, the events on each
minion's bus with their arrival times (the hook's, the engine's, promote's report with its
steps) and the stand-in's start time.
"""

import contextlib
import os
import random
import shlex
import sqlite3
import subprocess
import sys
import time
import traceback
from pathlib import Path

from bench import stats
from lab import Lab, LabTimeout, LabUnavailable, netns
from lab import salt as labsalt
from lab.hosts import generation, newest_after
from lab.timeline import first, restored, stepped
from tests.support import sshd

CLASSIC = Path(__file__).resolve().parent / "classic"
ROUNDS = {True: (2, 3), False: (10, 20)}  # quick or not: (failovers per row, changes)
WAIT = 30  # seconds one step may take before the lab run is called failed
STEP_DOWN_PAUSE = 3.5  # ucarp listens again 3 s after SIGUSR2: wait that long between step-downs
CRON_PERIOD = 60  # seconds: the classic recipe's cron job runs every minute
TARGETS_MS = {"up": 1000, "down": 3000, "rpo": 3000}
RECONCILE_JOB, SHIP_JOB = "proxysql_ha_reconcile", "proxysql_ha_ship"
SALT_IMPORTS = "salt.config, salt.utils.event, salt.transport.tcp"
ROWS = {
    "up": "proxysql-ha, Salt master up",
    "down": "proxysql-ha, Salt master down",
    "classic": "classic recipe (up-script: newest file, cp, chown, start)",
    "rpo": "proxysql-ha (engine, ship job, ssh)",
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
        with Lab(schema, narrate=False, keep_dir=bool(os.environ.get("PROXYSQL_HA_LAB_KEEP"))) as lab:
            try:  # first: measure() ends with the minions stopped
                idle = idle_cost(lab, IDLE_SECONDS[bool(quick)])
            except (LabTimeout, RuntimeError, OSError) as exc:
                idle = {"skipped": f"the idle measurement failed: {exc}"}
            results = Pair(lab).measure(failovers, changes)
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


# ---- small readers --------------------------------------------------------------------------


def summary(values):
    """``{n, p50_ms, p95_ms}`` of ``values`` (ms)."""
    return {"n": len(values), "p50_ms": stats.percentile(values, 50),
            "p95_ms": stats.percentile(values, 95)}


def p50_of(rows, key):
    return stats.percentile([row[key] for row in rows if row.get(key) is not None], 50)








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
        self.wrong = {"up": 0, "down": 0, "classic": 0}  # failovers that ran another configuration

    def master(self):
        """``(MASTER, BACKUP)`` as the VIP says now."""
        a, b = self.hosts
        return (a, b) if a.role() == "MASTER" else (b, a)

    def measure(self, failovers, changes):
        rpo = [self.rpo_ours() for _ in range(changes)]
        timelines = {"up": [self.failover_ours("up") for _ in range(failovers)]}
        self.lab.stop_master()
        timelines["down"] = [self.failover_ours("down") for _ in range(failovers)]
        imports = [self.salt_imports() for _ in range(max(2, failovers // 2))]
        self.go_classic()
        transfers = [self.rpo_classic() for _ in range(changes)]
        timelines["classic"] = [self.failover_classic() for _ in range(failovers)]
        failover = {ROWS[row]: summary([t["total"] for t in timelines[row]]) for row in timelines}
        modelled = summary(transfers)
        modelled.update(p50_ms=CRON_PERIOD * 500 + modelled["p50_ms"],
                        p95_ms=CRON_PERIOD * 950 + modelled["p95_ms"])
        rpo_rows = {ROWS["rpo"]: summary([r["total"] for r in rpo]), ROWS["cron"]: modelled,
                    ROWS["transfer"]: summary(transfers)}
        profile = {"timelines": timelines, "rpo": rpo, "imports": stats.median(imports),
                   "wrong": self.wrong, "reactor": self.reactor_wins(timelines["up"])}
        return {"failover": failover, "rpo": rpo_rows, "notes": notes(failover, rpo_rows, profile)}

    # ---- changes travelling from the MASTER to the BACKUP ---------------------------------

    def rpo_ours(self):
        """One change saved on the MASTER: ms until the BACKUP's inbox holds it, and until the
        engine asked for the ship job."""
        source, target = self.master()
        time.sleep(random.uniform(0.3, 0.8))  # land anywhere in the engine's 0.25 s tick
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

        event, loaded = self.lab.wait_until(promoted, WAIT, f"{new.minion_id} to restore and start")
        self.lab.wait_until(lambda: not old.proxysql_running(), WAIT,
                            f"{old.minion_id}'s demote to stop ProxySQL")
        self.wrong[row] += loaded["config"]["mysql_users"] != len(saved["mysql_users"])
        return timeline(new, asked, event, loaded)

    def reactor_wins(self, timelines):
        """How many of the master-up failovers were restored by the master's reactor."""
        jobs = self.lab.master_events("salt/job/")
        return sum(1 for t in timelines if first(
            jobs, t["up_at"], lambda d, who=t["host"]: d.get("fun") == "proxysql_ha.promote"
            and d.get("id") == who and restored(d.get("return") or {})))

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

        loaded = self.lab.wait_until(started, WAIT, f"{new.name}'s classic up-script to start it")
        self.lab.wait_until(lambda: not old.proxysql_running(), WAIT,
                            f"{old.name}'s classic down-script to stop ProxySQL")
        self.wrong["classic"] += loaded["config"]["mysql_users"] != len(saved["mysql_users"])
        return {"total": (loaded["started"] - stepped(new, asked, "up")) * 1000}

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


def timeline(host, asked, promoted, loaded):
    """
    Where one failover of proxysql-ha spent its time (ms), from the recorded events: the
    hook's payload carries the time it was built, the bus events their arrival, promote's
    report its duration (its start is its event's arrival minus that) and its restore steps.
    """
    up = stepped(host, asked, "up")
    carp = first(host.events("proxysql_ha/carp/MASTER"), up)
    ran = first(host.events("manage_schedule"), up, asked_for(RECONCILE_JOB))
    report = promoted["data"]
    begin = promoted["t"] - report["ms"] / 1000
    steps = report["restore"]["steps_ms"]
    running = loaded["started"]
    inside = sum(steps.get(k, 0) for k in ("choose", "stop", "install"))
    hook = carp["data"]["timestamp"] if carp else None
    dispatch = (begin - ran["t"]) * 1000 if ran else None
    early = dispatch is not None and dispatch < 0  # the reconcile job's own schedule came first
    return {
        "early": early,
        "host": host.minion_id,
        "up_at": up,
        "total": (running - up) * 1000,
        "hook": (hook - up) * 1000 if hook else None,
        "bus": (ran["t"] - hook) * 1000 if hook and ran else None,
        "dispatch": None if early else dispatch,
        "choose": steps.get("choose"),
        "stop": steps.get("stop"),
        "install": steps.get("install"),
        "start": (running - begin) * 1000 - inside,
    }


# ---- what the numbers say -----------------------------------------------------------------------

PHASES = (
    ("hook", "ucarp's up-script → the hook has checked its arguments and added the VIP"),
    ("bus", "→ the `run_job` request is on the minion's bus (hook → spool and FIFO → engine)"),
    ("dispatch", "→ promote starts (the minion forks the reconcile job, which plans, then promotes; "
                 "or the master's reactor)"),
    ("choose", "promote: choose and verify the newest backup"),
    ("stop", "promote: stop step (a status call: ProxySQL is not running)"),
    ("install", "promote: install the verified copy"),
    ("start", "promote: start ProxySQL until it has loaded the copy, schedule, report"),
    ("total", "total: up-script → ProxySQL running"),
)


SHORT = {"hook": "the hook's start", "bus": "the hand-off to the engine", "dispatch": "the job's start",
         "choose": "the choice of backup", "stop": "the stop step", "install": "the install",
         "start": "ProxySQL's start inside promote"}


def early_note(timelines):
    """A sentence on the failovers whose promote began before the hook's request arrived."""
    early = {row: sum(t["early"] for t in timelines[row]) for row in ("up", "down")}
    if not any(early.values()):
        return ""
    return (f" In {early['up']} (master up) and {early['down']} (master down) failovers the "
            "reconcile job's own schedule (every 10 s) began the promote before the hook's request "
            "reached the minion: their job-start step is left out of the table below.")


def verdict(value, target):
    return f"{stats.fmt(value, 'ms')} ({'met' if value is not None and value <= target else 'MISSED'})"


def notes(failover, rpo, profile):
    """The lines under the lab's tables: method, targets, where the time goes and why."""
    timelines = profile["timelines"]
    up, down, classic = (failover[ROWS[row]] for row in ("up", "down", "classic"))
    n = up["n"]
    p50s = {row: {key: p50_of(timelines[row], key) for key, _ in PHASES} for row in ("up", "down")}
    slowest = {row: max(timelines[row], key=lambda t: t["total"]) for row in ("up", "down")}
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
        "Salt master down: stopped before those failovers; the reactor is gone and the minion's "
        "reconcile job, asked for by the hook, promotes. Master up: the reactor and that job race "
        f"for the lock; the reactor's promote did the restore in {profile['reactor']} of {n}."
        + early_note(timelines),
        "",
        "Classic rows: the salt-minions are stopped and ucarp's scripts swapped for "
        "`bench/classic/ucarp-up.sh` (add the VIP, then `restore.sh`: newest file of the inbox by "
        "mtime, cp, chown, start; no validation) and `ucarp-down.sh` (drop the VIP, stop "
        "ProxySQL); backups are shipped by `bench/classic/backup.sh` (sqlite3 `.backup` + scp) "
        "from the MASTER's namespace over the lab's sshd.",
        "",
        f"Classic RPO is modelled, not waited for: a change waits for the next cron run, "
        f"uniformly 0-{CRON_PERIOD} s (p50 {CRON_PERIOD // 2} s, p95 {CRON_PERIOD * 0.95:.0f} s), "
        "plus the transfer measured here (backup.sh run right after the save). Up to "
        f"{CRON_PERIOD} s plus the transfer.",
        "",
        f"Targets: failover p95, master up {verdict(up['p95_ms'], TARGETS_MS['up'])}, target ≤ 1 s; "
        f"master down {verdict(down['p95_ms'], TARGETS_MS['down'])}, target ≤ 3 s; RPO p95 "
        f"{verdict(rpo[ROWS['rpo']]['p95_ms'], TARGETS_MS['rpo'])}, target ≤ 3 s. Against the "
        f"classic up-script (p50 {stats.fmt(classic['p50_ms'], 'ms')}): "
        f"{stats.fmt(stats.ratio(up['p50_ms'], classic['p50_ms']))}× (master up), "
        f"{stats.fmt(stats.ratio(down['p50_ms'], classic['p50_ms']))}× (master down).",
        "",
        "### Where the failover time goes (proxysql-ha)",
        "",
        "Each step's p50 over the row's failovers, and the slowest failover's steps.",
        "",
        stats.table(["step", "master up: p50", "slowest", "master down: p50", "slowest"],
                    [[label] + [stats.fmt(value, "ms") for value in (
                        p50s["up"][key], slowest["up"][key],
                        p50s["down"][key], slowest["down"][key])]
                     for key, label in PHASES]),
        "",
    ]
    return out + explain(p50s, slowest, classic, rpo, profile)


def slower(p50s, slowest, row):
    """Where the slowest failover of ``row`` lost the most time against the p50 of each step."""
    extra = {key: (slowest[row][key] or 0) - (p50s[row][key] or 0) for key in SHORT}
    worst = max(extra, key=extra.get)
    return (f"{stats.fmt(slowest[row]['total'], 'ms')}, {stats.fmt(extra[worst], 'ms')} more "
            f"than the p50 in {SHORT[worst]}")


def explain(p50s, slowest, classic, rpo, profile):
    """What remains and why, with this run's numbers."""
    up, down = p50s["up"], p50s["down"]
    runs = len(profile["timelines"]["up"])
    promote = sum(up[key] or 0 for key in ("choose", "stop", "install", "start"))
    return [
        "What remains, and why:",
        "",
        f"- **The hand-off ({stats.fmt(up['bus'], 'ms')}).** The hook, standard library only, "
        "drops the transition into the engine's spool and pokes its FIFO; the engine, running "
        "inside the minion with Salt loaded, wakes and puts `run_job` and the events on the "
        "bus. The hook used to import Salt to send them itself (it still does when no spool "
        f"is configured): a fresh `import {SALT_IMPORTS}` takes "
        f"{stats.fmt(profile['imports'], 'ms')} here (median, in the lab), which was the "
        "largest step of a failover before the engine relayed it.",
        f"- **Starting the job ({stats.fmt(up['dispatch'], 'ms')}).** The minion forks a job "
        "process for `run_job`; `reconcile` then plans (a ProxySQL status call, the backup "
        "choice, `schedule.list`) before it calls `promote`, which takes the lock and reads the "
        "role again.",
        f"- **Inside promote ({stats.fmt(promote, 'ms')} to ProxySQL running).** On the way "
        "ProxySQL's status is asked twice (reconcile's plan, restore's stop step), about "
        f"{stats.fmt(up['stop'], 'ms')} each with the stand-in (a "
        "Python process, through `cmd.run_all`); the copy is verified and installed in "
        f"{stats.fmt((up['choose'] or 0) + (up['install'] or 0), 'ms')}; the rest is the "
        "stand-in's own start, which the classic up-script pays too (its whole run: "
        f"{stats.fmt(classic['p50_ms'], 'ms')} p50, with no check of any kind).",
        f"- **Master down ({stats.fmt(down['total'], 'ms')} vs {stats.fmt(up['total'], 'ms')}, "
        "p50).** The same path: the reconcile job promotes (with the master up it won the "
        f"race in {runs - profile['reactor']} of {runs}). The hand-off "
        f"took {stats.fmt(down['bus'], 'ms')} and the job's start "
        f"{stats.fmt(down['dispatch'], 'ms')}: a fork and short Python work, CPU-bound, so "
        "these follow the machine's load at the time.",
        f"- **The slowest failovers** (master up {slower(p50s, slowest, 'up')}; master down "
        f"{slower(p50s, slowest, 'down')}): the same steps as the others, each of them CPU "
        "work (imports, forks, short-lived Python processes) on cores the whole lab shares.",
        f"- **RPO ({stats.fmt(rpo[ROWS['rpo']]['p50_ms'], 'ms')} p50).** The engine asks for "
        f"the ship job {stats.fmt(p50_of(profile['rpo'], 'noticed'), 'ms')} after the save "
        "(it `stat()`s the file every 0.25 s); the rest is the job's start, the settle window "
        "(0.2 s in the lab: no write for that long), the backup and its checks, one ssh "
        "connection and the sha256 check on arrival.",
        "",
        "What could go further: the status calls belong to the stand-in (a Python process per "
        "call); a real `service proxysql status` is cheaper. Running `promote` directly "
        "instead of `reconcile` would save the plan's status call, but `reconcile` is what "
        "lets one request serve a MASTER and a BACKUP alike.",
        "",
    ]


# ---- idle cost per node, above a bare minion ---------------------------------------------------

IDLE_SECONDS = {True: 30, False: 120}  # quick or not; 120 s: two runs of each 60 s schedule job
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
    groups = {}
    try:
        time.sleep(IDLE_SETTLE)
        minions = {name: lab.host(name).minion.pid for name in ("a", "b")}
        minions["bare"] = bare.pid
        for name, pid in minions.items():
            groups[name] = _cgroup(root, f"proxysql-ha-bench-{os.getpid()}-{name}", _family(pid))
        before = {name: _usage_s(group) for name, group in groups.items()}
        begin = time.monotonic()
        time.sleep(seconds)
        took = time.monotonic() - begin
        pct = {name: (_usage_s(group) - before[name]) / took * 100 for name, group in groups.items()}
    finally:
        for group in groups.values():
            _release(group)
        bare.stop()
    return {"seconds": round(took, 1), "bare_pct": round(pct["bare"], 3),
            "nodes": {name: round(pct[name], 3) for name in ("a", "b")},
            "target_pct": IDLE_TARGET_PCT}


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
