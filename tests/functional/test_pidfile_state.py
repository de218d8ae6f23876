"""Whether ProxySQL runs, from its pid file where that is as sure as the status command.

A pid file naming a live ProxySQL process says it runs; no pid file says it stopped, once this
node has seen ProxySQL write its pid file at that path; a stale pid file (a crash's, or naming
another process) or one ProxySQL never writes falls back to the status command. Each test counts
the status command's runs: a wrapper around the stand-in's status that appends a line to a file.
"""

import json
import subprocess
import sys

COUNT = "import subprocess, sys; open(sys.argv[1], 'a').write('x\\n'); " \
        "sys.exit(subprocess.call(sys.argv[2:]))"


def counted(node, **overrides):
    """Give ``node`` a status command that counts its runs; returns the counter's path."""
    counter = node.root / "status-calls"
    commands = {verb: node.standin_argv(verb) for verb in ("start", "stop")}
    commands["status"] = [sys.executable, "-c", COUNT, str(counter), *node.standin_argv("status")]
    node.configure(commands=commands, **overrides)
    return counter


def calls(counter):
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def test_a_pid_file_naming_the_running_proxysql_needs_no_status_command(pair):
    b = pair.b
    counter = counted(b)
    b.standin("start")

    assert b.ha.status()["proxysql_running"] is True
    assert calls(counter) == 0
    assert json.loads((b.state_dir / "pidfile.json").read_text()) == {"path": str(b.pidfile)}


def test_no_pid_file_is_stopped_only_once_proxysql_was_seen_writing_it(pair):
    b = pair.b
    counter = counted(b)

    assert b.ha.status()["proxysql_running"] is False  # never seen: the command is asked
    assert calls(counter) == 1
    b.standin("start")
    assert b.ha.status()["proxysql_running"] is True  # seen now, at this path
    b.standin("stop")
    before = calls(counter)

    assert b.ha.status()["proxysql_running"] is False
    assert calls(counter) == before


def test_a_stale_pid_file_falls_back_to_the_status_command(pair):
    b = pair.b
    counter = counted(b)
    b.standin("start")
    assert b.ha.status()["proxysql_running"] is True
    b.standin("stop")
    zombie = subprocess.Popen(["sleep", "0"])  # exits, not reaped until wait(): not ProxySQL
    for stale in ("999999999\n", "garbage", f"{zombie.pid}\n"):
        b.pidfile.write_text(stale)
        before = calls(counter)

        assert b.ha.status()["proxysql_running"] is False
        assert calls(counter) == before + 1, stale
    zombie.wait()


def test_a_pid_file_proxysql_never_writes_never_reads_as_stopped(pair):
    """A wrong ``pidfile`` in the pillar: ProxySQL runs, so restore stops it before installing."""
    a, b = pair.a, pair.b
    a.save_users(7)
    shipped = a.ha.ship()["name"]
    counter = counted(b, pidfile=str(b.root / "nowhere" / "proxysql.pid"))
    b.standin("start")

    report = b.ha.restore(start=True)

    assert (report["restored"], report["chosen"], report["stopped"]) == (True, shipped, True)
    assert calls(counter) >= 2  # asked before the stop, and while waiting for it
    assert b.shared_config() == a.shared_config()
    assert b.running()


def test_restore_with_the_pid_file_known_asks_no_status_command(pair):
    a, b = pair.a, pair.b
    a.save_users(9)
    shipped = a.ha.ship()["name"]
    counter = counted(b)
    b.standin("start")
    assert b.ha.status()["proxysql_running"] is True  # the pid file is seen at its path

    report = b.ha.restore(start=True)

    assert (report["restored"], report["chosen"], report["stopped"]) == (True, shipped, True)
    assert calls(counter) == 0
    assert b.shared_config() == a.shared_config()
    assert b.running()
