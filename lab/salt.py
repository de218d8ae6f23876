"""The lab's Salt: one master and its minions, each with its own config dir and root_dir.

Network namespaces do not separate files: Salt's IPC sockets, pid files, keys and caches are
paths, so every daemon gets its own ``root_dir`` and config dir (the minion persists its
schedule into ``<config dir>/minion.d``). Minion ids are explicit and the master is given by
address: all namespaces share one hostname, and name lookups fail in a fresh namespace.
"""

import json
import subprocess
import sys
from pathlib import Path

import yaml

from lab import netns

BIN = Path(sys.executable).parent
SALT_MASTER = BIN / "salt-master"
SALT_MINION = BIN / "salt-minion"
SALT = BIN / "salt"
SALT_CALL = BIN / "salt-call"
REACTOR = {"proxysql_ha/carp/*": ["salt://reactor/proxysql_ha_carp.sls"]}
MINION_READY = "Minion is ready to receive requests!"
GATHER_JOB_TIMEOUT = 5  # seconds the salt CLI asks a silent minion whether it still works


def write_yaml(path, data):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, default_flow_style=False), encoding="utf-8")
    return path


def master_config(root, address, file_root, pillar_root):
    """Write ``<root>/etc/master``: the master on ``address`` serving ``file_root``; return the dir."""
    root = Path(root)
    write_yaml(root / "etc" / "master", {
        "interface": address,
        "root_dir": str(root),
        "pki_dir": str(root / "pki"),
        "cachedir": str(root / "cache"),
        "sock_dir": str(root / "sock"),
        "pidfile": str(root / "master.pid"),
        "log_file": str(root / "master.log"),
        "log_level_logfile": "info",
        "auto_accept": True,
        "worker_threads": 3,
        "gather_job_timeout": GATHER_JOB_TIMEOUT,
        "file_roots": {"base": [str(file_root)]},
        "pillar_roots": {"base": [str(pillar_root)]},
        "reactor": [REACTOR],
    })
    return root / "etc"


def minion_config(root, minion_id, master, file_root, pillar_root, engine):
    """
    Write ``<root>/etc/minion`` and return its path: the minion ``minion_id`` of ``master``,
    loading the extension from ``file_root`` (the master's copy), running the proxysql_ha
    ``engine`` (its arguments). ``file_roots``/``pillar_roots`` serve ``salt-call --local``.
    """
    root = Path(root)
    return write_yaml(root / "etc" / "minion", {
        "id": minion_id,
        "master": master,
        "root_dir": str(root),
        "pki_dir": str(root / "pki"),
        "cachedir": str(root / "cache"),
        "sock_dir": str(root / "sock"),
        "pidfile": str(root / "minion.pid"),
        "log_file": str(root / "minion.log"),
        "log_level_logfile": "info",
        "enable_fqdns_grains": False,
        "acceptance_wait_time": 1,
        "random_reauth_delay": 0,
        "module_dirs": [str(Path(file_root) / "_modules")],
        "utils_dirs": [str(Path(file_root) / "_utils")],
        "states_dirs": [str(Path(file_root) / "_states")],
        "engines_dirs": [str(Path(file_root) / "_engines")],
        "engines": [{"proxysql_ha": engine}],
        "file_roots": {"base": [str(file_root)]},
        "pillar_roots": {"base": [str(pillar_root)]},
    })


def pillar(pillar_root, minion_pillars):
    """Write a pillar tree giving each minion its own ``proxysql_ha`` key: ``{id: dict}``."""
    root = Path(pillar_root)
    top = {"base": {}}
    for minion_id, value in minion_pillars.items():
        name = minion_id.replace("-", "_")
        top["base"][minion_id] = [name]
        write_yaml(root / f"{name}.sls", {"proxysql_ha": value})
    write_yaml(root / "top.sls", top)


def master_argv(config_dir):
    return [SALT_MASTER, "-c", config_dir, "-l", "quiet"]


def minion_argv(config_dir):
    return [SALT_MINION, "-c", config_dir, "-l", "quiet"]


def run_json(namespace, argv, seconds):
    """
    Run a Salt CLI command inside ``namespace``, bounded by ``timeout -k 1 seconds`` (salt-call
    with its master down blocks for minutes and answers SIGTERM late). Returns
    ``(parsed JSON or None, exit code, output)``.
    """
    bounded = [netns.which("timeout"), "-k", "1", str(seconds)] + [str(a) for a in argv]
    out = subprocess.run(netns.exec_argv(namespace, bounded), capture_output=True,
                               text=True, timeout=seconds + 5, check=False)
    try:
        data = json.loads(out.stdout)
    except ValueError:
        data = None
    return data, out.returncode, out.stdout + out.stderr


def salt(namespace, config_dir, target, function, *args, seconds=60):
    """
    ``salt -L target function args`` from the master's namespace: ``{minion: return}``. Salt's
    own timeouts leave room within ``seconds``: a minion that does not answer is left out.
    """
    argv = [SALT, "-c", config_dir, "--out=json", "--static",
            f"--timeout={max(2, seconds - GATHER_JOB_TIMEOUT - 5)}", "-L",
            ",".join(target) if isinstance(target, (list, tuple)) else target, function, *args]
    data, code, output = run_json(namespace, argv, seconds)
    if not isinstance(data, dict):
        raise RuntimeError(f"salt {function} failed (exit {code}): {output[-2000:]}")
    return data


def salt_call(namespace, config_path, function, *args, seconds=60, local=False):
    """``salt-call function args`` on a minion: ``(return, exit code)``."""
    argv = [SALT_CALL, "-c", Path(config_path).parent, "--out=json", "-l", "quiet"]
    argv += ["--local"] if local else []
    data, code, output = run_json(namespace, argv + [function, *args], seconds)
    if not isinstance(data, dict) or "local" not in data:
        raise RuntimeError(f"salt-call {function} failed (exit {code}): {output[-2000:]}")
    return data["local"], code


def logged_since(path, offset, text):
    """Whether ``text`` appears in the file ``path`` after its first ``offset`` bytes."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return text.encode() in handle.read()
    except FileNotFoundError:
        return False


def size(path):
    """Size of ``path`` in bytes, 0 when it does not exist (an offset for :func:`logged_since`)."""
    try:
        return Path(path).stat().st_size
    except FileNotFoundError:
        return 0
