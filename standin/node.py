"""One proxysql-ha node on this machine: its directories, its ProxySQL stand-in, its pillar.

A node lives in one directory of its own::

    <root>/proxysql/        ProxySQL's datadir (proxysql.db)
    <root>/run/             the stand-in's pid file
    <root>/ha/outgoing/     backup_dir    (created by the module, not here)
    <root>/ha/incoming/     inbox_dir     (idem)
    <root>/ha/state/        state_dir     (idem)

ProxySQL is ``proxysql_standin.py`` run through the pillar's ``commands``. On one machine each
node's stand-in listens on a loopback port of its own (``traffic_port``, passed as the
stand-in's test-only ``--traffic`` and as the pillar's ``proxysql:traffic_address``, which the
module probes to know the configuration is loaded); with ``traffic_port=None`` (a node in a
network namespace of its own) the stand-in listens on its db's ``mysql-interfaces`` and the
module finds it with ``traffic_address: auto``. ``load_delay``, when set, is the stand-in's
``--load-delay``. Standard library only, and no pytest, so functional and end-to-end tests can
share it.
"""

import grp
import os
import pwd
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

try:
    from .proxysql_standin import accepts, free_loopback_port, wait_loaded
except ImportError:  # beside it, as a script
    from proxysql_standin import accepts, free_loopback_port, wait_loaded

STANDIN = Path(__file__).resolve().parent / "proxysql_standin.py"


def current_user_and_group():
    """Name of the user running the tests and of its primary group."""
    return pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name


@dataclass(frozen=True)
class Node:
    """Paths of one node; ``schema`` is the shared ``schema-<version>.sql`` its ProxySQL speaks."""

    name: str
    root: Path
    schema: Path
    traffic_port: int | None = field(default_factory=free_loopback_port)
    load_delay: float | None = None
    # The admin stand-in: None (none), "auto" (the db's admin-mysql_ifaces: in a namespace of its
    # own), or a port on 127.0.0.1 (several nodes on one machine; the pillar then names it).
    admin: int | str | None = None

    @property
    def admin_address(self):
        """``127.0.0.1:<port>`` of an admin port of ours, None otherwise."""
        return f"127.0.0.1:{self.admin}" if isinstance(self.admin, int) else None

    @property
    def traffic(self):
        """``127.0.0.1:<traffic_port>``, or None when the stand-in uses its db's mysql-interfaces."""
        return None if self.traffic_port is None else f"127.0.0.1:{self.traffic_port}"

    @property
    def datadir(self):
        return self.root / "proxysql"

    @property
    def live_db(self):
        return self.datadir / "proxysql.db"

    @property
    def pidfile(self):
        return self.root / "run" / "proxysql.pid"

    @property
    def backup_dir(self):
        return self.root / "ha" / "outgoing"

    @property
    def inbox_dir(self):
        return self.root / "ha" / "incoming"

    @property
    def state_dir(self):
        return self.root / "ha" / "state"

    def create(self):
        """Create what a ProxySQL package leaves behind: the datadir and the pid file's directory."""
        self.datadir.mkdir(parents=True, mode=0o750)
        self.pidfile.parent.mkdir(parents=True)
        return self

    def standin_argv(self, verb):
        """The stand-in's command line for ``verb`` (start, stop, status) on this node."""
        argv = [sys.executable, str(STANDIN), verb, "--datadir", str(self.datadir), "--pidfile", str(self.pidfile)]
        if verb != "start":
            return argv
        argv += ["--schema", str(self.schema)]
        if self.traffic:
            argv += ["--traffic", self.traffic]
        if self.load_delay is not None:
            argv += ["--load-delay", f"{self.load_delay:g}"]
        if self.admin is not None:
            argv += ["--admin", self.admin_address or self.admin]
        return argv

    def standin(self, verb, wait=True):
        """Run the stand-in's ``verb`` directly (not through the module); return the finished process.

        ``start`` returns at the pid file, before the stand-in has loaded its db (as ProxySQL's
        does); with ``wait`` this also waits (up to 15 s) until it has loaded and accepts on its
        traffic port, so that a test sees a settled node.
        """
        out = subprocess.run(self.standin_argv(verb), capture_output=True, text=True, timeout=30, check=False)
        if verb == "start" and wait and out.returncode == 0:
            self.wait_serving()
        return out

    def wait_serving(self, timeout=15):
        """Wait until the stand-in has loaded its db and accepts on its traffic port (when it has
        one of ours); TimeoutError if not."""
        deadline = time.monotonic() + timeout
        wait_loaded(self.datadir, timeout)
        address = self.traffic
        while address and not accepts(address):  # no traffic port: its namespace's, not ours
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.name}'s stand-in loaded but does not accept on {address}")
            time.sleep(0.05)

    def running(self):
        """Whether this node's ProxySQL stand-in runs."""
        return self.standin("status").returncode == 0

    def pillar(self, *, vip, peer_path, **overrides):
        """The ``proxysql_ha`` pillar of this node: role from ``vip`` on ``lo``, shipping into ``peer_path``.

        ``overrides`` replace top-level keys (``settle=0.1``, ``retention={"keep": 1}``, ...).
        """
        user, group = current_user_and_group()
        pillar = {
            "vhid": 1,
            "interface": "lo",
            "role_source": "vip",
            "vip": vip,
            "node_id": self.name,
            "datadir": str(self.datadir),
            "backup_dir": str(self.backup_dir),
            "inbox_dir": str(self.inbox_dir),
            "state_dir": str(self.state_dir),
            "user": user,
            "group": group,
            "service": {"timeout": 15},
            "commands": {verb: self.standin_argv(verb) for verb in ("start", "stop", "status")},
            "proxysql": {"traffic_address": self.traffic or "auto"},
            "pidfile": str(self.pidfile),  # the engine reads it to tell whether ProxySQL runs
            "peer": {"transport": "local", "path": str(peer_path)},
        }
        if self.admin_address:
            # The stand-in's default credentials (admin-admin_credentials admin:admin); only the
            # address differs from what the module would read from the live db.
            pillar["admin"] = {"enabled": True, "host": "127.0.0.1", "port": self.admin}
        elif self.admin is not None:  # auto: all of it from the live db, as ProxySQL takes it
            pillar["admin"] = {"enabled": True}
        pillar.update(overrides)
        return pillar
