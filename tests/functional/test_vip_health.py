"""The VIP follows ProxySQL: a MASTER whose ProxySQL cannot start gives up the VIP, and takes it back.

A's ProxySQL start is broken by its pillar ``commands:start`` (``/bin/false``). keepalived's way is
the track file the module writes (keepalived itself is exercised in the lab); ucarp's is SIGUSR2 to
the pid in its pid file, here a real process that records the signals it gets.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

BROKEN_START = ["/bin/false"]


@pytest.fixture
def track_file(pair):
    return pair.root / "keepalived-proxysql-down"


def with_health(node, start=None, **health):
    commands = {verb: node.standin_argv(verb) for verb in ("start", "stop", "status")}
    if start is not None:
        commands["start"] = start
    node.configure(commands=commands, health=health)


def test_a_master_whose_proxysql_cannot_start_gives_up_the_vip_at_once_and_says_so(pair, track_file):
    a = pair.a
    with_health(a, start=BROKEN_START, carp="keepalived", keepalived_track_file=str(track_file), grace=1)

    report = a.ha.reconcile()["report"]

    assert report["vip"]["released"] is True and report["vip"]["carp"] == "keepalived"
    assert track_file.read_text() == "1\n"
    assert any("ProxySQL start command /bin/false failed (exit 1)" in e for e in report["errors"]), report["errors"]
    status = a.ha.status()
    assert status["vip"]["released"] is True
    assert {"vip_released", "master_proxysql_down"} <= {p["kind"] for p in status["problems"]}


def test_a_released_master_takes_the_vip_back_only_when_proxysql_runs_and_the_hold_down_is_over(pair, track_file):
    a = pair.a
    health = {"carp": "keepalived", "keepalived_track_file": str(track_file), "grace": 1}
    with_health(a, start=BROKEN_START, hold_down=3600, **health)
    a.ha.reconcile()
    still = a.ha.reconcile()  # still broken: stays released
    assert track_file.read_text() == "1\n" and still["report"]["vip"]["again"] is True

    with_health(a, hold_down=3600, **health)  # ProxySQL can start again
    started = a.ha.reconcile()
    held = a.ha.reconcile(test=True)
    assert a.running() and started["report"]["started"] is True
    assert held["actions"] == [] and track_file.read_text() == "1\n"  # hold-down: not yet

    with_health(a, hold_down=0, **health)
    reclaimed = a.ha.reconcile()

    assert reclaimed["actions"] == ["reclaim the VIP: ProxySQL runs again"]
    assert reclaimed["report"]["vip"] == {"reclaimed": True, "carp": "keepalived"}
    assert track_file.read_text() == "0\n"
    assert a.ha.status()["vip"]["released"] is False
    assert a.ha.reconcile()["actions"] == []


def test_a_node_that_gave_up_the_vip_probes_proxysql_as_backup_and_reclaims_when_it_runs(pair, track_file):
    a = pair.a
    health = {"carp": "keepalived", "keepalived_track_file": str(track_file), "grace": 1, "hold_down": 0}
    with_health(a, start=BROKEN_START, **health)
    a.ha.reconcile()
    pair.fail_over()  # keepalived moved the VIP to B
    with_health(a, start=BROKEN_START, **health)

    broken = a.ha.reconcile()["report"]
    assert broken["probe"].startswith("ProxySQL still does not run")
    assert track_file.read_text() == "1\n" and "vip" not in broken

    with_health(a, **health)
    fixed = a.ha.reconcile()["report"]

    assert fixed["probe"] == "ProxySQL runs again"
    assert fixed["vip"]["reclaimed"] is True and track_file.read_text() == "0\n"
    assert fixed["stopped"] is True and not a.running()  # a BACKUP: stopped; CARP decides who is MASTER


def test_with_the_health_rule_off_the_vip_is_kept(pair, track_file):
    a = pair.a
    with_health(a, start=BROKEN_START, enabled=False, carp="keepalived", keepalived_track_file=str(track_file))

    report = a.ha.reconcile()["report"]

    assert "vip" not in report and not track_file.exists()
    assert report["errors"]


@pytest.fixture
def fake_ucarp(pair):
    """A process standing where ucarp would: it writes each SIGUSR2 it gets to a file."""
    got = pair.root / "ucarp-signals"
    code = (
        "import signal, sys, time\n"
        "def on(sig, frame):\n"
        "    open(sys.argv[1], 'a').write('USR2\\n')\n"
        "signal.signal(signal.SIGUSR2, on)\n"
        "open(sys.argv[2], 'w').write('ready')\n"
        "deadline = time.monotonic() + 120\n"
        "while time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n"
    )
    ready = pair.root / "ucarp-ready"
    proc = subprocess.Popen([sys.executable, "-c", code, str(got), str(ready)])
    for _ in range(200):
        if ready.exists():
            break
        time.sleep(0.05)
    pidfile = pair.root / "ucarp.pid"
    pidfile.write_text(f"{proc.pid}\n")
    try:
        yield pidfile, got
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def test_ucarp_gets_sigusr2_each_time_it_holds_the_vip_while_proxysql_is_down(pair, fake_ucarp):
    a = pair.a
    pidfile, got = fake_ucarp
    with_health(a, start=BROKEN_START, carp="ucarp", ucarp_pidfile=str(pidfile), grace=1, hold_down=3600)

    first = a.ha.reconcile()["report"]
    second = a.ha.reconcile()["report"]  # ucarp took the VIP back (the peer fell silent): again

    assert first["vip"]["ran"] == ["kill", "-USR2", str(int(pidfile.read_text()))]
    assert (first["vip"]["released"], second["vip"]["released"], second["vip"]["again"]) == (True, True, True)
    for _ in range(100):
        if got.exists() and got.read_text().count("USR2") == 2:
            break
        time.sleep(0.05)
    assert got.read_text() == "USR2\nUSR2\n"


def test_an_unreadable_ucarp_pid_file_is_an_error_naming_it(pair):
    a = pair.a
    missing = pair.root / "no-such-ucarp.pid"
    with_health(a, start=BROKEN_START, carp="ucarp", ucarp_pidfile=str(missing), grace=1)

    report = a.ha.reconcile()["report"]

    assert report["vip"]["released"] is False
    assert any(f"cannot read ucarp's pid file {missing}" in e for e in report["errors"]), report["errors"]


def process_state(pid, wanted=None):
    """The state letter of ``/proc/<pid>/stat`` (``T``: stopped); with ``wanted``, once it is
    that (or after 5 s: a signal takes effect when the process is next scheduled)."""
    for _ in range(100):
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            letter = handle.read().rsplit(")", 1)[1].split()[0]
        if wanted is None or (letter == "T") == (wanted == "T"):
            break
        time.sleep(0.05)
    return letter


def test_ucarp_is_frozen_once_the_vip_left_and_woken_when_the_vip_is_taken_back(pair, fake_ucarp):
    """With preemption ucarp would take the VIP straight back from the peer: frozen, it cannot."""
    a = pair.a
    pidfile, got = fake_ucarp
    pid = int(pidfile.read_text())
    with_health(a, start=BROKEN_START, carp="ucarp", ucarp_pidfile=str(pidfile), grace=1, hold_down=0)
    a.ha  # pylint: disable=pointless-statement  (loads A's loader with this pillar)
    modules = a.loaders.modules
    real = modules["network.interfaces"].func  # the function: the wrapper looks its name up again

    def interfaces():  # the down-script removes the VIP once ucarp got SIGUSR2
        found = real()
        if got.exists():
            found = {name: dict(data, inet=[e for e in data.get("inet", []) if e.get("address") != a.vip])
                     for name, data in found.items()}
        return found

    modules["network.interfaces"] = interfaces
    try:
        released = a.ha.reconcile()["report"]["vip"]
        frozen = process_state(pid, "T")
        vip = a.ha.status()["vip"]

        # ProxySQL starts again; the VIP is still gone (the wrapper stays: ucarp is frozen), so
        # the node is BACKUP and its probe finds ProxySQL running and takes the VIP back
        with_health(a, carp="ucarp", ucarp_pidfile=str(pidfile), grace=1, hold_down=0)
        back = a.ha.reconcile()["report"]
        assert back["probe"] == "ProxySQL runs again"
        reclaimed = back["vip"]
    finally:
        os.kill(pid, signal.SIGCONT)

    assert (released["released"], released["frozen"]) == (True, True) and frozen == "T"
    assert vip["released"] is True and vip["frozen"] is True
    assert reclaimed == {"reclaimed": True, "carp": "ucarp"} and process_state(pid, "S") != "T"


def test_ucarp_is_never_frozen_while_it_still_holds_the_vip(pair, fake_ucarp):
    a = pair.a
    pidfile, _ = fake_ucarp
    with_health(a, start=BROKEN_START, carp="ucarp", ucarp_pidfile=str(pidfile), grace=1, hold_down=3600)

    report = a.ha.reconcile()["report"]

    assert report["vip"]["released"] is True and report["vip"]["frozen"] is False
    assert process_state(int(pidfile.read_text())) != "T"
    assert any("ucarp still holds the VIP after SIGUSR2: not frozen" in e for e in report["errors"])
