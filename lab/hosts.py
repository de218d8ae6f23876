"""One host of the pair: a network namespace running ucarp, sshd, a salt-minion and ProxySQL.

ProxySQL is the stand-in of ``standin/proxysql_standin.py`` (it is not ProxySQL), one
datadir per host. ucarp's up and down scripts are small wrappers that note the time and exec
the project's hook (``proxysql_ha/files/proxysql-ha-event``) in its ucarp form; ucarp's
environment names the host's ``hook.json``, whose ``minion_config`` is this host's minion.

A host's files live in ``<lab dir>/<name>/``::

    proxysql/  run/  ha/{outgoing,incoming,state}/    ProxySQL's datadir, pid file, the backups
    salt/      the minion's root_dir (etc/minion, minion.log, pki, cache, sock)
    ssh/       the shipping identity and known_hosts; sshd/ the host's sshd
    ucarp/     password file, up/down wrappers, ucarp.log, transitions.log
    hook.json  events.jsonl (the minion's bus, recorded)
"""

import json
import shutil
import signal
import subprocess
import sys

from saltext.proxysql_ha.utils.proxysql_ha_admin import MODULES as ADMIN_MODULES
from saltext.proxysql_ha.utils.proxysql_ha_admin import parse_batch
from saltext.proxysql_ha.utils.proxysql_ha_config import defaults as config_defaults
from saltext.proxysql_ha.utils.proxysql_ha_store import parse_name

from lab import events, netns
from lab import salt as labsalt
from standin import proxysql_db, sshd
from standin.node import Node

VHID = 9
ADVBASE = 1
MINION_START_SECONDS = 60
MINION_GONE_SECONDS = 15  # a crashed minion's processes to be gone (init reaps the orphans)
WRAPPER = """#!/bin/sh
# ucarp {direction}-script of the lab: note the time, then run the project's hook (ucarp form).
echo "$(date +%s.%N) {direction} $*" >> {log}
exec {python} -S {hook} --ucarp-{direction} "$@"
"""
# The lab's ProxySQL service commands (start, stop, status): the stand-in's, through this gate.
# start fails while the file ``broken`` names exists (``Host.break_start``), as a ProxySQL that
# cannot start does. A one-shot pause (``Host.pause_at``, test support only: nothing is armed
# unless a test arms it) holds one command before or after it runs, while the host's role is the
# one the arming file names: the gate notes its pid in ``paused`` and sleeps until the test kills
# the salt-minion and it (a crash at that point of a transition). Shell, not Python: it runs on
# every status call.
SERVICE_GATE = """#!/bin/sh
verb=$1; shift
if [ "$verb" = start ] && [ -e {broken} ]; then
    echo "proxysql could not start (the lab broke its start)" >&2
    exit 1
fi
when=""
for at in before after; do
    arm={gates}/$verb-$at
    if [ -e "$arm" ]; then
        if {ip} -o addr show dev {iface} | grep -qF " {vip}/"; then role=MASTER; else role=BACKUP; fi
        if [ "$role" = "$(cat "$arm" 2>/dev/null)" ] && mv "$arm" "$arm.taken" 2>/dev/null; then
            when=$at
        fi
    fi
done
pause() {{
    echo "$$ $verb $when" > {gates}/paused.tmp && mv {gates}/paused.tmp {gates}/paused
    exec sleep 300
}}
[ "$when" = before ] && pause
[ "$when" = after ] || exec "$@"
"$@"
pause
"""
HEALTH = {"carp": "ucarp", "grace": 2, "hold_down": 5}  # the VIP follows ProxySQL, quickly
ADMIN_LAYER_CHECK = 2  # s: the engine's layer check on the MASTER (the pillar's default is 30)
ADMIN_SECONDS = 20  # bound of an operator's admin session


class Host:
    """
    Host ``name`` ("a" or "b") of the lab: minion id ``node-<name>``, namespace ``namespace``,
    ``address`` on ``iface``, joined to the bridge by ``bridge_port`` in the lab's ``net_ns``.
    """

    def __init__(self, lab, name, address, advskew):
        self.lab = lab
        self.name = name
        self.minion_id = f"node-{name}"
        self.namespace = f"{lab.prefix}{name}"
        self.address = address
        self.advskew = advskew
        self.iface = f"veth-{name}"
        self.bridge_port = f"br-{name}"
        self.root = lab.dir / name
        # its own namespace: the stand-in listens on its db's mysql-interfaces (0.0.0.0:6033),
        # which the module finds with traffic_address auto, as on a real host
        self.schema = lab.schemas.get(name, lab.schema)  # this host's ProxySQL version
        self.node = Node(self.minion_id, self.root, self.schema, traffic_port=None, admin="auto")
        self.spool_dir = self.node.state_dir / "carp"  # the engine relays the hook from here
        self.peer = None
        self.minion_config = self.root / "salt" / "etc" / "minion"
        self.minion_log = self.root / "salt" / "minion.log"
        self._minion_log_offset = 0
        self.identity = self.root / "ssh" / "id_ed25519"
        self.public_key = None
        self.known_hosts = self.root / "ssh" / "known_hosts"
        self.transitions_log = self.root / "ucarp" / "transitions.log"
        self.ucarp_pidfile = self.root / "ucarp" / "ucarp.pid"
        self.start_broken = self.root / "start-broken"
        self.gates = self.root / "gates"  # the service gate's one-shot pauses (Host.pause_at)
        self.events_file = self.root / "events.jsonl"
        self.sshd = None
        self.ucarp = None
        self.minion = None
        self.recorder = None

    # ---- building ---------------------------------------------------------------------

    def wire(self):
        """This host's namespace and its veth into the lab's bridge, with its address."""
        netns.add(self.namespace)
        netns.veth(self.namespace, self.iface, self.lab.net_ns, self.bridge_port)
        netns.ip("link", "set", self.bridge_port, "master", "br0", namespace=self.lab.net_ns)
        netns.link(self.lab.net_ns, self.bridge_port, "up")
        netns.address(self.namespace, self.iface, f"{self.address}/24")
        netns.link(self.namespace, self.iface, "up")

    def prepare(self, database):
        """Directories, ProxySQL's database (``build_db`` keywords), keys, sshd, hook, ucarp files."""
        self.node.create()
        for path in (self.node.inbox_dir, self.root / "ssh", self.root / "ucarp"):
            path.mkdir(parents=True, mode=0o700)
        proxysql_db.build_db(self.node.live_db, proxysql_db.read_schema(self.schema),
                             seed=ord(self.name), **database)
        self.public_key = sshd.generate_key(self.identity, f"proxysql-ha@{self.minion_id}")
        self.sshd = sshd.Sshd(self.root / "sshd", port=22, host=self.address,
                              prefix=netns.exec_argv(self.namespace, []))
        self._write_hook_files()

    def trust(self, peer):
        """Ship to ``peer``: our key may only run its receive command; we know its host key."""
        self.peer = peer
        receive = self.lab.file_root / "proxysql_ha" / "files" / "proxysql-ha-receive"
        quota = config_defaults("Debian")["inbox_quota"]  # the lab's pillar keeps the defaults
        peer.sshd.authorize(self.public_key, f"{sys.executable} {receive} --max-files {quota['files']} "
                                             f"--max-bytes {quota['bytes']} {peer.node.inbox_dir}")
        self.known_hosts.write_text(peer.sshd.known_hosts_line() + "\n", encoding="utf-8")

    def _write_hook_files(self):
        hook = self.lab.file_root / "proxysql_ha" / "files" / "proxysql-ha-event"
        (self.root / "hook.json").write_text(json.dumps({
            "vhid": VHID, "interface": self.iface, "minion_config": str(self.minion_config),
            "reconcile_job": "proxysql_ha_reconcile", "prefix": 32,
            "spool_dir": str(self.spool_dir),
            "ip_command": netns.which("ip"),
        }, indent=1), encoding="utf-8")
        for direction in ("up", "down"):
            script = self.root / "ucarp" / direction
            script.write_text(WRAPPER.format(direction=direction, log=self.transitions_log,
                                             python=sys.executable, hook=hook), encoding="utf-8")
            script.chmod(0o755)
        gate = self.root / "service-gate"
        self.gates.mkdir(exist_ok=True)
        gate.write_text(SERVICE_GATE.format(broken=self.start_broken, gates=self.gates,
                                            ip=netns.which("ip"), iface=self.iface,
                                            vip=self.lab.vip), encoding="utf-8")
        gate.chmod(0o755)
        password = self.root / "ucarp" / "password"
        password.write_text("lab-carp-secret\n", encoding="utf-8")
        password.chmod(0o600)

    def pillar(self):
        """This host's ``proxysql_ha`` pillar: role from the VIP, ssh shipping to the peer."""
        commands = {verb: [str(self.root / "service-gate"), verb, *self.node.standin_argv(verb)]
                    for verb in ("start", "stop", "status")}
        return {
            "vhid": VHID,
            "interface": self.iface,
            "role_source": "vip",
            "vip": self.lab.vip,
            "node_id": self.minion_id,
            "datadir": str(self.node.datadir),
            "backup_dir": str(self.node.backup_dir),
            "inbox_dir": str(self.node.inbox_dir),
            "state_dir": str(self.node.state_dir),
            "pidfile": str(self.node.pidfile),  # the engine tells ProxySQL's state from it
            "user": "root",
            "group": "root",
            "settle": 0.2,
            "service": {"timeout": 15},
            "commands": commands,
            "proxysql": {"traffic_address": "auto"},
            "health": dict(HEALTH, ucarp_pidfile=str(self.ucarp_pidfile)),
            # the admin stand-in answers on the db's admin-mysql_ifaces, admin:admin from the db;
            # the layer check quickly, so that the demo and the tests see its alert soon
            "admin": {"enabled": True, "layer_check_interval": ADMIN_LAYER_CHECK},
            "peer": {"transport": "ssh", "host": self.peer.address, "port": 22, "user": "root",
                     "identity_file": str(self.identity), "known_hosts": str(self.known_hosts),
                     "connect_timeout": 2, "timeout": 20},
            "formula": {"carp": "none", "restart_minion": False,
                        "libexec_dir": str(self.root / "libexec"),
                        "etc_dir": str(self.root / "etc-proxysql-ha")},
            **self.lab.pillar,
        }

    def write_minion_config(self):
        engine = {"spool": str(self.spool_dir)}  # the rest from the pillar, as the formula writes it
        labsalt.minion_config(self.root / "salt", self.minion_id, self.lab.master_address,
                              self.lab.file_root, self.lab.pillar_root, engine)

    # ---- daemons ----------------------------------------------------------------------

    def start_sshd(self):
        self.sshd.start()

    def stop_sshd(self):
        self.sshd.stop()

    def start_minion(self, wait=True):
        """Start salt-minion; with ``wait``, return once it is connected (see :meth:`wait_minion`)."""
        self._wait_claim_released()
        self._minion_log_offset = labsalt.size(self.minion_log)
        self.minion = netns.Process(self.namespace, labsalt.minion_argv(self.minion_config.parent),
                                    self.root / "salt" / "minion.out").start()
        if wait:
            self.wait_minion()

    def _wait_claim_released(self):
        """
        Salt's single-instance check (with psutil) refuses to start ("An instance is already
        running") while the process its ``process_responsibility_minion.pid`` names exists with
        that name and start time, a zombie too; a stale pid file does not block it. A killed
        minion's process, orphaned, is a zombie until init reaps it: wait for that (bounded).
        """
        path = self.root / "salt" / "process_responsibility_minion.pid"
        try:
            pid = int(json.loads(path.read_text(encoding="utf-8"))["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return
        stat = netns.process_stat(pid)
        if stat and stat[0] == "Z":
            netns.wait_gone({pid: stat[2]}, MINION_GONE_SECONDS)

    def wait_minion(self):
        """Wait until the minion started last says it is connected; then record its event bus."""
        self.lab.wait_until(
            lambda: labsalt.logged_since(self.minion_log, self._minion_log_offset,
                                         labsalt.MINION_READY) or not self.minion.running(),
            MINION_START_SECONDS, f"salt-minion {self.minion_id} to connect to its master")
        if not self.minion.running():
            raise RuntimeError(f"salt-minion {self.minion_id} exited; see {self.minion_log}")
        self.recorder = events.start("minion", self.minion_config, self.events_file,
                                     self.root / "recorder.log")

    def stop_minion(self, seconds=15):
        """Stop salt-minion with SIGTERM (it takes 5-10 s), SIGKILL after ``seconds``."""
        self._stop_recorder()
        if self.minion:
            self.minion.stop(signal.SIGTERM, seconds)
        netns.kill_matching(self.namespace, str(self.minion_config.parent))

    def _stop_recorder(self):
        if self.recorder:
            self.recorder.stop(signal.SIGTERM, 2)

    def start_ucarp(self):
        """Start ucarp (vhid 9, advbase 1, this host's advskew; ``--preempt`` in a lab built
        with it) with the hook as its scripts."""
        scripts = self.root / "ucarp"
        argv = [netns.which("ucarp"), f"--interface={self.iface}", f"--srcip={self.address}",
                f"--vhid={VHID}", f"--passfile={scripts / 'password'}", f"--addr={self.lab.vip}",
                f"--advbase={ADVBASE}", f"--advskew={self.advskew}",
                f"--upscript={scripts / 'up'}", f"--downscript={scripts / 'down'}", "--shutdown"]
        argv += ["--preempt"] if self.lab.preempt else []
        self.ucarp = netns.Process(self.namespace, argv, scripts / "ucarp.log",
                                   env={"PROXYSQL_HA_HOOK_CONF": str(self.root / "hook.json")})
        self.ucarp.start()
        self.ucarp_pidfile.write_text(f"{self.ucarp.pid}\n", encoding="utf-8")

    def stop_ucarp(self):
        """Stop ucarp gracefully: it runs its down-script (--shutdown) and exits."""
        if self.ucarp:
            self.ucarp.stop(signal.SIGTERM, 10)

    def wake_ucarp(self):
        """SIGCONT to ucarp: undo a freeze the module's release left (the lab's repair)."""
        if self.ucarp and self.ucarp.running():
            self.ucarp.send(signal.SIGCONT)

    def step_down(self):
        """A planned switchover: ucarp (SIGUSR2) gives up MASTER, pauses 3 s, then listens again."""
        self.ucarp.send(signal.SIGUSR2)

    # ---- failures ---------------------------------------------------------------------

    def kill(self):
        """
        The host dies: its link goes down, ucarp and salt-minion are killed (SIGKILL: no
        down-script runs). ProxySQL and sshd are left as they were, cut off from the network.
        """
        netns.link(self.namespace, self.iface, "down")
        if self.ucarp:
            self.ucarp.kill()
        self._stop_recorder()
        if self.minion:
            self.minion.kill()
        netns.kill_matching(self.namespace, str(self.minion_config.parent))

    def revive(self):
        """
        The host comes back as after a reboot: no VIP on its interface, link up, salt-minion
        started (and connected), then ucarp, which starts as BACKUP and runs its down-script.
        """
        netns.address(self.namespace, self.iface, f"{self.lab.vip}/32", action="del", check=False)
        netns.link(self.namespace, self.iface, "up")
        self.start_minion()
        self.start_ucarp()

    def break_start(self):
        """ProxySQL's start fails on this host from now on (its start command exits 1)."""
        self.start_broken.write_text("broken by the lab\n", encoding="utf-8")

    def fix_start(self):
        self.start_broken.unlink(missing_ok=True)

    def pause_at(self, verb, when, role):
        """
        Arm a one-shot pause of ProxySQL's ``verb`` command (start, stop, status), ``when``
        "before" or "after" it runs, the next time it runs while this host is ``role``
        (MASTER or BACKUP). :meth:`paused` tells when it holds; :meth:`crash_minion` ends it.
        """
        self.unpause()
        (self.gates / f"{verb}-{when}").write_text(role, encoding="utf-8")

    def paused(self):
        """``(pid, verb, when)`` of the service command the gate holds, or None."""
        try:
            pid, verb, when = (self.gates / "paused").read_text(encoding="utf-8").split()
        except (FileNotFoundError, ValueError):
            return None
        return int(pid), verb, when

    def unpause(self):
        """Disarm every pause and end the command one holds (the lab's repair)."""
        held = self.paused()
        if held:
            netns.with_process(held[0], signal.SIGKILL)
        for path in self.gates.iterdir():
            path.unlink(missing_ok=True)

    def crash_minion(self):
        """
        The salt-minion crashes with everything it forked: the minion, its jobs (Salt detaches
        each into a session of its own; their command line is the minion's) and every child of
        them (the service command the gate holds, the engine's mariadb client, ssh) are SIGKILLed
        at once, and this returns when all of them are gone. ProxySQL runs on if it runs: its
        start detaches it from the command that started it (the stand-in's double fork).
        """
        self._stop_recorder()
        left = netns.crash(self.minion, str(self.minion_config.parent), MINION_GONE_SECONDS)
        if left:
            raise RuntimeError(f"{self.minion_id}'s minion processes {left} outlived its crash")
        self.unpause()

    def cut_link(self):
        """Partition the host: its port leaves the bridge (its interface stays up, no carrier loss)."""
        netns.ip("link", "set", self.bridge_port, "nomaster", namespace=self.lab.net_ns)

    def restore_link(self):
        netns.ip("link", "set", self.bridge_port, "master", "br0", namespace=self.lab.net_ns)

    def stop_all(self):
        """Teardown: everything of this host, at once."""
        for process in (self.recorder, self.ucarp, self.minion):
            if process:
                process.kill()
        if self.sshd:
            self.sshd.stop()

    # ---- looking at it ----------------------------------------------------------------

    def role(self):
        """MASTER when the VIP is on this host's interface (what the module reads), else BACKUP."""
        return "MASTER" if self.lab.vip in netns.addresses(self.namespace, self.iface) else "BACKUP"

    def proxysql_running(self):
        return self.node.running()

    def config(self):
        """Every table of the live ``proxysql.db``: ``{table: [rows]}``."""
        return proxysql_db.dump_config(self.node.live_db)

    def loaded(self):
        """What the stand-in reported it loaded at its last start (``standin-loaded.json``)."""
        path = self.node.datadir / "standin-loaded.json"
        try:  # the stand-in replaces it at every start: read once, no look-then-read race
            return json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None

    def save_change(self, table="mysql_users", rows=None):
        """
        Save a configuration change into the live database the way ProxySQL's ``SAVE ... TO
        DISK`` does (commit a DELETE, then the INSERT), and where ProxySQL runs load it into
        memory and runtime through the admin interface, so that the layers agree as after an
        operator's edit, load and save. Without ``rows``, a new MySQL user is added to
        ``mysql_users``. Returns the configuration as saved.
        """
        if rows is None:
            rows = self._with_new_user()
        proxysql_db.save_table(self.node.live_db, table, rows)
        if self.proxysql_running():  # memory and runtime as after the operator's LOAD and SAVE
            # just started, it may not have loaded yet: its admin interface listens once it has
            # (the stand-in writes its report then), as ProxySQL's does after the load
            self.node.wait_serving(timeout=15)
            module = next(m for m, spec in ADMIN_MODULES.items() if table in spec["tables"])
            self.admin_session(f"LOAD {module} FROM DISK; LOAD {module} TO RUNTIME;")
        return self.config()

    def added_user(self, saved):
        """The name of the user :meth:`save_change` (without ``rows``) added on this host, from
        the configuration it returned (the rows sort by name: it is not always the last one)."""
        return f"lab_{self.name}_{len(saved['mysql_users']):04d}"

    def _with_new_user(self):
        """``mysql_users`` plus one user made from the first row (a new name and password)."""
        rows = self.config()["mysql_users"]
        if not rows:
            raise ValueError("no mysql_users row to copy: give rows= explicitly")
        name = self.added_user({"mysql_users": rows + [None]})
        return rows + [(name, proxysql_db.mysql_native_hash(name)) + tuple(rows[0][2:])]

    def admin_session(self, sql):
        """
        Run ``sql`` as an operator would: the real MySQL client on this host's admin interface
        (the stand-in's, 127.0.0.1:6032 in its namespace, admin:admin as its db says), the
        credentials in a 0600 option file, the statements on stdin. Returns the rows of the
        last result (``--batch`` parsed); RuntimeError with the client's message on failure.
        """
        client = shutil.which("mariadb") or shutil.which("mysql")
        if client is None:
            raise RuntimeError("no MySQL client (Debian: mariadb-client)")
        options = self.root / "admin-session.cnf"
        options.touch(mode=0o600)
        options.write_text("[client]\nuser=admin\npassword=admin\nhost=127.0.0.1\nport=6032\n"
                           "protocol=TCP\n", encoding="utf-8")
        argv = netns.exec_argv(self.namespace, [client, f"--defaults-file={options}", "--batch",
                                                "--column-names", "--connect-timeout=5"])
        out = subprocess.run(argv, input=sql, capture_output=True, text=True,
                             timeout=ADMIN_SECONDS, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"admin session on {self.minion_id} failed: {out.stderr.strip()}")
        return parse_batch(out.stdout)

    def backups(self, where="inbox"):
        """Complete backups (``.db`` and ``.json``) in the inbox or the outgoing dir, oldest first."""
        directory = self.node.inbox_dir if where == "inbox" else self.node.backup_dir
        names = [p.stem for p in directory.glob("proxysql-ha-g*.json")
                 if p.with_suffix(".db").exists()]
        return sorted(names, key=generation)

    def events(self, tag=""):
        """Recorded events of this minion's bus whose tag starts with ``tag``."""
        return [e for e in events.read(self.events_file) if e["tag"].startswith(tag)]

    def transitions(self):
        """ucarp's script runs: ``[(epoch, "up"|"down")]``, from the wrappers' log."""
        try:
            lines = self.transitions_log.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        return [(float(line.split()[0]), line.split()[1]) for line in lines if line.strip()]

    def salt_call(self, function, *args, seconds=60, local=False):
        """``salt-call function args`` inside this host's namespace, bounded: ``(return, exit code)``."""
        return labsalt.salt_call(self.namespace, self.minion_config, function, *args,
                                 seconds=seconds, local=local)


def generation(name):
    """The generation number in a backup's name (``proxysql-ha-g0000000042-...``)."""
    return parse_name(name)[0]


def newest_after(host, since, where="inbox"):
    """The newest complete backup of ``host`` whose generation is above ``since``, or None."""
    names = [n for n in host.backups(where) if generation(n) > since]
    return names[-1] if names else None
