"""The VIP follows ProxySQL on FreeBSD carp(4): what the module runs, through Salt's loader.

FreeBSD's ``ifconfig`` cannot run on Linux: a stand-in ``ifconfig`` on PATH prints the shared
sample ``ifconfig-13-master.txt`` (vhid 9 on em0), with the state and advskew the last call set,
and records every call that sets something. Everything else is real.
"""

import json
import os
import sys

import pytest

FAKE_IFCONFIG = """#!{python}
import json, sys
sample, state_file, calls = {sample!r}, {state!r}, {calls!r}
try:
    state = json.load(open(state_file))
except OSError:
    state = {{"state": "MASTER", "advskew": "0"}}
args = sys.argv[1:]
if len(args) > 1:  # a change: record it, apply it to what the next read shows
    with open(calls, "a") as log:
        log.write(json.dumps(args) + "\\n")
    options = dict(zip(args[1::2], args[2::2]))
    if "advskew" in options:
        state["advskew"] = options["advskew"]
    if options.get("state") == "backup":
        state["state"] = "BACKUP"
    json.dump(state, open(state_file, "w"))
    sys.exit(0)
text = open(sample).read()
text = text.replace("carp: MASTER", "carp: " + state["state"]).replace("advskew 0", "advskew " + state["advskew"])
sys.stdout.write(text)
"""


@pytest.fixture
def freebsd_ifconfig(tmp_path, shared_dir, monkeypatch):
    """A stand-in ``ifconfig`` first on PATH; returns ``calls()``: the argv of every change it was asked."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    calls = tmp_path / "ifconfig-calls.jsonl"
    script = bin_dir / "ifconfig"
    script.write_text(FAKE_IFCONFIG.format(python=sys.executable,
                                           sample=str(shared_dir / "freebsd" / "ifconfig-13-master.txt"),
                                           state=str(tmp_path / "ifconfig-state.json"), calls=str(calls)))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return lambda: [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []


def test_a_freebsd_master_whose_proxysql_cannot_start_raises_its_advskew_and_puts_it_back(pair, freebsd_ifconfig):
    a = pair.a
    commands = {verb: a.standin_argv(verb) for verb in ("start", "stop", "status")}
    freebsd = {"role_source": "freebsd_carp", "interface": "em0", "vhid": 9}
    a.configure(commands=dict(commands, start=["/bin/false"]), health={"grace": 1, "hold_down": 0}, **freebsd)
    assert a.ha.role() == "MASTER"

    released = a.ha.reconcile()["report"]

    assert released["vip"]["ran"] == ["ifconfig", "em0", "vhid", "9", "advskew", "240", "state", "backup"]
    assert freebsd_ifconfig() == [["em0", "vhid", "9", "advskew", "240", "state", "backup"]]
    assert a.ha.role() == "BACKUP"
    assert a.ha.status()["vip"]["params"] == {"proto": "carp", "advskew": 0}

    a.configure(commands=commands, health={"grace": 1, "hold_down": 0}, **freebsd)
    reclaimed = a.ha.reconcile()["report"]

    assert reclaimed["vip"] == {"reclaimed": True, "carp": "freebsd"}
    assert freebsd_ifconfig()[-1] == ["em0", "vhid", "9", "advskew", "0"]
    assert not a.running()  # BACKUP until CARP (preemption) makes it MASTER again
