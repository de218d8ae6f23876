"""The engine's layer check: a real admin stand-in, the real MySQL client; the bus is the boundary.

``_layer_check`` is called as the engine's look calls it, with the node's pillar built by
``proxysql_ha_config.build``; ``_fire`` and ``_ask`` record what would go onto the minion's bus.
"""

import shutil

import pytest

from _engines import proxysql_ha as engine
from saltext.proxysql_ha.utils import proxysql_ha_admin as admin
from saltext.proxysql_ha.utils import proxysql_ha_config
from standin import proxysql_db
from standin.node import Node
from standin.proxysql_standin import free_loopback_port

pytestmark = pytest.mark.skipif(
    not (shutil.which("mariadb") or shutil.which("mysql")),
    reason="no MySQL client (Debian: mariadb-client; make deps installs it)",
)
CHECK = "proxysql_ha_check"


@pytest.fixture
def node(tmp_path, schema_path_of, schema_sql):
    made = Node("node-a", tmp_path / "node-a", schema_path_of("3.0.1"), admin=free_loopback_port()).create()
    proxysql_db.build_db(made.live_db, schema_sql("3.0.1"), users=3, seed=1)
    assert made.standin("start").returncode == 0
    yield made
    made.standin("stop")


@pytest.fixture
def bus(monkeypatch):
    sent = {"events": [], "asked": []}
    monkeypatch.setattr(engine, "__opts__", {"id": "engine-test"}, raising=False)
    monkeypatch.setattr(engine, "_fire", lambda _o, data, tag, master=False: sent["events"].append((tag, data)) or True)
    monkeypatch.setattr(engine, "_ask", lambda _o, job: sent["asked"].append(job) or True)
    return sent


def conf_for(node, **admin_keys):
    pillar = node.pillar(vip="127.0.0.1", peer_path=node.root / "peer")
    pillar["admin"].update(admin_keys)
    return proxysql_ha_config.build(pillar, "Debian", "engine-test")


def params_of(node):
    return admin.resolve({"host": "127.0.0.1", "port": node.admin}, node.live_db)


def test_a_change_loaded_but_not_saved_is_alerted_once_and_the_check_job_asked_for(node, bus):
    conf, state = conf_for(node, layer_check_interval=30), {"role": "MASTER"}
    engine._layer_check(conf, state, now=0.0)
    assert bus == {"events": [], "asked": []}

    admin.execute(params_of(node), "UPDATE mysql_users SET max_connections = 5; LOAD MYSQL USERS TO RUNTIME")
    engine._layer_check(conf, state, now=10.0)  # not due yet
    assert bus["events"] == []
    engine._layer_check(conf, state, now=30.0)
    (tag, data), = bus["events"]
    assert tag == "proxysql_ha/alert/config_not_saved" and data["modules"] == ["MYSQL USERS"]
    assert "run SAVE MYSQL USERS TO DISK" in data["message"] and bus["asked"] == [CHECK]

    engine._layer_check(conf, state, now=60.0)  # the same finding: not again
    assert len(bus["events"]) == 1

    admin.execute(params_of(node), "UPDATE mysql_servers SET weight = 3")  # edited, not loaded
    engine._layer_check(conf, state, now=90.0)
    assert [t for t, _ in bus["events"][1:]] == ["proxysql_ha/alert/config_not_saved",
                                                  "proxysql_ha/alert/config_not_loaded"]
    assert bus["events"][-1][1]["modules"] == ["MYSQL SERVERS"]

    admin.execute(params_of(node), "SAVE MYSQL USERS TO DISK; LOAD MYSQL SERVERS TO RUNTIME; "
                                   "SAVE MYSQL SERVERS TO DISK")
    engine._layer_check(conf, state, now=120.0)
    assert state["layers_seen"] == {} and len(bus["events"]) == 3


def test_off_on_a_backup_with_interval_zero_and_quiet_when_the_admin_does_not_answer(node, bus):
    admin.execute(params_of(node), "UPDATE mysql_users SET max_connections = 5")
    engine._layer_check(conf_for(node, layer_check_interval=0), {"role": "MASTER"}, now=100.0)
    engine._layer_check(conf_for(node), {"role": "BACKUP"}, now=100.0)
    state = {"role": "MASTER"}
    engine._layer_check(conf_for(node, port=free_loopback_port()), state, now=100.0)
    assert bus == {"events": [], "asked": []} and state["next_layer_check"] == 130.0


def test_a_new_unsaved_change_after_a_save_is_alerted_though_no_look_saw_the_layers_agree(node, bus):
    """The finding is the same kind and module, but the change it was about was saved and this
    is another one: a save between two looks makes it new (the lab's saves raced this)."""
    conf, state = conf_for(node, layer_check_interval=2), {"role": "MASTER"}
    admin.execute(params_of(node), "UPDATE mysql_users SET max_connections = 5; LOAD MYSQL USERS TO RUNTIME")
    engine._layer_check(conf, state, now=0.0)
    assert [t for t, _ in bus["events"]] == ["proxysql_ha/alert/config_not_saved"]

    admin.execute(params_of(node), "SAVE MYSQL USERS TO DISK; "
                                   "UPDATE mysql_users SET max_connections = 6; LOAD MYSQL USERS TO RUNTIME")
    engine._layer_check(conf, state, now=2.0)
    assert [t for t, _ in bus["events"]] == ["proxysql_ha/alert/config_not_saved"] * 2
    assert bus["events"][1][1]["modules"] == ["MYSQL USERS"]
    engine._layer_check(conf, state, now=4.0)  # nothing saved since: the same finding
    assert len(bus["events"]) == 2


def test_a_check_that_cannot_be_made_is_logged_once_per_reason(node, bus, caplog):
    conf, state = conf_for(node, port=free_loopback_port(), connect_timeout=1), {"role": "MASTER"}
    with caplog.at_level("DEBUG", logger=engine.log.name):
        for now in (0.0, 30.0, 60.0):
            engine._layer_check(conf, state, now=now)
    warned = [r for r in caplog.records if "layer check not made" in r.getMessage()]
    assert [r.levelname for r in warned] == ["WARNING", "DEBUG", "DEBUG"]
    assert "127.0.0.1" in warned[0].getMessage() and bus == {"events": [], "asked": []}


def test_the_statement_is_built_once_per_version_of_the_file(node, bus, monkeypatch):
    """Building the layer check's statement reads the db's whole schema and row counts: kept
    while the file is as it was, built again after a save (which changes what it must hold)."""
    built = []
    real = admin.layer_statement_of
    monkeypatch.setitem(engine._HELPERS, "proxysql_ha_admin.layer_statement_of",
                        lambda path: built.append(path) or real(path))
    conf, state = conf_for(node, layer_check_interval=2), {"role": "MASTER"}
    for now in (0.0, 2.0, 4.0):
        engine._layer_check(conf, state, now=now)
    assert len(built) == 1 and bus["events"] == []

    admin.execute(params_of(node), "INSERT INTO mysql_servers (hostgroup_id, hostname) "
                                   "VALUES (9, 'new.example'); SAVE MYSQL SERVERS TO DISK")
    engine._layer_check(conf, state, now=6.0)  # saved, not loaded: runtime lacks the new row
    assert len(built) == 2
    assert {t for t, _ in bus["events"]} == {"proxysql_ha/alert/config_not_loaded",
                                              "proxysql_ha/alert/config_not_saved"}
    assert all(d["modules"] == ["MYSQL SERVERS"] for _, d in bus["events"])


def test_a_new_change_loaded_after_the_layers_agreed_unseen_is_alerted_with_no_file_change(node, bus):
    """CI's race: a check sees a finding (here a change saved to the file, not yet loaded), the
    layers then agree (loaded) and a new change is loaded but not saved, all between two checks
    and with the file as it was: the load to runtime (its version in runtime_checksums_values)
    makes the finding a new one."""
    conf, state = conf_for(node, layer_check_interval=2), {"role": "MASTER"}
    params = params_of(node)
    admin.execute(params, "UPDATE mysql_users SET max_connections = 7; SAVE MYSQL USERS TO DISK")
    def not_saved():
        return [d["modules"] for t, d in bus["events"] if t == "proxysql_ha/alert/config_not_saved"]

    engine._layer_check(conf, state, now=0.0)  # the file holds what runtime does not yet
    assert not_saved() == [["MYSQL USERS"]]

    admin.execute(params, "LOAD MYSQL USERS TO RUNTIME; "  # the layers agree: no check sees it
                          "UPDATE mysql_users SET max_connections = 8; LOAD MYSQL USERS TO RUNTIME")
    engine._layer_check(conf, state, now=2.0)
    assert not_saved() == [["MYSQL USERS"]] * 2
    engine._layer_check(conf, state, now=4.0)  # nothing loaded or saved since: the same finding
    assert not_saved() == [["MYSQL USERS"]] * 2
