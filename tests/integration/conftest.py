"""Nodes of a ProxySQL pair on this machine, for the integration tests.

A node is a directory holding ProxySQL's datadir (with a ``proxysql.db`` built from ProxySQL's
real schema), the backup dir, the inbox and the state dir, plus the ``proxysql_ha`` dict that
describes it. The dict goes into a minion configuration file (as a pillar would provide it):
``salt-call -c <confdir>`` and Salt's loader (:func:`node_loaders`) then run the module from
the repository's ``_modules`` and ``_utils`` on that node.

Roles come from ``role_source: vip`` on ``lo``: ``127.0.0.1`` makes a node MASTER, the absent
``127.0.0.77`` makes it BACKUP. ProxySQL is the stand-in daemon of ``tests/support``.
"""

import grp
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest
import salt._logging
import salt.config
import yaml
from saltfactories.utils.functional import Loaders

from tests.support import proxysql_db

# Importing salt installs a handler that buffers every warning until exit and then writes it
# to the stderr of import time, which is pytest's capture file, closed by then ("Logging
# error" at exit). pytest's own log capture sees the records anyway.
salt._logging.shutdown_temp_handler()

REPO = Path(__file__).resolve().parents[2]
RECEIVER = REPO / "proxysql_ha" / "files" / "proxysql-ha-receive"
STANDIN = REPO / "tests" / "support" / "proxysql_standin.py"
SALT_CALL = Path(sys.executable).with_name("salt-call")
MASTER_VIP = "127.0.0.1"
BACKUP_VIP = "127.0.0.77"


def current_user_and_group():
    """Names of the user running the tests and of its primary group."""
    entry = pwd.getpwuid(os.geteuid())
    return entry.pw_name, grp.getgrgid(entry.pw_gid).gr_name


def standin_commands(datadir, schema_file):
    """The ``commands`` pillar value that runs the ProxySQL stand-in on ``datadir``."""
    base = [sys.executable, str(STANDIN)]
    tail = ["--datadir", str(datadir), "--schema", str(schema_file)]
    return {verb: base + [verb] + tail for verb in ("start", "stop", "status")}


def stop_standin(pillar):
    """Stop a node's ProxySQL stand-in if it runs."""
    subprocess.run(pillar["commands"]["stop"], capture_output=True, timeout=30, check=False)


def make_node(root, node_id, vip, schema_file, peer, with_db=True):
    """
    Create a node's directories under ``root`` (and its ``proxysql.db`` unless ``with_db`` is
    false) and return its ``proxysql_ha`` dict.
    """
    root = Path(root)
    datadir = root / "datadir"
    datadir.mkdir(parents=True)
    if with_db:
        proxysql_db.build_db(datadir / "proxysql.db", proxysql_db.read_schema(schema_file),
                             seed=len(node_id))
    user, group = current_user_and_group()
    return {
        "vhid": 1,
        "interface": "lo",
        "role_source": "vip",
        "vip": vip,
        "node_id": node_id,
        "datadir": str(datadir),
        "backup_dir": str(root / "outgoing"),
        "inbox_dir": str(root / "incoming"),
        "state_dir": str(root / "state"),
        "user": user,
        "group": group,
        "settle": 0,
        "settle_timeout": 5,
        "lock_timeout": 10,
        "service": {"timeout": 10},
        "commands": standin_commands(datadir, schema_file),
        "peer": peer,
    }


def write_minion_config(confdir, minion_id, pillar):
    """
    Write ``<confdir>/minion``: a masterless minion rooted in ``confdir`` that loads the
    repository's modules, with ``pillar`` as its ``proxysql_ha`` key. Returns ``confdir``.
    """
    confdir = Path(confdir)
    (confdir / "file_roots").mkdir(parents=True, exist_ok=True)
    config = {
        "id": minion_id,
        "root_dir": str(confdir / "root"),
        "file_client": "local",
        "file_roots": {"base": [str(confdir / "file_roots")]},
        "module_dirs": [str(REPO / "_modules")],
        "utils_dirs": [str(REPO / "_utils")],
        "enable_fqdns_grains": False,
        "log_level_logfile": "warning",
        "proxysql_ha": pillar,
    }
    (confdir / "minion").write_text(yaml.safe_dump(config), encoding="utf-8")
    return confdir


def node_loaders(confdir):
    """Salt's loaders for the minion configured in ``<confdir>/minion``."""
    return Loaders(salt.config.minion_config(str(Path(confdir) / "minion")))


@pytest.fixture(scope="session")
def schema_file(shared_dir):
    """ProxySQL 3.0.1's schema file from the shared material."""
    return proxysql_db.schema_path(shared_dir, "3.0.1")
