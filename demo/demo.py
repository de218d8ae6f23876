#!/usr/bin/env python3
"""
`make demo`: a single-node walkthrough of proxysql-ha, through real `salt-call`.

Two nodes live side by side in a temporary directory, each a masterless minion
with its own config: node A is MASTER (its VIP is 127.0.0.1 on lo), node B is
BACKUP (its VIP, 127.0.0.77, is absent). ProxySQL is played by the stand-in in
tests/support (it is not ProxySQL). A ships to B through the `local` transport.

The walk: A backs up and ships; a saved change makes a second generation; the
newest copy in B's inbox is corrupted; B is promoted and restores the newest
*valid* backup, saying why it rejected the other one. Nothing leaves this
machine; everything is removed at the end.
"""

import getpass
import grp
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support import proxysql_db  # noqa: E402  pylint: disable=wrong-import-position

SALT_CALL = Path(sys.executable).with_name("salt-call")
STANDIN = REPO / "tests" / "support" / "proxysql_standin.py"
T0 = time.monotonic()


def say(text):
    print(f"[{(time.monotonic() - T0) * 1000:8.0f} ms] {text}", flush=True)


def schema_file():
    candidates = [os.environ.get("PROXYSQL_SCHEMA"), REPO.parent / "shared/proxysql/schema-3.0.1.sql"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    sys.exit(
        "demo: needs ProxySQL's table DDL: put shared/ beside the repository "
        "(shared/proxysql/schema-3.0.1.sql) or set PROXYSQL_SCHEMA=/path/to/schema.sql"
    )


def node_config(root, name, vip, peer_inbox, schema):
    base = root / name
    for sub in ("data", "outgoing", "incoming", "state", "salt"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    data = base / "data"
    standin = [sys.executable, str(STANDIN)]
    where = ["--datadir", str(data), "--schema", str(schema)]
    return {
        "id": name,
        "file_client": "local",
        "root_dir": str(base / "salt"),
        "module_dirs": [str(REPO / "_modules")],
        "utils_dirs": [str(REPO / "_utils")],
        "log_level": "quiet",
        "proxysql_ha": {
            "vhid": 9,
            "interface": "lo",
            "role_source": "vip",
            "vip": vip,
            "datadir": str(data),
            "user": getpass.getuser(),
            "group": grp.getgrgid(os.getgid()).gr_name,
            "backup_dir": str(base / "outgoing"),
            "inbox_dir": str(base / "incoming"),
            "state_dir": str(base / "state"),
            "settle": 0.2,
            "commands": {
                "start": standin + ["start"] + where,
                "stop": standin + ["stop"] + where,
                "status": standin + ["status"] + where,
            },
            "peer": {"transport": "local", "path": str(peer_inbox)},
        },
    }


def write_config(root, conf):
    confdir = root / conf["id"] / "etc"
    confdir.mkdir(parents=True, exist_ok=True)
    (confdir / "minion").write_text(json.dumps(conf, indent=1))
    return confdir


def salt_call(confdir, function, *args):
    argv = [str(SALT_CALL), "--local", "-c", str(confdir), "--out=json", function, *args]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    try:
        return json.loads(out.stdout)["local"], out.returncode
    except (ValueError, KeyError):
        sys.exit(f"demo: {function} failed:\n{out.stdout}\n{out.stderr}")


def show(label, value):
    print(f"{'':13}{label}: {value}")


def main():
    schema = schema_file()
    statements = proxysql_db.read_schema(schema)
    root = Path(tempfile.mkdtemp(prefix="proxysql-ha-demo-"))
    nodes = {}
    try:
        say(f"lab in {root}: node A (MASTER, VIP 127.0.0.1 on lo), node B (BACKUP)")
        a = node_config(root, "node-a", "127.0.0.1", root / "node-b" / "incoming", schema)
        b = node_config(root, "node-b", "127.0.0.77", root / "node-a" / "incoming", schema)
        nodes = {"A": write_config(root, a), "B": write_config(root, b)}
        a_db = Path(a["proxysql_ha"]["datadir"]) / "proxysql.db"
        proxysql_db.build_db(a_db, statements, users=50, rules=20, servers=4, hostgroups=2)
        proxysql_db.build_db(Path(b["proxysql_ha"]["datadir"]) / "proxysql.db", statements,
                             users=0, rules=0, servers=0, hostgroups=0)
        subprocess.run(a["proxysql_ha"]["commands"]["start"], check=True, timeout=30)
        say("A: ProxySQL configuration built (50 users, 20 query rules, 4 servers); "
            "ProxySQL (stand-in) started on it")
        ret, _ = salt_call(nodes["A"], "proxysql_ha.role")
        say(f"A: salt-call proxysql_ha.role -> {ret}")
        ret, _ = salt_call(nodes["B"], "proxysql_ha.role")
        say(f"B: salt-call proxysql_ha.role -> {ret}")

        ret, _ = salt_call(nodes["A"], "proxysql_ha.ship")
        say(f"A: salt-call proxysql_ha.ship -> backup {ret['backup']['result']} "
            f"(generation {ret['backup'].get('generation')}, {ret['backup']['ms']} ms), "
            f"shipped: {ret['shipped']}")
        ret, _ = salt_call(nodes["A"], "proxysql_ha.ship")
        say(f"A: ship again, nothing changed -> backup {ret['backup']['result']} "
            f"in {ret['backup']['ms']} ms; {ret.get('comment')}")

        users = proxysql_db.dump_config(a_db)["mysql_users"]
        changed = [users[0][:1] + ("*" + "A" * 40,) + users[0][2:]] + users[1:]
        proxysql_db.save_table(a_db, "mysql_users", changed)
        say("A: an operator runs SAVE MYSQL USERS TO DISK (DELETE, then INSERT)")
        ret, _ = salt_call(nodes["A"], "proxysql_ha.ship")
        say(f"A: ship -> backup {ret['backup']['result']} (generation "
            f"{ret['backup'].get('generation')}), shipped {ret.get('name')}")

        inbox = Path(b["proxysql_ha"]["inbox_dir"])
        newest = sorted(inbox.glob("*.db"))[-1]
        with open(newest, "r+b") as handle:
            handle.seek(newest.stat().st_size // 2)
            handle.write(b"\xde\xad\xbe\xef" * 64)
        say(f"B: corrupting the newest received copy, {newest.name}")

        ret, _ = salt_call(nodes["B"], "proxysql_ha.verify")
        for verdict in ret["backups"]:
            show(verdict["name"], "valid" if verdict["valid"] else f"INVALID: {verdict['reason']}")

        b["proxysql_ha"]["vip"], a["proxysql_ha"]["vip"] = "127.0.0.1", "127.0.0.77"
        write_config(root, a)
        write_config(root, b)
        say("CARP moves the VIP: B is now MASTER, A is BACKUP")
        ret, _ = salt_call(nodes["A"], "proxysql_ha.demote")
        say(f"A: salt-call proxysql_ha.demote -> ProxySQL stopped: {ret['stopped']}")
        ret, code = salt_call(nodes["B"], "proxysql_ha.promote")
        restore = ret["restore"]
        say(f"B: salt-call proxysql_ha.promote -> restored {restore['chosen']} "
            f"in {restore['ms']} ms; ProxySQL started: {ret['started']} (exit {code})")
        for rejected in restore["rejected"]:
            show("rejected", f"{rejected['name']}: {rejected['reason']}")
        b_db = Path(b["proxysql_ha"]["datadir"]) / "proxysql.db"
        got = proxysql_db.dump_config(b_db)
        first = next(Path(a["proxysql_ha"]["backup_dir"]).glob("*g0000000001*.db"))
        want = proxysql_db.dump_config(first)
        same = all(got[t] == want[t] for t in want if t != "global_settings")
        say(f"B: configuration equals generation 1 row for row (uuid aside): {same}; "
            f"B kept its own uuid: {got['global_settings'] != want['global_settings']}")
        ret, code = salt_call(nodes["B"], "proxysql_ha.status")
        say(f"B: status -> role {ret['role']}, ProxySQL running {ret['proxysql_running']}, "
            f"problems: {[p['kind'] for p in ret['problems']] or 'none'}")
        say("done")
    finally:
        for node in nodes.values():
            conf = json.loads((node / "minion").read_text())["proxysql_ha"]
            subprocess.run(conf["commands"]["stop"], capture_output=True, timeout=30, check=False)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
