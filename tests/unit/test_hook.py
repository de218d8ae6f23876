"""The CARP hook ``proxysql-ha-event``, run as devd, keepalived and ucarp run it: a process.

No salt-minion runs here: the hook must still answer at once (its child sends the events,
detached), refuse anything that is not this node's transition with exit 2 and the reason on
stderr, and, for ucarp, move the VIP (tested in a network namespace of its own).
"""

import importlib.machinery
import importlib.util
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

HOOK = Path(__file__).resolve().parents[2] / "proxysql_ha" / "files" / "proxysql-ha-event"
BOUND = 5.0  # seconds: far above what a call takes; only catches a hang
VIP = "192.0.2.77"


@pytest.fixture(scope="module")
def durations():
    """The duration of every detached hook call in this module; the slowest is printed at the end (``-s``)."""
    seen = []
    yield seen
    if seen:
        print(f"\nproxysql-ha-event: slowest of {len(seen)} calls took {max(seen):.3f} s")


@pytest.fixture
def minion_config(tmp_path):
    """A minion configuration whose sock_dir (under its root_dir) no minion listens on."""
    path = tmp_path / "minion"
    path.write_text(json.dumps({"id": "hook-test", "root_dir": str(tmp_path / "root"), "file_client": "local"}))
    return path


@pytest.fixture
def write_conf(tmp_path, minion_config):
    """``write_conf(**changes)``: hook.json for vhid 9 on lo, with ``changes``; its path.

    ``ip_command`` is ``true`` so no call touches this host's lo (the VIP is tested in a
    namespace), and the detached child gives up after 1 s instead of the default 10.
    """

    def write(**changes):
        conf = {"vhid": 9, "interface": "lo", "minion_config": str(minion_config),
                "reconcile_job": "proxysql_ha_reconcile", "prefix": 32,
                "ip_command": shutil.which("true"), "child_timeout": 1,
                "runtime_dir": str(tmp_path / "run")}  # this test's own single-sender lock
        conf.update(changes)
        path = tmp_path / "hook.json"
        path.write_text(json.dumps(conf))
        return path

    return write


@pytest.fixture
def run_hook(write_conf, durations):
    """``run_hook(args, conf=None, foreground=False, prefix=())``: the finished process and its duration."""

    def run(args, conf=None, foreground=False, prefix=()):
        env = dict(os.environ, PROXYSQL_HA_HOOK_CONF=str(conf or write_conf()))
        env.pop("PROXYSQL_HA_HOOK_FOREGROUND", None)
        if foreground:
            env["PROXYSQL_HA_HOOK_FOREGROUND"] = "1"
        begin = time.monotonic()
        done = subprocess.run([*prefix, sys.executable, str(HOOK), *args], env=env, capture_output=True,
                              text=True, timeout=60, check=False)
        elapsed = time.monotonic() - begin
        if not foreground:
            durations.append(elapsed)
        return done, elapsed

    return run


def hook_processes(conf):
    """Pids of the processes started with ``PROXYSQL_HA_HOOK_CONF=conf`` (the detached child)."""
    marker = f"PROXYSQL_HA_HOOK_CONF={conf}".encode() + b"\0"
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "environ").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue  # ended meanwhile, or not ours to read
    return pids


ACCEPTED = [
    pytest.param(["MASTER", "9@lo"], id="devd-master"),
    pytest.param(["BACKUP", "9@lo"], id="devd-backup"),
    pytest.param(["INIT", "9@lo"], id="devd-init"),
    *(pytest.param([kind, "VI_1", state, "100"], id=f"keepalived-{kind.lower()}-{state.lower()}")
      for kind in ("INSTANCE", "GROUP") for state in ("MASTER", "BACKUP", "FAULT", "STOP")),
    pytest.param(["--ucarp-up", "lo", VIP], id="ucarp-up"),
    pytest.param(["--ucarp-down", "lo", VIP], id="ucarp-down"),
    pytest.param(["--ucarp-up", "lo", VIP, "xparam"], id="ucarp-up-xparam"),
    pytest.param(["--ucarp-down", "lo", VIP, "xparam"], id="ucarp-down-xparam"),
]

REFUSED_ARGS = [
    pytest.param(["MASTER", "8@lo"], "vhid 8 is not this node's (9)", id="other-vhid"),
    pytest.param(["MASTER", "0@lo"], "vhid 0 is not this node's", id="vhid-0"),
    pytest.param(["MASTER", "256@lo"], "vhid 256 is not this node's", id="vhid-256"),
    pytest.param(["MASTER", "999@lo"], "vhid 999 is not this node's", id="vhid-999"),
    pytest.param(["MASTER", "9@eth0"], "interface 'eth0' is not this node's (lo)", id="other-interface"),
    pytest.param(["MASTER", "9@lo;reboot"], "interface 'lo;reboot' is not this node's", id="devd-interface-shell"),
    pytest.param(["--ucarp-up", "lo$(reboot)", VIP], "interface 'lo$(reboot)' is not", id="ucarp-interface-shell"),
    pytest.param(["--ucarp-up", "eth0", VIP], "interface 'eth0' is not this node's", id="ucarp-other-interface"),
    pytest.param(["master", "9@lo"], "state must be one of MASTER, BACKUP, INIT, got 'master'", id="lowercase-state"),
    pytest.param(["FAULT", "9@lo"], "state must be one of MASTER, BACKUP, INIT, got 'FAULT'", id="devd-fault"),
    pytest.param(["INSTANCE", "VI_1", "UP", "100"], "got 'UP'", id="keepalived-bad-state"),
    pytest.param(["INSTANCE", "VI 1;x", "MASTER", "100"], "bad instance name", id="keepalived-bad-name"),
    pytest.param(["INSTANCE", "VI_1", "MASTER", "high"], "or priority", id="keepalived-bad-priority"),
    pytest.param(["MASTER", "lo"], "subsystem must be <vhid>@<iface>, got 'lo'", id="devd-no-vhid"),
    pytest.param([], "unrecognised arguments (0)", id="no-arguments"),
    pytest.param(["MASTER"], "unrecognised arguments (1)", id="devd-missing-subsystem"),
    pytest.param(["MASTER", "9@lo", "extra"], "unrecognised arguments (3)", id="devd-extra-argument"),
    pytest.param(["INSTANCE", "VI_1", "MASTER"], "unrecognised arguments (3)", id="keepalived-missing-priority"),
    pytest.param(["INSTANCE", "VI_1", "MASTER", "100", "x"], "unrecognised arguments (5)", id="keepalived-extra"),
    pytest.param(["--ucarp-up", "lo"], "expected <iface> <vip> [xparam], got 1", id="ucarp-missing-vip"),
    pytest.param(["--ucarp-down", "lo", VIP, "x", "y"], "got 4 arguments", id="ucarp-extra-argument"),
    pytest.param(["--ucarp-up", "lo", "192.0.2.300"], "bad virtual IP '192.0.2.300'", id="ucarp-bad-ip"),
    pytest.param(["--ucarp-up", "lo", f"{VIP};reboot"], "bad virtual IP", id="ucarp-ip-shell"),
]


@pytest.mark.parametrize("args", ACCEPTED)
def test_hook_accepts_each_callers_form_and_returns_at_once_without_a_minion(run_hook, args):
    done, elapsed = run_hook(args)

    assert (done.returncode, done.stderr) == (0, "")
    assert elapsed < BOUND


@pytest.mark.parametrize("args, reason", REFUSED_ARGS)
def test_hook_refuses_arguments_that_are_not_this_nodes_transition(run_hook, args, reason):
    done, elapsed = run_hook(args)

    assert done.returncode == 2
    assert "refused" in done.stderr and reason in done.stderr
    assert elapsed < BOUND


@pytest.mark.parametrize("conf, reason", [
    pytest.param({"vhid": 0}, "vhid must be 1-255, not 0", id="vhid-0"),
    pytest.param({"vhid": 256}, "vhid must be 1-255, not 256", id="vhid-256"),
    pytest.param({"vhid": "9"}, "vhid must be 1-255, not '9'", id="vhid-text"),
    pytest.param({"vhid": True}, "vhid must be 1-255, not True", id="vhid-bool"),
    pytest.param({"interface": "lo;reboot"}, "bad interface 'lo;reboot'", id="interface-shell"),
])
def test_hook_refuses_to_run_with_a_bad_hook_json(run_hook, write_conf, conf, reason):
    done, elapsed = run_hook(["MASTER", "9@lo"], conf=write_conf(**conf))

    assert done.returncode == 2
    assert reason in done.stderr
    assert elapsed < BOUND


def test_hook_refuses_to_run_without_hook_json(run_hook, tmp_path):
    missing = tmp_path / "absent" / "hook.json"

    done, _ = run_hook(["MASTER", "9@lo"], conf=missing)

    assert done.returncode == 2
    assert f"no hook configuration at {missing}" in done.stderr


def test_hook_refuses_a_hook_json_that_is_not_json(run_hook, tmp_path):
    conf = tmp_path / "hook.json"
    conf.write_text("vhid: 9\n")

    done, _ = run_hook(["MASTER", "9@lo"], conf=conf)

    assert done.returncode == 2
    assert "refused" in done.stderr


def test_detached_child_gives_up_within_child_timeout_without_a_minion(run_hook, write_conf):
    conf = write_conf(child_timeout=1)

    done, elapsed = run_hook(["MASTER", "9@lo"], conf=conf)
    deadline = time.monotonic() + 1 + BOUND
    while hook_processes(conf) and time.monotonic() < deadline:
        time.sleep(0.1)

    assert (done.returncode, done.stderr) == (0, "") and elapsed < BOUND
    assert hook_processes(conf) == []


def test_foreground_send_without_a_minion_ends_within_child_timeout_and_says_not_sent(run_hook, write_conf):
    child_timeout = 10  # the default
    done, elapsed = run_hook(["BACKUP", "9@lo"], conf=write_conf(child_timeout=child_timeout), foreground=True)

    assert done.returncode == 0
    assert "proxysql_ha/carp/BACKUP from devd" in done.stderr and "event NOT sent" in done.stderr
    assert elapsed < child_timeout


# ---- ucarp's VIP, in a network namespace of the test's own ----------------------------------


@pytest.fixture
def netns():
    """A new network namespace with lo up: its name. Deleted at teardown."""
    ip = shutil.which("ip")
    if os.geteuid() != 0 or ip is None:
        pytest.skip("ucarp's VIP is tested in a network namespace: needs root and iproute2's ip")
    name = f"pha-test-{secrets.token_hex(4)}"
    added = subprocess.run([ip, "netns", "add", name], capture_output=True, text=True, check=False)
    if added.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {added.stderr.strip()}")
    try:
        subprocess.run([ip, "-n", name, "link", "set", "lo", "up"], check=True, timeout=10)
        yield name
    finally:
        subprocess.run([ip, "netns", "delete", name], check=False, timeout=10)


@pytest.fixture
def in_netns(netns, run_hook, write_conf):
    """``in_netns(args)``: the hook run inside ``netns`` with the real ``ip``; the finished process."""
    ip = shutil.which("ip")
    conf = write_conf(ip_command=ip)

    def run(args):
        return run_hook(args, conf=conf, prefix=(ip, "netns", "exec", netns))[0]

    return run


def addresses(netns):
    out = subprocess.run(["ip", "-n", netns, "-o", "addr", "show", "dev", "lo"], capture_output=True,
                         text=True, check=True, timeout=10)
    return out.stdout


def test_ucarp_up_adds_the_vip_and_ucarp_down_removes_it(in_netns, netns):
    up = in_netns(["--ucarp-up", "lo", VIP])
    after_up = addresses(netns)
    down = in_netns(["--ucarp-down", "lo", VIP])

    assert (up.returncode, up.stderr) == (0, "")
    assert f"inet {VIP}/32" in after_up
    assert (down.returncode, down.stderr) == (0, "")
    assert VIP not in addresses(netns)


def test_ucarp_up_twice_keeps_one_vip_and_stays_quiet(in_netns, netns):
    in_netns(["--ucarp-up", "lo", VIP])

    again = in_netns(["--ucarp-up", "lo", VIP])

    assert (again.returncode, again.stderr) == (0, "")
    assert addresses(netns).count(f"inet {VIP}/32") == 1


def test_refused_ucarp_call_leaves_the_vip_alone(in_netns, netns):
    done = in_netns(["--ucarp-up", "lo", VIP, "x", "y"])

    assert done.returncode == 2
    assert VIP not in addresses(netns)


# ---- the pure functions, imported from the hook file -------------------------------------------


@pytest.fixture(scope="module")
def event():
    """The hook file as a module (it has no .py suffix, so through a SourceFileLoader)."""
    loader = importlib.machinery.SourceFileLoader("proxysql_ha_event_hook", str(HOOK))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


CONF = {"vhid": 9, "interface": "em0"}


@pytest.mark.parametrize("args, expected", [
    (["MASTER", "9@em0"], ("MASTER", "devd", None)),
    (["INIT", "9@em0"], ("INIT", "devd", None)),
    (["GROUP", "G1", "BACKUP", "50"], ("BACKUP", "keepalived", None)),
    (["--ucarp-up", "em0", "192.0.2.7"], ("MASTER", "ucarp", "192.0.2.7")),
    (["--ucarp-down", "em0", "2001:DB8::0001", "x"], ("BACKUP", "ucarp", "2001:db8::1")),
])
def test_parse_names_the_state_the_caller_and_the_normalised_vip(event, args, expected):
    assert event.parse(["proxysql-ha-event", *args], CONF) == expected


@pytest.mark.parametrize("state", ["FAULT", "STOP"])
def test_keepalived_fault_and_stop_mean_init(event, state):
    assert event.check_state(state, tuple(event.STATES)) == "INIT"
    assert event.parse(["proxysql-ha-event", "INSTANCE", "VI_1", state, "100"], CONF)[0] == "INIT"


def test_check_state_refuses_a_state_outside_the_callers_set(event):
    with pytest.raises(event.Refused, match="got 'FAULT'"):
        event.check_state("FAULT", ("MASTER", "BACKUP", "INIT"))
