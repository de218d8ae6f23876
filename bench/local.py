"""
Benchmarks 1-4, on this machine: proxysql_ha's execution module loaded through
Salt's loader in this process, shipping over a real sshd on 127.0.0.1 into a
peer's inbox, against the classic recipe (``bench/classic/*.sh``) over the
same sshd, on the same databases.
"""

import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import salt.config
import salt.loader

from bench import cpu, stats
from standin import proxysql_db, sshd
from standin.node import Node, current_user_and_group
from standin.proxysql_standin import free_loopback_port

REPO = Path(__file__).resolve().parent.parent
CLASSIC = REPO / "bench" / "classic"
SIZES = {"small": (50, 20), "large": (100_000, 20_000)}  # mysql_users, mysql_query_rules


def cpu_seconds():
    """CPU time of this process and its finished children."""
    own = time.process_time()
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own + kids.ru_utime + kids.ru_stime


def measure(action):
    """``(wall ms, cpu ms, result)`` of one call."""
    cpu, wall = cpu_seconds(), time.perf_counter()
    result = action()
    return (time.perf_counter() - wall) * 1000, (cpu_seconds() - cpu) * 1000, result


class Bench:
    """Two nodes' directories, a peer sshd, and the module loaded for each node."""

    def __init__(self, root, schema, settle=0.5):
        self.root = Path(root)
        self.schema = schema
        self.settle = settle
        self.statements = proxysql_db.read_schema(schema)
        self.a = Node("node-a", self.root / "a", schema).create()
        self.b = Node("node-b", self.root / "b", schema).create()
        self.sshd = sshd.Sshd(self.root / "sshd")
        self.key = self.root / "ship_key"
        self.known_hosts = self.root / "known_hosts"
        self.b.inbox_dir.mkdir(parents=True, mode=0o700)
        self._trust()
        self.sshd.start()  # before the meter: the peer's side is not the sender's CPU
        self.mods = {}
        self.classic_mux = self.root / "classic-mux-%C"
        self.meter = cpu.Meter().__enter__()

    def measure(self, action):
        """``(wall ms, cpu ms)`` of one call, the CPU of every process it started included."""
        mux = self.mux_masters()
        before, wall = self.meter.seconds(mux), time.perf_counter()
        action()
        elapsed = (time.perf_counter() - wall) * 1000
        return elapsed, (self.meter.seconds(mux + self.mux_masters()) - before) * 1000

    def _sockets(self):
        return [p for p in list(self.a.state_dir.glob("ssh-*")) + list(self.root.glob("classic-mux-*"))
                if p.is_socket()]

    def mux_masters(self):
        """Pids of the SSH multiplex masters alive now (ours and the classic warm row's), for
        the meter's fallback only: a cgroup counts them without being told. A master's title
        is ``ssh: <socket> [mux]``, or the ssh command line that named its ControlPath."""
        if self.meter.group is not None:
            return []
        sockets = [str(p) for p in self._sockets()]
        sockets += [str(self.a.state_dir / "ssh-%C"), str(self.classic_mux)]
        pids = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    line = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
                except OSError:
                    continue
                if line.startswith("ssh") and any(sock in line for sock in sockets):
                    pids.append(int(proc.name))
        return pids

    def close_masters(self):
        """End every multiplex master (``ssh -O exit``): the next connection is a cold one."""
        for sock in self._sockets():
            subprocess.run(["ssh", "-F", "/dev/null", "-o", f"ControlPath={sock}", "-O", "exit",
                            "127.0.0.1"], capture_output=True, timeout=10, check=False)

    def _trust(self):
        public = sshd.generate_key(self.key, "bench")
        receive = f"{sys.executable} {REPO}/proxysql_ha/files/proxysql-ha-receive {self.b.inbox_dir}"
        self.sshd.authorize(public, receive)
        classic = self.root / "classic_key"
        self.classic_key = classic
        with self.sshd.authorized_keys.open("a", encoding="utf-8") as handle:
            handle.write(sshd.generate_key(classic, "classic") + "\n")
        self.known_hosts.write_text(self.sshd.known_hosts_line() + "\n", encoding="utf-8")
        self.classic_out = self.root / "classic_out"
        self.classic_inbox = self.root / "classic_inbox"
        self.classic_out.mkdir()
        self.classic_inbox.mkdir()

    def close(self):
        for node in (self.a, self.b):
            node.standin("stop")
        self.close_masters()
        self.meter.__exit__(None, None, None)
        self.sshd.stop()

    def connections(self):
        return self.sshd.log_text().count("Accepted publickey")

    def module(self, node, vip):
        """The execution module for ``node`` (MASTER when ``vip`` is 127.0.0.1)."""
        key = (node.name, vip)
        if key not in self.mods:
            self.mods[key] = _load(self.root / f"salt-{node.name}", node.pillar(
                vip=vip, peer_path=str(self.b.inbox_dir), settle=self.settle,
                peer={"transport": "ssh", "host": "127.0.0.1", "port": self.sshd.port,
                      "user": "root", "identity_file": str(self.key),
                      "known_hosts": str(self.known_hosts)}))
        return self.mods[key]

    def build(self, size):
        users, rules = SIZES[size]
        for node in (self.a, self.b):
            node.standin("stop")
            for directory in (node.datadir, node.backup_dir, node.inbox_dir, node.state_dir):
                if directory.exists():
                    for child in directory.iterdir():
                        if child.is_file():
                            child.unlink()
        proxysql_db.build_db(self.a.live_db, self.statements, users=users, rules=rules)
        proxysql_db.build_db(self.b.live_db, self.statements, users=1, rules=1)
        for directory in (self.classic_out, self.classic_inbox):
            shutil.rmtree(directory)
            directory.mkdir()

    def change(self, seq):
        """A saved change on A, as ProxySQL's SAVE MYSQL USERS TO DISK writes it."""
        rows = proxysql_db.dump_config(self.a.live_db)["mysql_users"]
        first = (rows[0][0], proxysql_db.mysql_native_hash(f"pw{seq}")) + tuple(rows[0][2:])
        proxysql_db.save_table(self.a.live_db, "mysql_users", [first] + rows[1:])

    def until_loaded(self, began, wall_ms):
        """ms from ``began`` (epoch) until B's stand-in had loaded its database (its own
        timestamp: its start returns before it loads, as ProxySQL's does), or ``wall_ms`` when
        the call returned later than that."""
        path = self.b.datadir / "standin-loaded.json"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                loaded = None
            if loaded and loaded["started"] >= began:
                return max(wall_ms, (loaded["started"] - began) * 1000)
            time.sleep(0.005)
        raise RuntimeError(f"B's stand-in did not load its database within 30 s ({path})")

    def classic_backup(self, warm=False):
        """The classic cron job once; ``warm``: its scp over a multiplexed connection, with the
        ControlMaster options ours uses."""
        user, _ = current_user_and_group()
        argv = [str(CLASSIC / "backup.sh"), str(self.a.live_db), str(self.classic_out),
                str(self.classic_key), str(self.known_hosts), str(self.sshd.port), user,
                "127.0.0.1", str(self.classic_inbox)] + ([str(self.classic_mux)] if warm else [])
        subprocess.run(argv, check=True, capture_output=True, timeout=120)

    def classic_restore(self):
        user, group = current_user_and_group()
        argv = [str(CLASSIC / "restore.sh"), str(self.classic_inbox), str(self.b.datadir),
                f"{user}:{group}", *self.b.standin_argv("start")]
        subprocess.run(argv, check=True, capture_output=True, timeout=120)


def _load(root, pillar):
    """proxysql_ha's execution module through Salt's loader, for one node."""
    root.mkdir(parents=True, exist_ok=True)
    conf = root / "minion"
    conf.write_text(f"root_dir: {root}\nid: {pillar['node_id']}\n", encoding="utf-8")
    opts = salt.config.minion_config(str(conf))
    opts.update(file_client="local", module_dirs=[str(REPO / "_modules")],
                utils_dirs=[str(REPO / "_utils")], proxysql_ha=pillar, grains={})
    return salt.loader.minion_mods(opts, utils=salt.loader.utils(opts))


def _engine():
    spec = importlib.util.spec_from_file_location("proxysql_ha_engine", REPO / "_engines" / "proxysql_ha.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- 1. idle tick --------------------------------------------------------------------


def idle_tick(bench, runs):
    bench.build("small")
    ship = bench.module(bench.a, "127.0.0.1")["proxysql_ha.ship"]
    ship()
    before = bench.connections()
    samples = [measure(ship)[:2] for _ in range(runs)]
    opened = bench.connections() - before
    engine = _engine()
    ticks = 20_000
    cpu = cpu_seconds()
    for _ in range(ticks):
        engine._signature(str(bench.a.live_db))  # pylint: disable=protected-access
    engine_us = (cpu_seconds() - cpu) / ticks * 1e6
    return {
        "ship_wall_ms": stats.median([s[0] for s in samples]),
        "ship_cpu_ms": stats.median([s[1] for s in samples]),
        "ssh_connections": opened,
        "runs": runs,
        "engine_tick_cpu_us": engine_us,
    }


# ---- 2. a saved change: backup + verify + ship -----------------------------------------------


CONNECTIONS = ("cold", "warm")  # a new SSH connection (no multiplex master alive), or over one


def changed(bench, size, runs):
    """
    A saved change shipped, ours and classic, over a cold and over a warm connection. Ours is
    timed twice per run: from the save (the settle window included: the headline, save to a
    valid copy on the peer) and, after another change, once the window has passed (the work).
    CPU counts every process started, the multiplex master included (see bench.cpu).
    """
    bench.build(size)
    ship = bench.module(bench.a, "127.0.0.1")["proxysql_ha.ship"]
    rows = {}
    for connection in CONNECTIONS:
        cold = connection == "cold"
        ours, classic, waited = [], [], []
        if not cold:  # the master the warm runs go over, opened outside the measurement
            bench.change(-1)
            ship()
            bench.classic_backup(warm=True)
        for seq in range(runs):
            bench.change(seq)
            if cold:
                bench.close_masters()
            waited.append(bench.measure(ship))  # from the save: the settle window included
            bench.change(seq + 1000)
            time.sleep(bench.settle)  # the window passes: what is left is the work
            if cold:
                bench.close_masters()
            ours.append(bench.measure(ship))
            if cold:
                bench.close_masters()
            classic.append(bench.measure(lambda: bench.classic_backup(warm=not cold)))
        bench.close_masters()
        rows[connection] = _compare(ours, classic) | {
            "ours_from_save_ms": stats.median([s[0] for s in waited]),
            "ours_from_save_cpu_ms": stats.median([s[1] for s in waited]),
        }
    return {"size_mb": bench.a.live_db.stat().st_size / 1e6, "settle_s": bench.settle,
            "cpu_method": bench.meter.method, "connections": rows}


def _compare(ours, classic):
    row = {
        "ours_wall_ms": stats.median([s[0] for s in ours]),
        "ours_cpu_ms": stats.median([s[1] for s in ours]),
        "classic_wall_ms": stats.median([s[0] for s in classic]),
        "classic_cpu_ms": stats.median([s[1] for s in classic]),
    }
    row["wall_ratio"] = stats.ratio(row["ours_wall_ms"], row["classic_wall_ms"])
    return row


# ---- 3. restore -------------------------------------------------------------------------


def restore(bench, size, runs):
    bench.build(size)
    bench.module(bench.a, "127.0.0.1")["proxysql_ha.ship"]()
    bench.classic_backup()
    restore_b = bench.module(bench.b, "127.0.0.1")["proxysql_ha.restore"]
    ours, classic, install = [], [], []
    for _ in range(runs):
        bench.b.standin("stop")
        (bench.b.state_dir / "live.json").unlink(missing_ok=True)
        # Each run starts as the first did, with no copy set aside by an earlier run: the module
        # names them by the second (then by pid), so a third restore within one second by one
        # process finds both names taken and fails.
        for aside in bench.b.datadir.glob("proxysql.db.pre-restore-*"):
            aside.unlink()
        began = time.time()
        wall, cpu_ms, report = measure(restore_b)
        ours.append((bench.until_loaded(began, wall), cpu_ms))
        install.append(report["steps_ms"]["install"])
        bench.b.standin("stop")
        began = time.time()
        wall, cpu_ms, _ = measure(bench.classic_restore)
        classic.append((bench.until_loaded(began, wall), cpu_ms))
    return _compare(ours, classic) | {"ours_install_ms": stats.median(install)}


# ---- 3b. a warm standby applies a received backup ----------------------------------------


def warm_apply(bench, size, runs):
    """
    A warm BACKUP (its own stand-in, with an admin port) applying a backup A made: the copy put
    into its inbox, then ``proxysql_ha.apply`` timed (install, FLUSH CONFIGDB, LOAD ... FROM
    DISK / TO RUNTIME for every module, verification against the runtime).
    """
    bench.build(size)
    warm = Node("node-w", bench.root / f"w-{size}", bench.schema,
                admin=free_loopback_port()).create()
    proxysql_db.build_db(warm.live_db, bench.statements, users=1, rules=1)
    warm.inbox_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
    mods = _load(bench.root / f"salt-w-{size}", warm.pillar(
        vip="127.0.0.66", peer_path=str(bench.a.inbox_dir), standby="warm"))
    backup = bench.module(bench.a, "127.0.0.1")["proxysql_ha.backup"]
    mods["proxysql_ha.reconcile"]()  # starts its ProxySQL: a warm standby runs it
    wall, hows, steps = [], set(), []
    try:
        for seq in range(runs):
            bench.change(seq)
            name = backup()["name"]
            for suffix in (".db", ".json"):  # as the receiver publishes: data first
                shutil.copy2(bench.a.backup_dir / f"{name}{suffix}", warm.inbox_dir)
            elapsed, _, report = measure(mods["proxysql_ha.apply"])
            wall.append(elapsed)
            steps.append(dict(report["steps_ms"], apply=report["ms"]))
            hows.add((report["how"], report["verify"]["verified"], not report["verify"]["problems"]))
    finally:
        warm.standin("stop")
    return {"size_mb": bench.a.live_db.stat().st_size / 1e6, "runs": runs,
            "p50_ms": stats.percentile(wall, 50), "p95_ms": stats.percentile(wall, 95),
            "how": sorted(hows),
            "steps_p50_ms": {k: stats.median([s.get(k, 0) for s in steps]) for k in steps[0]}}


# ---- 4. cost as the work grows ----------------------------------------------------------------


def growth(bench, users_list):
    rows = []
    for users in users_list:
        db = bench.root / f"grow-{users}.db"
        proxysql_db.build_db(db, bench.statements, users=users, rules=users // 5)
        row = {"users": users, "rules": users // 5, "size_mb": db.stat().st_size / 1e6}
        baseline = _op("noop", db, bench.root)[1]
        for op in ("backup", "verify", "restore"):
            elapsed, peak = _op(op, db, bench.root)
            row[op] = (elapsed, max(0.0, peak - baseline))
        rows.append(row)
        db.unlink()
    return rows


def inspection(bench, users):
    """One candidate's inspection against ten in one process: time should be 10x, memory the same."""
    db = bench.root / f"inspect-{users}.db"
    proxysql_db.build_db(db, bench.statements, users=users, rules=users // 5)
    baseline = _op("noop", db, bench.root)[1]
    row = {"users": users, "size_mb": db.stat().st_size / 1e6}
    for op in ("verify", "inspect10"):
        elapsed, peak = _op(op, db, bench.root)
        row[op] = (elapsed, max(0.0, peak - baseline))
    db.unlink()
    return row


def _op(op, db, scratch):
    """``(ms, peak MB)`` of one operation in a fresh process."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "bench.ops", op, str(db), str(scratch)],
                            stdout=subprocess.PIPE, text=True, cwd=REPO, env=env)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    if proc.returncode != 0:
        raise RuntimeError(f"bench.ops {op} failed")
    for leftover in Path(scratch).glob(".proxysql-ha-tmp-*"):
        leftover.unlink()
    return float(out.strip()), usage.ru_maxrss / 1024
