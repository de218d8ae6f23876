"""One proxysql-ha node on this machine: its directories, its ProxySQL stand-in, its pillar.

A node lives in one directory of its own::

    <root>/proxysql/        ProxySQL's datadir (proxysql.db)
    <root>/run/             the stand-in's pid file
    <root>/ha/outgoing/     backup_dir    (created by the module, not here)
    <root>/ha/incoming/     inbox_dir     (idem)
    <root>/ha/state/        state_dir     (idem)

ProxySQL is ``proxysql_standin.py`` run through the pillar's ``commands``. Standard library
only, and no pytest, so functional and end-to-end tests can share it.
"""

import grp
import os
import pwd
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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
        return argv + ["--schema", str(self.schema)] if verb == "start" else argv

    def standin(self, verb):
        """Run the stand-in's ``verb`` directly (not through the module); return the finished process."""
        return subprocess.run(self.standin_argv(verb), capture_output=True, text=True, timeout=30, check=False)

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
            "pidfile": str(self.pidfile),  # the engine reads it to tell whether ProxySQL runs
            "peer": {"transport": "local", "path": str(peer_path)},
        }
        pillar.update(overrides)
        return pillar
