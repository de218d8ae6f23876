"""A real crash: ``salt-call --local proxysql_ha.promote`` SIGKILLed just after ProxySQL started.

The start command is the stand-in's start followed by a pause (a wrapper below), so the kill
lands after ProxySQL runs on the restored copy and before promote records it is in office. B's
ProxySQL then saves a change; the next reconcile (through the loader) must finish the takeover
without restoring again.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time


WRAPPER = """
import subprocess, sys, time
code = subprocess.call(sys.argv[2:])
open(sys.argv[1], "w").write(str(code))
time.sleep(60)  # promote waits here: the test kills salt-call meanwhile
sys.exit(code)
"""


def test_salt_call_killed_after_proxysql_started_never_restores_again(pair, tmp_path):
    a, b = pair.a, pair.b
    a.ha.ship()
    a.save_users(7)
    shipped = a.ha.ship()["name"]
    pair.fail_over()
    started = tmp_path / "started"
    wrapper = tmp_path / "start-then-pause.py"
    wrapper.write_text(WRAPPER)
    commands = {verb: b.standin_argv(verb) for verb in ("start", "stop", "status")}
    b.configure(commands=dict(commands, start=[sys.executable, str(wrapper), str(started), *commands["start"]]))
    b.ha  # pylint: disable=pointless-statement  (writes B's pillar file)
    config_dir = os.path.dirname(b.loaders.opts["conf_file"])
    salt_call = os.path.join(os.path.dirname(sys.executable), "salt-call")
    proc = subprocess.Popen([salt_call, "--local", "-c", config_dir, "--out", "json", "proxysql_ha.promote"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert started.exists(), proc.communicate(timeout=10)
        os.killpg(proc.pid, signal.SIGKILL)  # salt-call and the paused wrapper die; ProxySQL runs on
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert b.running()
    assert json.loads((b.state_dir / "transition.json").read_text())["restoring"] == shipped
    copies = sorted(b.datadir.glob("proxysql.db.pre-restore-*"))
    served = {row[0] for row in b.save_users(9)}
    b.configure(commands=commands)

    report = b.ha.reconcile()

    assert report["actions"][0].startswith("finish the takeover"), report["actions"]
    assert "restore" not in report["report"] and report["report"]["errors"] == []
    assert {r[0] for r in sqlite3.connect(b.live_db).execute("SELECT username FROM mysql_users")} == served
    assert sorted(b.datadir.glob("proxysql.db.pre-restore-*")) == copies
    assert b.running() and b.ha.reconcile()["actions"] == []
