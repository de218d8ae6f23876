"""The two-host failover lab: build it, bring the pair up, look at it, tear it all down.

::

    with Lab(schema) as lab:          # namespaces, master, sshd, minions, schedule, ucarp
        a, b = lab.host("a"), lab.host("b")
        a.save_change()
        lab.wait_until(lambda: b.backups(), 30, "a backup in B's inbox")

Namespaces ``pha-<pid>-net`` (the bridge ``br0`` and the salt-master on 198.18.0.1),
``pha-<pid>-a`` (198.18.0.11) and ``pha-<pid>-b`` (198.18.0.12); the VIP is 198.18.0.50.
198.18.0.0/24 is a benchmarking range: every packet stays inside these namespaces.
Teardown (on exit, Ctrl-C, SIGTERM, SIGHUP or failure) kills every process the lab started and
every process left inside its namespaces, deletes the namespaces and the lab's directory (kept,
with the daemons' logs, when the lab failed with an error).
"""

import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from lab import events, netns
from lab import salt as labsalt
from lab.hosts import Host
from standin.checkout import clean_copy

MASTER_ADDRESS = "198.18.0.1"
ADDRESSES = {"a": "198.18.0.11", "b": "198.18.0.12"}
ADVSKEW = {"a": 0, "b": 100}  # A is the preferred MASTER
VIP = "198.18.0.50"
A_DATABASE = {"users": 40, "rules": 12, "servers": 6, "hostgroups": 4}
EMPTY_DATABASE = {"users": 0, "rules": 0, "servers": 0, "hostgroups": 0}
TAKEOVER_SECONDS = 30
MASTER_READY = "Starting the Salt Publisher"
NAMESPACE_RE = r"pha-(?P<pid>\d+)-(net|a|b)"


class LabTimeout(Exception):
    """Something the lab waited for did not happen in time."""


class Lab:
    """
    The lab; ``schema`` is ProxySQL's ``schema-<version>.sql``. ``database`` are ``build_db``
    keywords for A's configuration (B starts empty). ``schemas`` gives a host ("a", "b") the DDL
    of another ProxySQL version than ``schema`` (a rolling upgrade); ``pillar`` keys are laid over
    both hosts' pillars (e.g. ``{"standby": "warm"}``); ``preempt`` runs ucarp with ``--preempt``.
    ``narrate`` prints the bring-up;
    ``keep_dir`` keeps the lab's directory (configs, logs, recorded events) after teardown.
    """

    def __init__(self, schema, database=None, narrate=True, keep_dir=False, schemas=None,
                 preempt=False, pillar=None):
        self.schema = Path(schema)
        self.preempt = preempt  # ucarp --preempt on both hosts: A, the better advskew, takes the VIP back
        self.pillar = dict(pillar or {})
        self.schemas = {name: Path(path) for name, path in (schemas or {}).items()}
        self.database = database or A_DATABASE
        self.narrate = narrate
        self.keep_dir = keep_dir
        self.t0 = time.time()
        self.prefix = f"pha-{os.getpid()}-"
        self.net_ns = f"{self.prefix}net"
        self.vip = VIP
        self.master_address = MASTER_ADDRESS
        self.dir = None
        self.file_root = None
        self.pillar_root = None
        self.master_config = None
        self.hosts = {}
        self.master = None
        self.master_recorder = None
        self.failed = False

    # ---- timeline -----------------------------------------------------------------------

    def ms(self, epoch=None):
        """Milliseconds since the lab began, at ``epoch`` (default: now)."""
        return round(((time.time() if epoch is None else epoch) - self.t0) * 1000)

    def say(self, text, at=None):
        """Print ``[   1234 ms] text`` (``at``: an epoch time instead of now)."""
        if self.narrate:
            print(f"[{self.ms(at):8d} ms] {text}", flush=True)

    def wait_until(self, predicate, seconds, what, interval=0.05):
        """Poll ``predicate`` until it returns something true; return it. LabTimeout after ``seconds``."""
        deadline = time.monotonic() + seconds
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise LabTimeout(f"waited {seconds} s for {what}")
            time.sleep(interval)

    # ---- life cycle -----------------------------------------------------------------------

    def __enter__(self):
        self._handlers = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
        try:
            self.start()
        except BaseException as exc:
            self._leave(failed=not isinstance(exc, KeyboardInterrupt))
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        self._leave(failed=exc_type is not None and not issubclass(exc_type, KeyboardInterrupt))
        return False

    def _leave(self, failed):
        """Tear down, then give SIGTERM and SIGHUP back to whoever had them before the lab."""
        try:
            self.teardown(failed=failed)
        finally:
            for sig, handler in self._handlers.items():
                signal.signal(sig, handler)

    def start(self):
        """Build everything and bring the pair up: A MASTER with ProxySQL running, B BACKUP."""
        netns.require()
        for namespace in netns.orphans(NAMESPACE_RE):
            self.say(f"removed namespace {namespace} left by a lab that was killed")
        self.dir = Path(tempfile.mkdtemp(prefix=self.prefix))
        self.file_root = clean_copy(self.dir / "srv" / "proxysql-ha")
        self.pillar_root = self.dir / "pillar"
        self._network()
        self._files()
        self.start_master()
        for host in self.hosts.values():
            host.start_sshd()
            host.start_minion(wait=False)
        for host in self.hosts.values():
            host.wait_minion()
        self.say(f"salt-master on {MASTER_ADDRESS}; minions node-a and node-b connected; "
                 "sshd on both hosts")
        self._apply_states()
        self._start_carp()

    def _network(self):
        netns.add(self.net_ns)
        netns.ip("link", "add", "br0", "type", "bridge", namespace=self.net_ns)
        netns.address(self.net_ns, "br0", f"{MASTER_ADDRESS}/24")
        netns.link(self.net_ns, "br0", "up")
        for name, address in ADDRESSES.items():
            self.hosts[name] = Host(self, name, address, ADVSKEW[name])
            self.hosts[name].wire()
        self.say(f"namespaces {self.prefix}{{net,a,b}}: bridge br0 {MASTER_ADDRESS}, "
                 f"A {ADDRESSES['a']}, B {ADDRESSES['b']}, VIP {VIP}")

    def _files(self):
        a, b = self.host("a"), self.host("b")
        a.prepare(self.database)
        b.prepare(EMPTY_DATABASE)
        a.trust(b)
        b.trust(a)
        labsalt.pillar(self.pillar_root, {h.minion_id: h.pillar() for h in self.hosts.values()})
        for host in self.hosts.values():
            host.write_minion_config()
        self.master_config = labsalt.master_config(self.dir / "master", MASTER_ADDRESS,
                                                   self.file_root, self.pillar_root)

    def _apply_states(self):
        """The formula's schedule, then the converged state (alone: the formula's other SLS
        files create system users and install files outside the lab)."""
        ids = [h.minion_id for h in self.hosts.values()]
        applied = self.salt(ids, "state.apply", "proxysql_ha.schedule")
        converged = self.salt(ids, "state.single", "proxysql_ha.converged", "name=lab")
        for minion in ids:
            for ret in (applied.get(minion), converged.get(minion)):
                failed = [s.get("comment") for s in ret.values() if not s.get("result")] \
                    if isinstance(ret, dict) else [ret]
                if failed:
                    raise RuntimeError(f"{minion}: state failed: {failed}")
        comments = {c["comment"] for m in ids for c in converged[m].values()}
        self.say(f"salt state.apply proxysql_ha.schedule: {len(applied[ids[0]])} schedule jobs "
                 f"per minion; state proxysql_ha.converged: {', '.join(sorted(comments))}")

    def _start_carp(self):
        a, b = self.host("a"), self.host("b")
        a.start_ucarp()
        self.wait_until(lambda: a.role() == "MASTER" and a.proxysql_running(), TAKEOVER_SECONDS,
                        "A to become MASTER with ProxySQL running")
        up = a.transitions()[-1][0]
        self.say(f"A: ucarp MASTER, up-script at {self.ms(up)} ms; ProxySQL (stand-in) running")
        b.start_ucarp()
        self.wait_until(lambda: b.transitions(), TAKEOVER_SECONDS, "B's ucarp to start as BACKUP")
        self.say("B: ucarp started as BACKUP (down-script ran)")

    # ---- the salt-master --------------------------------------------------------------------

    def start_master(self):
        """Start the salt-master (and the recorder of its bus); return once it publishes."""
        log = self.dir / "master" / "master.log"
        offset = labsalt.size(log)
        self.master = netns.Process(self.net_ns, labsalt.master_argv(self.master_config),
                                    self.dir / "master" / "master.out").start()
        self.wait_until(lambda: labsalt.logged_since(log, offset, MASTER_READY), 60,
                        "the salt-master to start")
        self.master_recorder = events.start("master", self.master_config / "master",
                                            self.dir / "master" / "events.jsonl",
                                            self.dir / "master" / "recorder.log")

    def stop_master(self, seconds=15):
        """Stop the salt-master (SIGTERM, SIGKILL after ``seconds``)."""
        if self.master_recorder:
            self.master_recorder.stop(signal.SIGTERM, 2)
        if self.master:
            self.master.stop(signal.SIGTERM, seconds)
        netns.sweep(self.net_ns)

    def salt(self, target, function, *args, seconds=60):
        """``salt`` from the master's namespace: ``{minion id: return}``."""
        return labsalt.salt(self.net_ns, self.master_config, target, function, *args,
                            seconds=seconds)

    def master_events(self, tag=""):
        """Recorded events of the master's bus whose tag starts with ``tag``."""
        return [e for e in events.read(self.dir / "master" / "events.jsonl")
                if e["tag"].startswith(tag)]

    def host(self, name):
        return self.hosts[name]

    # ---- teardown -------------------------------------------------------------------------

    def teardown(self, failed=False):
        """Kill everything, delete the namespaces; keep the directory (logs) only on failure."""
        for host in self.hosts.values():
            host.stop_all()
        for process in (self.master_recorder, self.master):
            if process:
                process.kill()
        survivors = {}
        for namespace in [h.namespace for h in self.hosts.values()] + [self.net_ns]:
            left = netns.delete(namespace)
            if left:
                survivors[namespace] = left
        ours = [n for n in netns.listed() if n.startswith(self.prefix)]
        if survivors or ours:
            print(f"lab teardown: processes {survivors} would not die; namespaces left: {ours}",
                  file=sys.stderr)
        if self.dir and (failed or survivors or self.keep_dir):
            print(f"lab: logs kept in {self.dir}", file=sys.stderr)
        elif self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.hosts = {}


def _interrupt(signum, _frame):
    """SIGTERM and SIGHUP end the lab like Ctrl-C: through teardown."""
    raise KeyboardInterrupt(f"signal {signum}")
