"""The admin client's pure parts (argv, option file, output parser, defaults), its pillar keys,
and the layer rules, on data alone."""

import os
import re
import sqlite3
import sys

import proxysql_ha_admin as admin
import proxysql_ha_config
import proxysql_ha_layers as layers
import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError

SECRET = 'pa"ss\\w\tord with spaces'
PARAMS = {"host": "127.0.0.1", "port": 6032, "user": "admin", "password": SECRET,
          "connect_timeout": 3, "query_timeout": 10.0, "client": None}
LINUX_PILLAR = {"vhid": 9, "interface": "eth0", "vip": "192.0.2.50", "peer": {"host": "peer.example.test"}}


# --- argv and the option file ------------------------------------------------------------

def test_argv_holds_no_secret_and_starts_with_the_option_file():
    args = admin.argv("/usr/bin/mariadb", "/tmp/x/client.cnf", PARAMS)
    assert args[:2] == ["/usr/bin/mariadb", "--defaults-file=/tmp/x/client.cnf"]
    assert "--batch" in args and "--connect-timeout=3" in args
    assert not any(SECRET in a or "password" in a or "execute" in a for a in args)


def test_the_option_file_quotes_what_the_client_would_misread():
    text = admin.option_file_text(PARAMS)
    assert text.splitlines()[0] == "[client]"
    assert 'password="pa\\"ss\\\\w\\tord with spaces"' in text
    assert "protocol=TCP" in text and "port=6032" in text


def test_a_socket_path_is_reached_by_socket():
    text = admin.option_file_text(dict(PARAMS, host="/var/lib/proxysql/proxysql_admin.sock", port=None))
    assert 'socket="/var/lib/proxysql/proxysql_admin.sock"' in text and "protocol=SOCKET" in text
    assert "port=" not in text


def test_a_nul_in_the_credentials_is_refused():
    with pytest.raises(SaltInvocationError, match="NUL"):
        admin.option_file_text(dict(PARAMS, password="a\0b"))


def test_the_option_file_is_0600_in_a_0700_directory_and_removed(tmp_path, monkeypatch):
    """A fake client (a script that records what it was given) sees the file; after it, nothing is left."""
    record = tmp_path / "seen"
    client = tmp_path / "client"
    client.write_text(
        f"#!{sys.executable}\n"
        "import os, stat, sys\n"
        "path = sys.argv[1].split('=', 1)[1]\n"
        f"with open({str(record)!r}, 'w') as out:\n"
        "    out.write(oct(stat.S_IMODE(os.stat(path).st_mode)) + ' ' +\n"
        "              oct(stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode)) + ' ' + path + '\\n')\n"
        "    out.write(' '.join(sys.argv) + '\\n' + repr(sorted(os.environ)) + '\\n')\n"
        "    out.write(repr(sys.stdin.read()) + '\\n')\n"
        "print('1'); print('1')\n"
    )
    client.chmod(0o700)
    statement = f"UPDATE global_variables SET variable_value = 'admin:{SECRET}'"
    rows = admin.query(dict(PARAMS, client=str(client)), statement)
    assert rows == [{"1": "1"}]
    modes, argv_line, env, stdin = record.read_text().splitlines()
    assert stdin == repr(statement + ";\n")  # statements go to stdin, not argv
    file_mode, dir_mode, path = modes.split(" ", 2)
    assert (file_mode, dir_mode) == ("0o600", "0o700")
    assert not os.path.exists(path) and not os.path.exists(os.path.dirname(path))
    assert SECRET not in argv_line and SECRET not in env and "MYSQL_PWD" not in env


def test_a_missing_client_is_a_clear_error():
    with pytest.raises(CommandExecutionError, match="not an executable file: install mariadb-client"):
        admin.query(dict(PARAMS, client="/nonexistent/mariadb"), "SELECT 1")


# --- the output parser -------------------------------------------------------------------

def test_batch_output_parses_to_rows_with_nulls_and_escapes():
    text = "a\tb\tc\nx\\ty\tNULL\t\nline\\nbreak\\\\\t\\0\tz\n"
    assert admin.parse_batch(text) == [
        {"a": "x\ty", "b": None, "c": ""},
        {"a": "line\nbreak\\", "b": "\0", "c": "z"},
    ]


def test_no_output_is_no_rows():
    assert admin.parse_batch("") == []


@pytest.mark.parametrize("text, problem", [
    ("a\tb\n1\n", "fields"),                  # ragged row
    ("a\tb\n1\t2\t3\n", "fields"),
    ("a\ta\n1\t2\n", "header"),               # duplicate column names
    ("a\t\n1\t2\n", "header"),                # empty column name
    ("a\n1", "newline"),                      # truncated
    ("a\nx\\q\n", "escape"),                  # an escape the client never prints
    ("a\nx\\\n", "backslash"),                # a lone trailing backslash
])
def test_output_that_does_not_parse_is_refused(text, problem):
    with pytest.raises(ValueError, match=problem):
        admin.parse_batch(text)


def test_sections_of_several_statements_are_split_at_their_markers():
    marker = "proxysql_ha_section_ab"
    text = f"{marker}\n0\nn\n1\n2\n{marker}\n1\n{marker}\n2\nm\tk\nx\ty\n"
    assert admin.split_sections(text, marker, 3) == [[{"n": "1"}, {"n": "2"}], [], [{"m": "x", "k": "y"}]]
    with pytest.raises(ValueError, match="2 results for 3"):
        admin.split_sections(f"{marker}\n0\n{marker}\n1\n", marker, 3)
    with pytest.raises(ValueError, match="out of order"):
        admin.split_sections(f"{marker}\n1\n", marker, 1)
    with pytest.raises(ValueError, match="before the first marker"):
        admin.split_sections(f"x\n{marker}\n0\n", marker, 1)


@pytest.mark.parametrize("stderr, expected", [
    ("ERROR 2002 (HY000): Can't connect to server on '127.0.0.1' (115)", "is unreachable"),
    ("ERROR 2003 (HY000): Can't connect to MySQL server on '127.0.0.1' (111)", "is unreachable"),
    ("ERROR 1045 (28000): Access denied for user 'admin'@'localhost'", "access denied for user 'admin'"),
    ("ERROR 2013 (HY000): Lost connection to server at 'handshake'", "connection lost or timed out"),
    ("ERROR 1105 (HY000) at line 1: near \"x\": syntax error", "statement failed (error 1105"),
    ("Segmentation fault", "the client failed: Segmentation fault"),
])
def test_client_errors_are_named_with_the_address(stderr, expected):
    message = admin.classify_error(PARAMS, stderr)
    assert message.startswith("ProxySQL admin at 127.0.0.1:6032") and expected in message
    assert SECRET not in message


# --- defaults where ProxySQL takes them ------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("0.0.0.0:6032", ("127.0.0.1", 6032)),
    ("127.0.0.1:16032;/tmp/proxysql_admin.sock", ("127.0.0.1", 16032)),
    ("/var/lib/proxysql/admin.sock;0.0.0.0:6032", ("/var/lib/proxysql/admin.sock", None)),
    ("[::]:6032", ("::1", 6032)),
    ("10.0.0.5:7032", ("10.0.0.5", 7032)),
])
def test_the_admin_address_is_the_first_interface(value, expected):
    assert admin.parse_ifaces(value) == expected


@pytest.mark.parametrize("value", ["", "nohost", "host:0", "host:99999", None])
def test_an_unusable_interface_is_refused_naming_it(value):
    with pytest.raises(ValueError, match="empty|host:port"):
        admin.parse_ifaces(value)


def test_an_unusable_admin_interface_in_the_db_names_the_pillar_keys(tmp_path):
    db = tmp_path / "proxysql.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE global_variables (variable_name VARCHAR NOT NULL PRIMARY KEY, "
                     "variable_value VARCHAR NOT NULL)")
        conn.execute("INSERT INTO global_variables VALUES ('admin-mysql_ifaces', 'nohost')")
    conn.close()
    with pytest.raises(SaltInvocationError, match="admin-mysql_ifaces.*admin:host"):
        admin.params_from_db(db)


def test_the_credentials_are_the_first_pair():
    assert admin.parse_credentials("admin:admin;radmin:secret") == ("admin", "admin")
    with pytest.raises(SaltInvocationError, match="admin:user"):
        admin.parse_credentials("justuser")


def test_pillar_values_win_over_the_live_db(tmp_path):
    conf = dict(PARAMS, host="10.1.1.1", port=None)
    db = tmp_path / "proxysql.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE global_variables (variable_name VARCHAR NOT NULL PRIMARY KEY, "
                 "variable_value VARCHAR NOT NULL)")
    conn.execute("INSERT INTO global_variables VALUES ('admin-mysql_ifaces', '0.0.0.0:7777')")
    conn.commit()
    conn.close()
    params = admin.resolve(conf, db)
    assert (params["host"], params["port"], params["password"]) == ("10.1.1.1", 7777, SECRET)


def test_an_unreadable_live_db_is_a_clear_error(tmp_path):
    with pytest.raises(CommandExecutionError, match="set pillar admin:host"):
        admin.params_from_db(tmp_path / "absent.db")


def test_module_names_are_canonical_or_refused():
    assert admin.module_name("mysql_query_rules") == "MYSQL QUERY RULES"
    with pytest.raises(SaltInvocationError, match="unknown ProxySQL admin module 'MYSQL; DROP'"):
        admin.module_name("MYSQL; DROP")


# --- the admin pillar keys -------------------------------------------------------------------

def build(admin_keys):
    return proxysql_ha_config.build(dict(LINUX_PILLAR, admin=admin_keys), "Debian", "node-a")


def test_admin_defaults_leave_address_and_credentials_to_the_live_db():
    conf = build({})
    assert conf["admin"] == {"enabled": False, "layer_check_interval": 30,
                             "host": None, "port": None, "user": None, "password": None,
                             "connect_timeout": 3, "query_timeout": 10.0, "client": None}


def test_admin_keys_given_are_kept():
    conf = build({"host": "/var/lib/proxysql/admin.sock", "user": "radmin", "password": "s3cret",
                  "client": "/usr/bin/mariadb", "query_timeout": 4})
    assert conf["admin"]["host"] == "/var/lib/proxysql/admin.sock" and conf["admin"]["query_timeout"] == 4


@pytest.mark.parametrize("keys, key", [
    ({"host": "-oops"}, "admin:host"),
    ({"host": "a b"}, "admin:host"),
    ({"port": 0}, "admin:port"),
    ({"port": "6032"}, "admin:port"),
    ({"user": "a:b"}, "admin:user"),
    ({"user": ""}, "admin:user"),
    ({"password": "x;y"}, "admin:password"),
    ({"password": 5}, "admin:password"),
    ({"connect_timeout": 0}, "admin:connect_timeout"),
    ({"query_timeout": 0.1}, "admin:query_timeout"),
    ({"connect_timeout": 5, "query_timeout": 2}, "admin:query_timeout"),
    ({"client": "mariadb"}, "admin:client"),
    ({"socket": "/x"}, "admin:socket"),
])
def test_a_bad_admin_value_is_refused_naming_its_key(keys, key):
    with pytest.raises(SaltInvocationError, match=re.escape(key)):
        build(keys)


def test_a_bad_password_is_never_shown():
    with pytest.raises(SaltInvocationError) as err:
        build({"password": "very;secret"})
    assert "very;secret" not in str(err.value) and "<hidden>" in str(err.value)


# --- the layer rules -------------------------------------------------------------------------

def test_equal_layers_are_no_problem():
    assert layers.config_problems({"MYSQL USERS": {"disk": "a", "memory": "a", "runtime": "a"}}) == []


def test_an_edit_in_memory_is_not_saved_and_not_loaded():
    problems = layers.config_problems({
        "MYSQL USERS": {"disk": "a", "memory": "b", "runtime": "a"},
        "SCHEDULER": {"disk": "s", "memory": "s", "runtime": "s"},
    })
    assert [(p["problem"], p["modules"]) for p in problems] == [
        ("config_not_saved", ["MYSQL USERS"]), ("config_not_loaded", ["MYSQL USERS"])]
    assert "MYSQL USERS" in problems[0]["message"]


def test_loaded_to_runtime_but_not_saved_is_not_saved_only():
    problems = layers.config_problems({
        "MYSQL SERVERS": {"disk": "a", "memory": "b", "runtime": "b"},
        "MYSQL USERS": {"disk": "a", "memory": "a", "runtime": "c"},
    })
    assert [(p["problem"], p["modules"]) for p in problems] == [
        ("config_not_saved", ["MYSQL SERVERS", "MYSQL USERS"]), ("config_not_loaded", ["MYSQL USERS"])]


def test_each_module_names_the_layer_that_differs_and_the_command_to_run():
    problems = layers.config_problems({
        "MYSQL USERS": {"disk": "a", "memory": "b", "runtime": "b"},
        "MYSQL SERVERS": {"disk": "s", "memory": "t", "runtime": "s"},
    })
    saved, loaded = problems
    assert "MYSQL USERS: runtime differs from disk; run SAVE MYSQL USERS TO DISK" in saved["message"]
    assert "MYSQL SERVERS: memory differs from disk; run SAVE MYSQL SERVERS TO DISK" in saved["message"]
    assert loaded["modules"] == ["MYSQL SERVERS"]
    assert "run LOAD MYSQL SERVERS TO RUNTIME" in loaded["message"]


def test_only_a_new_kind_or_a_newly_named_module_is_alerted_again():
    users = {"problem": "config_not_saved", "modules": ["MYSQL USERS"], "message": "m"}
    both = dict(users, modules=["MYSQL SERVERS", "MYSQL USERS"])
    assert layers.new_alerts({}, [users]) == [users]
    assert layers.new_alerts(layers.seen([users]), [users]) == []
    assert layers.new_alerts(layers.seen([users]), [both]) == [both]
    assert layers.new_alerts(layers.seen([both]), [users]) == []  # fewer modules: nothing new
    assert layers.new_alerts(layers.seen([users]), []) == []


def test_unknown_layers_judge_nothing():
    assert layers.config_problems({"MYSQL USERS": {"disk": None, "memory": "b", "runtime": None}}) == []


def test_a_restore_not_running_names_the_modules_that_differ_and_by_how_many_rows():
    same = {"missing": 0, "extra": 0, "disk_unlike_file": []}
    assert layers.restore_problems({"MYSQL USERS": same, "SCHEDULER": same}) == []
    problems = layers.restore_problems({
        "MYSQL USERS": dict(same, missing=1, extra=2), "SCHEDULER": same,
        "MYSQL SERVERS": dict(same, disk_unlike_file=["mysql_servers"]),
    })
    assert [p["problem"] for p in problems] == ["restore_not_loaded"]
    assert problems[0]["modules"] == ["MYSQL SERVERS", "MYSQL USERS"]
    assert problems[0]["rows"]["MYSQL USERS"] == {"missing": 1, "extra": 2}
    assert "MYSQL USERS: 1 row(s) of the file not in runtime, 2 runtime row(s) not in the file" \
        in problems[0]["message"]
    assert "(mysql_servers) are not the installed file's" in problems[0]["message"]


@pytest.mark.parametrize("sql", ["", "  ;  ", None])
def test_an_empty_statement_is_refused_before_any_client_runs(sql):
    with pytest.raises(SaltInvocationError, match="no statement"):
        admin.query(dict(PARAMS, client="/nonexistent/mariadb"), sql)


def test_users_in_runtime_shape_are_one_row_per_side_and_active_only():
    rows = [
        {"~table": "mysql_users", "username": "a", "active": "1", "frontend": "1", "backend": "1"},
        {"~table": "mysql_users", "username": "b", "active": "0", "frontend": "1", "backend": "1"},
        {"~table": "mysql_users", "username": "c", "active": "1", "frontend": "0", "backend": "1"},
    ]
    shaped = admin.as_runtime("mysql_users", rows)
    assert [(r["username"], r["frontend"], r["backend"]) for r in shaped] == [
        ("a", "1", "0"), ("a", "0", "1"), ("c", "0", "1")]
    assert admin.as_runtime("mysql_users", shaped) == shaped  # runtime rows pass through


def test_a_shunned_server_counts_as_online():
    rows = [{"hostname": "db1", "status": "SHUNNED"}, {"hostname": "db2", "status": "OFFLINE_SOFT"}]
    assert [r["status"] for r in admin.as_runtime("mysql_servers", rows)] == ["ONLINE", "OFFLINE_SOFT"]


def test_runtime_is_compared_with_memory_and_disk_in_its_own_shape():
    same_shape = {"disk": "d", "memory": "d", "runtime": "r", "disk_runtime": "r", "memory_runtime": "r"}
    assert layers.config_problems({"MYSQL USERS": same_shape}) == []
    not_loaded = dict(same_shape, memory="m", memory_runtime="m2")
    assert [p["problem"] for p in layers.config_problems({"MYSQL USERS": not_loaded})] == [
        "config_not_saved", "config_not_loaded"]


def test_an_apply_flushes_the_configdb_first_then_loads_each_module_from_disk_and_to_runtime():
    assert admin.apply_statements(["mysql users", "SCHEDULER"]) == [
        "PROXYSQL FLUSH CONFIGDB", "LOAD MYSQL USERS FROM DISK", "LOAD MYSQL USERS TO RUNTIME",
        "LOAD SCHEDULER FROM DISK", "LOAD SCHEDULER TO RUNTIME"]


# --- the server-side verification: the SQL and as_runtime agree --------------------------

def _agreement_db(tmp_path, schema_sql):
    """A file whose rows exercise every runtime rule (inactive, frontend-only and backend-only
    users, a SHUNNED server), and an admin-like connection: the file attached as ``disk``,
    runtime tables with the DDL, filled from :func:`admin.as_runtime` of the file's rows."""
    statements = schema_sql("3.0.1")
    path = tmp_path / "proxysql.db"
    from standin import proxysql_db  # pylint: disable=import-outside-toplevel
    proxysql_db.build_db(path, statements, users=6, rules=3)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE mysql_users SET active = 0 WHERE rowid = 1")
        conn.execute("UPDATE mysql_users SET backend = 0 WHERE rowid = 2")
        conn.execute("UPDATE mysql_users SET frontend = 0 WHERE rowid = 3")
        conn.execute("UPDATE mysql_servers SET status = 'SHUNNED' WHERE rowid = 1")
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("ATTACH DATABASE ? AS disk", (str(path),))
    facts = admin.installed_facts(path)
    for statement in statements:
        table = statement.split()[2]
        conn.execute(statement.replace(f"CREATE TABLE {table} ", f"CREATE TABLE runtime_{table} ", 1))
    shaped = {}
    for module in facts["modules"]:
        spec = admin.MODULES[module]
        for table in spec["tables"]:
            cursor = conn.execute(f"SELECT * FROM disk.{table}"
                                  + (f" WHERE {spec['where']}" if spec["where"] else ""))
            names = [d[0] for d in cursor.description]
            rows = [dict(zip(names, (None if v is None else str(v) for v in r))) for r in cursor]
            shaped[table] = admin.as_runtime(table, rows)
            for row in shaped[table]:
                conn.execute(f"INSERT INTO runtime_{table} ({', '.join(row)}) VALUES "
                             f"({', '.join('?' * len(row))})", list(row.values()))
    return conn, facts, shaped


def _differences(conn, facts):
    sql, plan = admin.runtime_diff_sql(facts)
    cursor = conn.execute(sql)
    return admin.runtime_differences(dict(zip([d[0] for d in cursor.description],
                                              cursor.fetchone())), plan, facts)


def test_the_sql_verification_and_as_runtime_agree_on_data(tmp_path, schema_sql):
    conn, facts, shaped = _agreement_db(tmp_path, schema_sql)
    # three users on both sides (two rows each), one frontend-only, one backend-only, one inactive
    assert len(shaped["mysql_users"]) == 3 * 2 + 1 + 1
    assert "SHUNNED" not in {r["status"] for r in shaped["mysql_servers"]}
    differences = _differences(conn, facts)
    assert set(differences) == set(facts["modules"])
    assert all(d == {"missing": 0, "extra": 0, "disk_unlike_file": []}
               for d in differences.values())
    # ProxySQL shunning a server by itself, or holding a variable the file lacks, is no difference
    conn.execute("UPDATE runtime_mysql_servers SET status = 'SHUNNED'")
    conn.execute("INSERT INTO runtime_global_variables VALUES ('mysql-not_in_the_file', 'x')")
    assert not layers.restore_problems(_differences(conn, facts))


@pytest.mark.parametrize("change, module, rows", [
    ("DELETE FROM runtime_mysql_users WHERE rowid = (SELECT MIN(rowid) FROM runtime_mysql_users)",
     "MYSQL USERS", {"missing": 1, "extra": 0}),
    ("INSERT INTO runtime_mysql_query_rules (rule_id, active, apply) VALUES (4242, 1, 1)",
     "MYSQL QUERY RULES", {"missing": 0, "extra": 1}),
    ("UPDATE runtime_global_variables SET variable_value = 'changed' "
     "WHERE variable_name = (SELECT MIN(variable_name) FROM runtime_global_variables "
     "WHERE variable_name LIKE 'mysql-%')", "MYSQL VARIABLES", {"missing": 1, "extra": 1}),
    ("UPDATE runtime_mysql_users SET frontend = 1, backend = 1 WHERE rowid = 1",
     "MYSQL USERS", {"missing": 1, "extra": 1}),
])
def test_one_runtime_row_off_names_its_module_and_the_rows(tmp_path, schema_sql, change, module,
                                                          rows):
    conn, facts, _ = _agreement_db(tmp_path, schema_sql)
    conn.execute(change)
    problems = layers.restore_problems(_differences(conn, facts))
    assert [(p["problem"], p["modules"], p["rows"]) for p in problems] == [
        ("restore_not_loaded", [module], {module: rows})]


def test_a_disk_that_is_not_the_installed_file_is_reported(tmp_path, schema_sql):
    conn, facts, _ = _agreement_db(tmp_path, schema_sql)
    facts["tables"]["mysql_servers"]["rows"] += 1  # the file held one server more than disk
    problems = layers.restore_problems(_differences(conn, facts))
    assert problems[0]["modules"] == ["MYSQL SERVERS"]
    assert "(mysql_servers) are not the installed file's" in problems[0]["message"]


def _stamped(conn, path, token):
    """The install token ``token`` written into the file at ``path`` (attached as ``disk``)."""
    conn.execute("INSERT OR REPLACE INTO disk.global_settings VALUES (?, ?)",
                 (admin.INSTALL_STAMP, token))
    return admin.installed_facts(path)


def test_the_install_token_is_read_from_the_file_and_matched_on_disk(tmp_path, schema_sql):
    conn, facts, _ = _agreement_db(tmp_path, schema_sql)
    assert facts["stamp"] is None  # a file no install wrote: the counts are all there is
    facts = _stamped(conn, tmp_path / "proxysql.db", "42-9f2c")
    assert facts["stamp"] == "42-9f2c"
    sql, _ = admin.runtime_diff_sql(facts)
    assert "disk.global_settings" in sql
    assert all(d == {"missing": 0, "extra": 0, "disk_unlike_file": []}
               for d in _differences(conn, facts).values())


@pytest.mark.parametrize("change", [
    "UPDATE disk.global_settings SET variable_value = '41-0b1e' WHERE variable_name = "
    "'proxysql_ha_install'",
    "DELETE FROM disk.global_settings WHERE variable_name = 'proxysql_ha_install'",
])
def test_a_disk_with_another_token_or_none_is_not_the_installed_file_in_every_module(
        tmp_path, schema_sql, change):
    conn, _, _ = _agreement_db(tmp_path, schema_sql)
    facts = _stamped(conn, tmp_path / "proxysql.db", "42-9f2c")
    conn.execute(change)  # same rows, same counts: only the token tells the files apart
    differences = _differences(conn, facts)
    assert {m: d["disk_unlike_file"] for m, d in differences.items()} == \
        {m: list(admin.MODULES[m]["tables"]) for m in facts["modules"]}
    assert all(d["missing"] == d["extra"] == 0 for d in differences.values())
    problems = layers.restore_problems(differences)
    assert problems[0]["modules"] == sorted(facts["modules"])
    assert "the disk ProxySQL has open is not the file installed: PROXYSQL FLUSH CONFIGDB was " \
           "not done, or ProxySQL uses another datadir than proxysql_ha:datadir" \
           in problems[0]["message"]
