"""The module through ``salt-call --local``, as an operator or a cron job runs it.

Two nodes share this machine: node-a holds the VIP (MASTER) and ships with the ``local``
transport into node-b's inbox; node-b (BACKUP) verifies and restores what it received.
Each node is a minion configuration file carrying the ``proxysql_ha`` dict.
"""

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.integration.conftest import (
    BACKUP_VIP,
    MASTER_VIP,
    SALT_CALL,
    make_node,
    stop_standin,
    write_minion_config,
)
from standin import proxysql_db


def salt_call(confdir, function, *args):
    """Run ``salt-call --local proxysql_ha.<function>``; return the process and its return value."""
    out = subprocess.run(
        [str(SALT_CALL), "--local", "-c", str(confdir), f"proxysql_ha.{function}", *args,
         "--out=json"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    try:
        value = json.loads(out.stdout)["local"]
    except (ValueError, KeyError, TypeError):
        value = None
    return out, value


@pytest.fixture(scope="module")
def pair(tmp_path_factory, schema_file):
    """node-a (MASTER, ships locally into node-b's inbox) and node-b (BACKUP)."""
    root = tmp_path_factory.mktemp("pair")
    b = make_node(root / "node-b", "node-b", BACKUP_VIP, schema_file,
                  {"transport": "local", "path": str(root / "unused")})
    a = make_node(root / "node-a", "node-a", MASTER_VIP, schema_file,
                  {"transport": "local", "path": b["inbox_dir"]})
    yield SimpleNamespace(
        a=a, b=b,
        conf_a=write_minion_config(root / "conf-a", "node-a", a),
        conf_b=write_minion_config(root / "conf-b", "node-b", b),
    )
    stop_standin(b)


@pytest.fixture(scope="module")
def shipped(pair):
    """What ``backup`` and then ``ship`` returned on node-a, with their exit codes."""
    backup_out, backup = salt_call(pair.conf_a, "backup")
    ship_out, ship = salt_call(pair.conf_a, "ship")
    return SimpleNamespace(backup=backup, backup_rc=backup_out.returncode, ship=ship,
                           ship_rc=ship_out.returncode, name=backup and backup.get("name"))


def test_role_is_master_where_the_vip_is_and_backup_elsewhere(pair):
    assert salt_call(pair.conf_a, "role")[1] == "MASTER"
    assert salt_call(pair.conf_b, "role")[1] == "BACKUP"


def test_backup_writes_a_database_copy_and_its_manifest(shipped, pair):
    assert shipped.backup_rc == 0
    assert shipped.backup["result"] == "created"
    backup_dir = Path(pair.a["backup_dir"])
    assert sorted(p.name for p in backup_dir.iterdir()) == [shipped.name + ".db",
                                                            shipped.name + ".json"]


def test_ship_copies_the_newest_backup_into_the_peer_inbox(shipped, pair):
    assert shipped.ship_rc == 0
    assert shipped.ship["shipped"] is True
    assert shipped.ship["name"] == shipped.name
    inbox = Path(pair.b["inbox_dir"])
    assert (inbox / (shipped.name + ".db")).read_bytes() == (
        Path(pair.a["backup_dir"]) / (shipped.name + ".db")).read_bytes()
    assert (inbox / (shipped.name + ".json")).is_file()


def test_list_backups_on_the_peer_shows_the_received_backup_as_valid(shipped, pair):
    out, listing = salt_call(pair.conf_b, "list_backups")

    assert out.returncode == 0, out.stderr
    assert listing["outgoing"] == []
    assert [(v["name"], v["valid"]) for v in listing["incoming"]] == [(shipped.name, True)]


def test_verify_on_the_peer_accepts_the_received_backup(shipped, pair):
    out, verdict = salt_call(pair.conf_b, "verify", f"name={shipped.name}")

    assert out.returncode == 0, out.stderr
    assert verdict["valid"] is True


def test_restore_on_the_peer_installs_the_shipped_configuration_and_starts_proxysql(shipped,
                                                                                  pair):
    live_b = Path(pair.b["datadir"]) / "proxysql.db"
    uuid_b = dict(proxysql_db.dump_config(live_b)["global_settings"])["uuid"]

    out, report = salt_call(pair.conf_b, "restore", "start=True")

    assert out.returncode == 0, out.stderr
    assert report["restored"] is True
    assert report["chosen"] == shipped.name
    restored = proxysql_db.dump_config(live_b)
    source = proxysql_db.dump_config(Path(pair.a["datadir"]) / "proxysql.db")
    assert dict(restored["global_settings"])["uuid"] == uuid_b  # beside it, the install's token
    # compared without what ProxySQL writes itself at start (uuid, default variables)
    assert proxysql_db.without_startup_writes(restored) == proxysql_db.without_startup_writes(source)
    status = subprocess.run(pair.b["commands"]["status"], capture_output=True, timeout=30,
                            check=False)
    assert status.returncode == 0


def test_status_reports_the_role_and_the_last_ship(shipped, pair):
    out, status = salt_call(pair.conf_a, "status")

    assert out.returncode == 0, out.stderr
    assert status["role"] == "MASTER"
    assert status["last_ship"]["ok"] is True
    assert status["last_ship"]["name"] == shipped.name
    assert status["newest_backup"]["valid"] is True


def test_check_exits_1_and_names_the_problem_when_proxysql_is_down_on_the_master(pair):
    out, healthy = salt_call(pair.conf_a, "check")

    assert out.returncode == 1
    assert healthy is False
    assert "master_proxysql_down" in out.stderr


def test_check_exits_0_on_a_backup_node_without_problems(tmp_path, schema_file):
    pillar = make_node(tmp_path / "node-c", "node-c", BACKUP_VIP, schema_file,
                       {"transport": "local", "path": str(tmp_path / "unused")})

    out, healthy = salt_call(write_minion_config(tmp_path / "conf", "node-c", pillar), "check")

    assert out.returncode == 0, out.stdout + out.stderr
    assert healthy is True


def test_an_unknown_pillar_key_fails_and_is_named(tmp_path, schema_file):
    pillar = make_node(tmp_path / "node-c", "node-c", MASTER_VIP, schema_file,
                       {"transport": "local", "path": str(tmp_path / "unused")})
    pillar["stop_on_master"] = True

    out, _ = salt_call(write_minion_config(tmp_path / "conf", "node-c", pillar), "role")

    assert out.returncode != 0
    assert "proxysql_ha:stop_on_master" in out.stdout + out.stderr
