"""The ProxySQL stand-in daemon: its start/status/stop contract and ProxySQL's start-up rule."""

import json
import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support import proxysql_db

STANDIN = Path(__file__).resolve().parent.parent / "support" / "proxysql_standin.py"


class Standin:
    """Runs the stand-in's CLI on one data directory; stops the daemon when the test ends."""

    def __init__(self, datadir, schema):
        self.datadir = Path(datadir)
        self.schema = schema
        self.pidfile = self.datadir / "proxysql.pid"
        self.db = self.datadir / "proxysql.db"

    def run(self, action, *extra):
        """Run ``proxysql_standin.py ACTION`` and return the finished process."""
        command = [sys.executable, str(STANDIN), action, "--datadir", str(self.datadir), *extra]
        if self.schema:
            command += ["--schema", str(self.schema)]
        return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)

    def loaded(self):
        """The daemon's ``standin-loaded.json`` report."""
        return json.loads((self.datadir / "standin-loaded.json").read_text())

    def log(self):
        """The daemon's log file."""
        return (self.datadir / "standin.log").read_text()


@pytest.fixture
def standin(tmp_path, shared_dir):
    runner = Standin(tmp_path, proxysql_db.schema_path(shared_dir, "3.0.1"))
    yield runner
    runner.run("stop")


def test_start_status_stop_cycle(standin):
    started = standin.run("start")
    assert started.returncode == 0, started.stderr
    pid = int(standin.pidfile.read_text())
    assert standin.loaded()["pid"] == pid
    assert standin.run("status").returncode == 0
    again = standin.run("start")
    assert again.returncode == 0
    assert f"already running (pid {pid})" in again.stdout

    stopped = standin.run("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not standin.pidfile.exists()
    assert standin.run("status").returncode == 3
    assert standin.run("stop").returncode == 0


def test_start_on_empty_datadir_creates_all_tables_and_a_uuid(standin, schema_sql):
    assert standin.run("start").returncode == 0
    report = standin.loaded()
    statements = schema_sql("3.0.1")
    assert report["created"] == [proxysql_db.table_name(s) for s in statements]
    assert report["config"]["global_settings"] == 1
    assert proxysql_db.dump_config(standin.db)["global_settings"] == [("uuid", report["uuid"])]


def test_start_keeps_a_current_configuration_and_its_uuid(standin, schema_sql):
    uuid = proxysql_db.build_db(standin.db, schema_sql("3.0.1"), uuid="6e1b0c1e-0000-4000-8000-00000000abcd")
    before = proxysql_db.dump_config(standin.db)
    assert standin.run("start").returncode == 0
    report = standin.loaded()
    assert (report["uuid"], report["created"], report["recreated"]) == (uuid, [], [])
    assert report["config"]["mysql_users"] == 3
    assert proxysql_db.dump_config(standin.db) == before


def test_start_recreates_empty_a_table_whose_ddl_differs(standin, schema_sql):
    statements = schema_sql("3.0.1")
    builtin = next(s for s in statements if proxysql_db.table_name(s) == "mysql_users")
    key = " , PRIMARY KEY (username, backend)"
    altered = builtin.replace(key, " , extra VARCHAR" + key)
    assert altered != builtin
    uuid = proxysql_db.build_db(standin.db, [altered if s == builtin else s for s in statements])
    assert len(proxysql_db.dump_config(standin.db)["mysql_users"]) == 3

    assert standin.run("start").returncode == 0
    report = standin.loaded()
    assert report["recreated"] == ["mysql_users"]
    assert (report["config"]["mysql_users"], report["config"]["mysql_servers"], report["uuid"]) == (0, 2, uuid)
    with sqlite3.connect(standin.db) as conn:
        ddl = conn.execute("SELECT sql FROM sqlite_master WHERE name='mysql_users'").fetchone()[0]
    assert ddl == builtin


def test_start_adds_the_newer_versions_tables(standin, schema_sql):
    uuid = proxysql_db.build_db(standin.db, schema_sql("2.7.2"))
    assert standin.run("start").returncode == 0
    report = standin.loaded()
    assert report["created"] and all(name.startswith("pgsql_") for name in report["created"])
    assert (report["recreated"], report["uuid"], report["config"]["mysql_users"]) == ([], uuid, 3)


def test_start_migrates_an_old_file_with_the_upgrades_beside_the_schema(standin, schema_sql):
    proxysql_db.build_db(standin.db, schema_sql("2.0.18"), users=4, rules=3)
    before = proxysql_db.dump_config(standin.db)
    assert standin.run("start").returncode == 0
    report = standin.loaded()
    assert report["migrated"] == ["mysql_users", "mysql_query_rules", "restapi_routes"]
    assert report["recreated"] == [] and "global_settings" in report["created"]
    assert (report["config"]["mysql_users"], report["config"]["mysql_query_rules"]) == (4, 3)
    after = proxysql_db.dump_config(standin.db)
    assert after["mysql_users_v200"] == before["mysql_users"]
    assert after["global_settings"] == [("uuid", report["uuid"])]


def test_start_fails_fast_when_the_db_cannot_be_opened(standin):
    standin.db.mkdir()
    result = standin.run("start")
    assert result.returncode == 1
    assert "failed to start" in result.stderr
    assert "Traceback" in standin.log()
    assert not standin.pidfile.exists()
    assert standin.run("status").returncode == 3


def test_stale_pidfile_naming_another_process_is_not_the_standin(standin):
    standin.pidfile.write_text(f"{os.getpid()}\n")
    assert standin.run("status").returncode == 3
    assert standin.run("stop").returncode == 0  # and this test process is still alive to check it


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_start_as_root_runs_as_the_given_user(shared_dir):
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' on this machine")
    # pytest's tmp dirs are private to root: nobody could not reach a datadir inside them.
    datadir = Path(tempfile.mkdtemp(prefix="standin-user-"))
    try:
        datadir.chmod(0o755)
        os.chown(datadir, nobody.pw_uid, nobody.pw_gid)
        runner = Standin(datadir, proxysql_db.schema_path(shared_dir, "3.0.1"))
        result = runner.run("start", "--user", "nobody")
        assert result.returncode == 0, result.stderr + runner.log()
        pid = runner.loaded()["pid"]
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        uids = next(line for line in status if line.startswith("Uid:")).split()[1:]
        assert uids == [str(nobody.pw_uid)] * 4  # real, effective, saved, filesystem
        assert runner.db.stat().st_uid == nobody.pw_uid
        assert runner.run("stop").returncode == 0
    finally:
        Standin(datadir, None).run("stop")
        shutil.rmtree(datadir)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root drops privileges")
def test_start_with_an_unknown_user_says_so_and_runs(standin):
    assert standin.run("start", "--user", "no-such-user-proxysql-standin").returncode == 0
    assert "user 'no-such-user-proxysql-standin' does not exist" in standin.log()
