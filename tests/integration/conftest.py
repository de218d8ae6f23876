"""Nodes of a ProxySQL pair on this machine, for the integration tests.

A node is a directory holding ProxySQL's datadir (with a ``proxysql.db`` built from ProxySQL's
real schema), the backup dir, the inbox and the state dir, plus the ``proxysql_ha`` dict that
describes it. The dict goes into a minion configuration file (as a pillar would provide it):
``salt-call -c <confdir>`` and Salt's loader (:func:`node_loaders`) then run the module from
the repository's ``_modules`` and ``_utils`` on that node.

Roles come from ``role_source: vip`` on ``lo``: ``127.0.0.1`` makes a node MASTER, the absent
``127.0.0.77`` makes it BACKUP. ProxySQL is the stand-in daemon of ``standin/``.

The daemon tests (``@pytest.mark.integration``) share, per module, a salt-master serving one
clean copy of the repository (``checkout``) with the CARP reactor and the pillars of the
module's ``ha_pillars`` fixture (``ha_master``), and its minion ``node-b`` (``node_b``). There
the CARP hook moves 127.0.0.77 on ``lo`` for real: it is removed before and after each module.
"""

import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import salt._logging
import salt.config
import yaml
from saltfactories.utils import random_string
from saltfactories.utils.functional import Loaders

from standin import proxysql_db
from standin.proxysql_standin import free_loopback_port
from standin.checkout import clean_copy

# Importing salt installs a handler that buffers every warning until exit and then writes it
# to the stderr of import time, which is pytest's capture file, closed by then ("Logging
# error" at exit). pytest's own log capture sees the records anyway.
salt._logging.shutdown_temp_handler()

REPO = Path(__file__).resolve().parents[2]
RECEIVER = REPO / "proxysql_ha" / "files" / "proxysql-ha-receive"
STANDIN = REPO / "standin" / "proxysql_standin.py"
RECORDER = REPO / "tests" / "support" / "recorder.py"
HOOK = REPO / "proxysql_ha" / "files" / "proxysql-ha-event"
SALT_CALL = Path(sys.executable).with_name("salt-call")
MASTER_VIP = "127.0.0.1"
BACKUP_VIP = "127.0.0.77"


def current_user_and_group():
    """Names of the user running the tests and of its primary group."""
    entry = pwd.getpwuid(os.geteuid())
    return entry.pw_name, grp.getgrgid(entry.pw_gid).gr_name


def standin_commands(datadir, schema_file, traffic):
    """The ``commands`` pillar value that runs the ProxySQL stand-in on ``datadir``, listening
    on ``traffic`` (a loopback ``host:port`` of its own: nodes share this machine)."""
    base = [sys.executable, str(STANDIN)]
    tail = ["--datadir", str(datadir), "--schema", str(schema_file)]
    commands = {verb: base + [verb] + tail for verb in ("start", "stop", "status")}
    commands["start"] += ["--traffic", traffic]
    return commands


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
    traffic = f"127.0.0.1:{free_loopback_port()}"
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
        "commands": standin_commands(datadir, schema_file, traffic),
        "proxysql": {"traffic_address": traffic},
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
def schema_file(schema_path_of):
    """ProxySQL 3.0.1's schema file (PROXYSQL_SCHEMA, else the shared material's)."""
    return schema_path_of("3.0.1")


# ---- the repository as a master serves it --------------------------------------------------


@pytest.fixture(scope="session")
def checkout(tmp_path_factory):
    """
    One clean copy of the repository for the session: the masters' file_roots (never the live
    tree, whose .venv makes sync_all take a minute) and the source of the wheel build.
    """
    return clean_copy(tmp_path_factory.mktemp("checkout") / "proxysql-ha")


# ---- real daemons: a master with the CARP reactor, a minion per node -----------------------

VIP = BACKUP_VIP  # the daemon tests' virtual IP: absent from lo at first, moved by the hook
VHID = 9
NEEDS_ROOT = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip"),
    reason="needs root and iproute2: the CARP hook adds and removes 127.0.0.77 on lo",
)


def remove_vip():
    """Take the test VIP off lo (nothing happens when it is not there)."""
    subprocess.run([shutil.which("ip"), "addr", "del", f"{VIP}/32", "dev", "lo"],
                   capture_output=True, timeout=10, check=False)


@pytest.fixture(scope="module")
def vip_absent():
    """The VIP is off lo when the module starts, and again when it ends, whatever happened."""
    remove_vip()
    yield VIP
    remove_vip()


def recorded_commands(commands, log, lock):
    """
    The stand-in's ``commands`` with start and stop run through ``tests/support/recorder.py``,
    which appends to ``log`` when each ran and whether ``lock`` was held meanwhile.
    """
    recorded = dict(commands)
    for verb in ("start", "stop"):
        recorded[verb] = [sys.executable, str(RECORDER), "--log", str(log), "--lock", str(lock),
                          "--name", verb, "--", *commands[verb]]
    return recorded


def daemon_node(root, node_id, schema_file, **overrides):
    """
    The ``proxysql_ha`` pillar of a node served by the daemons: vhid 9 on lo, role from the
    VIP, ProxySQL (the stand-in) run through the recorder into ``<root>/commands.log``.
    """
    pillar = make_node(root, node_id, VIP, schema_file,
                       {"transport": "local", "path": str(Path(root) / "peer-inbox")})
    pillar["vhid"] = VHID
    pillar["commands"] = recorded_commands(pillar["commands"], Path(root) / "commands.log",
                                           Path(pillar["state_dir"]) / "lock")
    pillar.update(overrides)
    return pillar


def write_pillar_tree(directory, pillars):
    """pillar_roots giving each minion of ``pillars`` (``{id: proxysql_ha dict}``) its own."""
    directory = Path(directory)
    top = {"base": {}}
    for minion_id, pillar in pillars.items():
        name = "ha_" + minion_id.replace("-", "_")
        top["base"][minion_id] = [name]
        (directory / f"{name}.sls").write_text(json.dumps({"proxysql_ha": pillar}))
    (directory / "top.sls").write_text(json.dumps(top))
    return directory


@pytest.fixture(scope="module")
def ha_master(salt_factories, checkout, ha_pillars, tmp_path_factory):
    """
    A salt-master serving the clean checkout, reacting to ``proxysql_ha/carp/*`` with the
    repository's reactor, with the pillars of the module's ``ha_pillars`` fixture.
    """
    pillar_dir = write_pillar_tree(tmp_path_factory.mktemp("pillar"), ha_pillars)
    master = salt_factories.salt_master_daemon(random_string("master-"), overrides={
        "file_roots": {"base": [str(checkout)]},
        "pillar_roots": {"base": [str(pillar_dir)]},
        "reactor": [{"proxysql_ha/carp/*": [str(checkout / "reactor" / "proxysql_ha_carp.sls")]}],
    })
    with master.started():
        yield master


@pytest.fixture(scope="module")
def node_b(ha_master, vip_absent):
    """
    The salt-minion ``node-b`` of ``ha_master``, with the extension synced from the master's
    file_roots: BACKUP at first (the VIP is not on lo).
    """
    minion = ha_master.salt_minion_daemon("node-b", overrides={"enable_fqdns_grains": False})
    with minion.started():
        synced = minion.salt_call_cli(timeout=120).run("saltutil.sync_all")
        if synced.returncode != 0:
            raise RuntimeError(f"saltutil.sync_all failed on node-b: {synced.stderr}")
        yield minion


def hook_conf(path, minion):
    """Write the CARP hook's configuration for ``minion`` at ``path``; return ``path``."""
    Path(path).write_text(json.dumps({
        "vhid": VHID, "interface": "lo", "minion_config": minion.config["conf_file"],
        "reconcile_job": "proxysql_ha_reconcile", "prefix": 32, "ip_command": shutil.which("ip"),
        "runtime_dir": str(Path(path).parent / "run"),  # this node's own single-sender lock
    }))
    return Path(path)


def run_hook(conf, *args, hook=None, foreground=False):
    """
    Run the CARP hook (the repository's, or the ``hook`` command) with ``args`` as devd, ucarp
    or keepalived would; return the finished process and how long it took, in ms.
    ``foreground`` makes the hook send its events before it returns.
    """
    argv = [str(hook)] if hook else [sys.executable, str(HOOK)]
    env = dict(os.environ, PROXYSQL_HA_HOOK_CONF=str(conf))
    if foreground:
        env["PROXYSQL_HA_HOOK_FOREGROUND"] = "1"
    begin = time.monotonic()
    out = subprocess.run(argv + list(args), env=env, capture_output=True, text=True, timeout=30,
                         check=False)
    return out, round((time.monotonic() - begin) * 1000, 1)


def wait_until(predicate, timeout, step=0.1):
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(step)
