"""Whether ProxySQL runs, from its pid file where that is as sure as the status command.

A pid file naming a live ProxySQL process says it runs; no pid file says it stopped, once this
node has seen ProxySQL write its pid file at that path; a stale pid file (a crash's, or naming
another process) or one ProxySQL never writes falls back to the status command (those guards'
tests are in test_guards.py, with the counting status command these tests use).
"""

import json

from tests.functional.test_guards import calls, counted


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
