"""The ProxySQL stand-in daemon: its start/status/stop contract and ProxySQL's start-up rule."""

import os
import pwd
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from standin import proxysql_db, proxysql_standin

STANDIN = Path(__file__).resolve().parents[2] / "standin" / "proxysql_standin.py"


class Standin:
    """Runs the stand-in's CLI on one data directory, with its own loopback traffic port."""

    def __init__(self, datadir, schema, load_delay=0.2):
        self.datadir = Path(datadir)
        self.schema = schema
        self.pidfile = self.datadir / "proxysql.pid"
        self.db = self.datadir / "proxysql.db"
        self.traffic = f"127.0.0.1:{proxysql_standin.free_loopback_port()}"
        self.load_delay = load_delay

    def run(self, action, *extra):
        """Run ``proxysql_standin.py ACTION`` and return the finished process."""
        command = [sys.executable, str(STANDIN), action, "--datadir", str(self.datadir), *extra]
        if self.schema:
            command += ["--schema", str(self.schema)]
        if action == "start":
            command += ["--traffic", self.traffic, "--load-delay", str(self.load_delay)]
        return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)

    def loaded(self, timeout=10):
        """The daemon's ``standin-loaded.json`` report, waiting up to ``timeout`` s for it."""
        return proxysql_standin.wait_loaded(self.datadir, timeout)

    def log(self):
        """The daemon's log file."""
        return (self.datadir / "standin.log").read_text()

    def wait_exited(self, timeout=10):
        """Wait until ``status`` says not running; return whether it did within ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.run("status").returncode == 3:
                return True
            time.sleep(0.05)
        return False


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
    assert proxysql_db.without_startup_writes(proxysql_db.dump_config(standin.db)) == (
        proxysql_db.without_startup_writes(before)
    )


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


def test_a_db_that_cannot_be_opened_kills_the_daemon_after_start_returned(standin):
    standin.db.mkdir()
    result = standin.run("start")
    assert result.returncode == 0, result.stderr  # the parent returned at the pid file, as ProxySQL's does
    assert standin.wait_exited()
    assert "Traceback" in standin.log()
    assert not standin.pidfile.exists()
    assert not (standin.datadir / "standin-loaded.json").exists()


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


@pytest.fixture
def slow_standin(tmp_path, shared_dir):
    runner = Standin(tmp_path, proxysql_db.schema_path(shared_dir, "3.0.1"), load_delay=1.5)
    yield runner
    runner.run("stop")


def test_start_returns_at_the_pid_file_and_loads_after_the_delay(slow_standin, schema_sql):
    proxysql_db.build_db(slow_standin.db, schema_sql("3.0.1"))
    began = time.monotonic()
    assert slow_standin.run("start").returncode == 0
    returned = time.monotonic() - began
    pid = int(slow_standin.pidfile.read_text())
    assert slow_standin.run("status").returncode == 0
    # start is back, the process runs, and it has neither loaded nor started listening
    assert not (slow_standin.datadir / "standin-loaded.json").exists(), f"loaded before start returned ({returned:.2f} s)"
    assert not proxysql_standin.accepts(slow_standin.traffic)
    report = slow_standin.loaded(timeout=15)
    assert report["pid"] == pid
    assert report["started"] - began >= 1.5 - 0.05 or time.monotonic() - began >= 1.5
    assert report["traffic"] == slow_standin.traffic


def test_it_listens_after_loading_and_stops_listening_at_stop(standin, schema_sql):
    proxysql_db.build_db(standin.db, schema_sql("3.0.1"))
    assert standin.run("start").returncode == 0
    standin.loaded()
    deadline = time.monotonic() + 10
    while not proxysql_standin.accepts(standin.traffic) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proxysql_standin.accepts(standin.traffic)
    assert f"listening on {standin.traffic}" in standin.log()
    assert standin.run("stop").returncode == 0
    assert not proxysql_standin.accepts(standin.traffic)


def test_without_traffic_override_it_listens_on_the_first_mysql_interfaces_entry(tmp_path, schema_sql, shared_dir):
    port = proxysql_standin.free_loopback_port()
    runner = Standin(tmp_path, proxysql_db.schema_path(shared_dir, "3.0.1"))
    proxysql_db.build_db(runner.db, schema_sql("3.0.1"))
    with sqlite3.connect(runner.db) as conn:
        conn.execute(
            "UPDATE global_variables SET variable_value=? WHERE variable_name='mysql-interfaces'",
            (f"127.0.0.1:{port};/tmp/proxysql-standin-test.sock",),
        )
    command = [sys.executable, str(STANDIN), "start", "--datadir", str(runner.datadir), "--schema", str(runner.schema)]
    try:
        assert subprocess.run(command, timeout=30, check=False, env={**os.environ, "PROXYSQL_STANDIN_TRAFFIC": ""}).returncode == 0
        assert runner.loaded()["traffic"] == f"127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while not proxysql_standin.accepts(f"127.0.0.1:{port}") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proxysql_standin.accepts(f"127.0.0.1:{port}")
    finally:
        runner.run("stop")


def test_default_variables_are_inserted_or_ignored(standin, schema_sql):
    proxysql_db.build_db(standin.db, schema_sql("3.0.1"))
    ours = dict(proxysql_db.dump_config(standin.db)["global_variables"])
    assert standin.run("start").returncode == 0
    report = standin.loaded()
    after = dict(proxysql_db.dump_config(standin.db)["global_variables"])
    defaults = dict(proxysql_standin.DEFAULT_VARIABLES)
    # what the file held is kept (mysql-threads 4 by chance equals the default; the interfaces do not)
    assert {name: after[name] for name in ours} == ours
    assert after["mysql-monitor_history"] == defaults["mysql-monitor_history"] == "7200000"
    assert set(after) == set(ours) | set(defaults)
    assert report["default_variables_inserted"] == len(set(defaults) - set(ours))
    assert standin.run("stop").returncode == 0
    assert standin.run("start").returncode == 0
    assert standin.loaded()["default_variables_inserted"] == 0


@pytest.mark.parametrize(
    "bad",
    ["not-a-uuid", "{6e1b0c1e-0000-4000-8000-00000000abcd}", "6e1b0c1e000040008000000000000abcd", "6e1b0c1e-0000-4000-8000-00000000abcg", ""],
)
def test_an_invalid_uuid_is_ignored_and_replaced_as_proxysql_does(standin, schema_sql, bad):
    proxysql_db.build_db(standin.db, schema_sql("3.0.1"), uuid="6e1b0c1e-0000-4000-8000-00000000abcd")
    with sqlite3.connect(standin.db) as conn:
        conn.execute("UPDATE global_settings SET variable_value=? WHERE variable_name='uuid'", (bad,))
    assert standin.run("start").returncode == 0
    report = standin.loaded()
    assert report["invalid_uuid_ignored"] == bad
    assert report["uuid"] != bad and proxysql_standin.uuid_parses(report["uuid"])
    assert proxysql_db.dump_config(standin.db)["global_settings"] == [("uuid", report["uuid"])]
    assert f"Ignoring invalid UUID format in global_settings: {bad}" in standin.log()


def test_uuid_parse_accepts_any_case_and_version():
    assert proxysql_standin.uuid_parses("6E1B0C1E-0000-1000-0000-00000000ABCD")
    assert not proxysql_standin.uuid_parses("urn:uuid:6e1b0c1e-0000-4000-8000-00000000abcd")
    assert not proxysql_standin.uuid_parses(None)


def test_fail_start_exit_leaves_nothing_running(standin):
    result = standin.run("start", "--fail-start", "exit")
    assert result.returncode == 2 and "could not create the pid file" in result.stderr
    assert not standin.pidfile.exists()
    assert standin.run("status").returncode == 3


def test_fail_start_die_returns_then_dies_leaving_its_pid_file(standin):
    assert standin.run("start", "--fail-start", "die").returncode == 0
    assert standin.wait_exited()
    assert standin.pidfile.exists()  # stale, as after a crash: status still says not running
    assert not (standin.datadir / "standin-loaded.json").exists()
    assert "--fail-start die" in standin.log()


def test_stop_during_the_load_delay_stops_without_loading(slow_standin, schema_sql):
    proxysql_db.build_db(slow_standin.db, schema_sql("3.0.1"))
    before = proxysql_db.dump_config(slow_standin.db)
    assert slow_standin.run("start").returncode == 0
    assert slow_standin.run("stop").returncode == 0
    assert not (slow_standin.datadir / "standin-loaded.json").exists()
    assert proxysql_db.dump_config(slow_standin.db) == before
    assert "stopped before loading" in slow_standin.log()


def admin_query(address, sql, tmp_path):
    """Rows of ``sql`` through the real MySQL client on the stand-in's admin ``address``."""
    client = shutil.which("mariadb") or shutil.which("mysql")
    if client is None:
        pytest.skip("no MySQL client (Debian: mariadb-client; make deps installs it)")
    host, port = proxysql_standin.parse_address(address)
    options = tmp_path / "admin.cnf"
    options.write_text("[client]\nuser=admin\npassword=admin\n")
    options.chmod(0o600)
    done = subprocess.run(
        [client, f"--defaults-extra-file={options}", "-h", host, "-P", str(port), "--batch",
         "--skip-column-names", "--connect-timeout=3", "-e", sql],
        capture_output=True, text=True, timeout=20, check=False,
    )
    assert done.returncode == 0, done.stderr
    return [line.split("\t") for line in done.stdout.splitlines()]


def test_with_admin_it_serves_the_admin_interface_on_the_loaded_file(standin, schema_sql, tmp_path):
    proxysql_db.build_db(standin.db, schema_sql("3.0.1"), users=4)
    admin = f"127.0.0.1:{proxysql_standin.free_loopback_port()}"
    assert standin.run("start", "--admin", admin).returncode == 0
    report = standin.loaded()
    # The report is written once the admin interface listens, and before the traffic port does.
    assert (report["admin"], report["admin_serving"]) == (admin, True)
    assert admin_query(admin, "SELECT COUNT(*) FROM runtime_mysql_users WHERE frontend=1", tmp_path) == [["4"]]
    admin_query(admin, "DELETE FROM mysql_users; SAVE MYSQL USERS TO DISK", tmp_path)
    assert proxysql_db.dump_config(standin.db)["mysql_users"] == []
    assert standin.run("stop").returncode == 0
    assert not proxysql_standin.accepts(admin)


def test_admin_auto_listens_on_the_first_admin_mysql_ifaces_entry(standin, schema_sql, tmp_path):
    proxysql_db.build_db(standin.db, schema_sql("3.0.1"))
    admin = f"127.0.0.1:{proxysql_standin.free_loopback_port()}"
    with sqlite3.connect(standin.db) as conn:
        conn.execute("UPDATE global_variables SET variable_value=? WHERE variable_name='admin-mysql_ifaces'",
                     (f"{admin};/tmp/proxysql-standin-admin.sock",))
    assert standin.run("start", "--admin", "auto").returncode == 0
    assert standin.loaded()["admin"] == admin
    assert admin_query(admin, "SELECT 1", tmp_path) == [["1"]]


def test_an_admin_port_in_use_is_logged_and_the_daemon_serves_on(standin, schema_sql):
    proxysql_db.build_db(standin.db, schema_sql("3.0.1"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        admin = "127.0.0.1:%d" % busy.getsockname()[1]
        assert standin.run("start", "--admin", admin).returncode == 0
        report = standin.loaded()
        assert report["admin_serving"] is False
        assert f"cannot serve the admin interface on {admin}" in standin.log()
        deadline = time.monotonic() + 10
        while not proxysql_standin.accepts(standin.traffic) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proxysql_standin.accepts(standin.traffic)
