"""The hook under floods and faults: a bounded spool where the newest transition per vhid wins, a full
spool (or its full file system) falling back to the direct path with exit 0, and one detached sender at
a time without a spool. Real files, real processes, a real full tmpfs (root only)."""

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.functional.test_enospc import fill, tmpfs  # noqa: F401  pylint: disable=unused-import
from tests.unit.test_hook import HOOK, event, hook_processes  # noqa: F401  pylint: disable=unused-import

BOUND = 30.0  # seconds: only catches a hang


def conf_for(tmp_path, **changes):
    conf = {"vhid": 9, "interface": "lo", "minion_config": str(tmp_path / "no-minion"),
            "reconcile_job": "proxysql_ha_reconcile", "ip_command": "/bin/true", "child_timeout": 2,
            "runtime_dir": str(tmp_path / "run")}
    conf.update(changes)
    path = tmp_path / "hook.json"
    path.write_text(json.dumps(conf))
    return path


def run(conf, *args, foreground=False):
    env = dict(os.environ, PROXYSQL_HA_HOOK_CONF=str(conf))
    env.pop("PROXYSQL_HA_HOOK_FOREGROUND", None)
    if foreground:
        env["PROXYSQL_HA_HOOK_FOREGROUND"] = "1"
    return subprocess.run([sys.executable, str(HOOK), *args], env=env, capture_output=True, text=True,
                          timeout=BOUND, check=False)


def full_conf(event, spool, **changes):  # pylint: disable=redefined-outer-name
    return dict(event.DEFAULTS, vhid=9, interface="lo", spool_dir=str(spool), **changes)


def test_a_flood_leaves_one_file_per_vhid_holding_the_newest(event, tmp_path):  # pylint: disable=redefined-outer-name
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    conf = full_conf(event, spool)
    for i in range(1000):
        assert event.spool({"state": ("MASTER", "BACKUP")[i % 2], "vhid": 9, "iface": "lo",
                            "source": "devd", "timestamp": i}, conf)

    assert sorted(p.name for p in spool.iterdir()) == ["carp-009.json"]
    assert json.loads((spool / "carp-009.json").read_text())["timestamp"] == 999


def test_concurrent_hooks_replace_atomically(tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    conf = conf_for(tmp_path, spool_dir=str(spool))
    with ThreadPoolExecutor(8) as pool:
        done = list(pool.map(lambda i: run(conf, ("MASTER", "BACKUP")[i % 2], "9@lo"), range(40)))

    assert all(d.returncode == 0 for d in done), [d.stderr for d in done if d.returncode]
    assert sorted(p.name for p in spool.iterdir()) == ["carp-009.json"]  # no temporary file left
    assert json.loads((spool / "carp-009.json").read_text())["state"] in ("MASTER", "BACKUP")


def test_a_full_spool_is_not_added_to(event, tmp_path, capsys):  # pylint: disable=redefined-outer-name
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    for vhid in range(1, 5):
        (spool / f"carp-{100 + vhid:03d}.json").write_text("{}")
    conf = full_conf(event, spool, spool_max=4)

    assert not event.spool({"state": "MASTER", "vhid": 9, "iface": "lo", "source": "devd", "timestamp": 1},
                           conf)
    assert len(list(spool.iterdir())) == 4
    assert "spool_max" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_spool_file_system_falls_back_to_the_direct_path_and_exits_0(tmp_path, tmpfs):  # noqa: F811
    spool = tmp_path / "spool"
    tmpfs(spool, "64k")
    fill(spool, 0)
    conf = conf_for(tmp_path, spool_dir=str(spool), child_timeout=1)

    done = run(conf, "MASTER", "9@lo", foreground=True)

    assert done.returncode == 0, done.stderr
    assert "cannot spool" in done.stderr and "No space left" in done.stderr
    assert "transition LOST" in done.stderr  # no minion here: said so, in syslog and on stderr
    assert sorted(p.name for p in spool.iterdir()) == ["filler"]  # no partial file left


def test_without_a_spool_one_detached_sender_runs_at_a_time(tmp_path):
    conf = conf_for(tmp_path)
    alive, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            alive.append(len(hook_processes(conf)))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        for i in range(30):
            assert run(conf, ("MASTER", "BACKUP")[i % 2], "9@lo").returncode == 0
        deadline = time.monotonic() + BOUND
        while hook_processes(conf) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        sampler.join()

    print(f"at most {max(alive)} hook processes alive at once over 30 calls")
    assert hook_processes(conf) == []
    # the caller, its short-lived intermediate fork, the one sender, and a child that finds the lock taken
    assert max(alive) <= 4
    pending = tmp_path / "run" / "pending.json"  # the newest, when the sender timed out before taking it
    assert not pending.exists() or json.loads(pending.read_text())["state"] in ("MASTER", "BACKUP")


def test_a_dead_engine_leaves_the_transition_to_the_direct_path(event, tmp_path):  # pylint: disable=redefined-outer-name
    """The engine's FIFO with no reader (the engine died): the hook takes its file back and tells the minion
    itself; with the engine reading, the transition stays spooled for it."""
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    os.mkfifo(spool / "wake", 0o600)
    conf = full_conf(event, spool)
    payload = {"state": "MASTER", "vhid": 9, "iface": "lo", "source": "devd", "timestamp": 1}

    assert not event.spool(payload, conf)
    assert sorted(p.name for p in spool.iterdir()) == ["wake"]

    engine = os.open(spool / "wake", os.O_RDWR | os.O_NONBLOCK)  # as the engine holds it
    try:
        assert event.spool(payload, conf)
        assert os.read(engine, 16) == b"!"
    finally:
        os.close(engine)
    assert sorted(p.name for p in spool.iterdir()) == ["carp-009.json", "wake"]
