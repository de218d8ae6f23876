"""The row-level diff of two ProxySQL databases: on data, and on real databases of the shared schema."""

import sqlite3

import proxysql_ha_diff as d
import proxysql_ha_sqlite

USERS = {"columns": ["username", "password", "backend", "comment"], "key": ["username", "backend"]}


def users(*rows):
    return {"mysql_users": dict(USERS, rows=list(rows))}


def test_rows_matched_by_primary_key_added_removed_changed():
    old = users(("app", "s1", 1, ""), ("gone", "s2", 1, ""), ("same", "s3", 1, ""))
    new = users(("app", "s1", 1, "edited"), ("same", "s3", 1, ""), ("fresh", "s4", 1, ""))
    found = d.diff(old, new)["tables"]["mysql_users"]
    assert found["counts"] == {"added": 1, "removed": 1, "changed": 1}
    assert found["added"][0]["username"] == "fresh"
    assert found["removed"][0]["username"] == "gone"
    assert found["changed"] == [{"key": {"username": "app", "backend": 1},
                                 "columns": {"comment": {"old": "", "new": "edited"}}}]


def test_identical_copies_report_nothing():
    rows = users(("app", "s1", 1, ""))
    assert d.diff(rows, users(("app", "s1", 1, ""))) == {"identical": True, "tables": {}}


def test_secrets_are_masked_even_when_they_changed():
    found = d.diff(users(("app", "old-secret", 1, "")), users(("app", "new-secret", 1, "")))
    change = found["tables"]["mysql_users"]["changed"][0]
    assert change["columns"] == {"password": {"old": d.MASK, "new": d.MASK}}
    assert "secret" not in repr(found)
    variables = {"columns": ["variable_name", "variable_value"], "key": ["variable_name"]}
    old = {"global_variables": dict(variables, rows=[("admin-admin_credentials", "admin:pw1")])}
    new = {"global_variables": dict(variables, rows=[("admin-admin_credentials", "admin:pw2"),
                                                     ("mysql-threads", "8")])}
    found = d.diff(old, new)["tables"]["global_variables"]
    assert "pw" not in repr(found)
    assert found["added"] == [{"variable_name": "mysql-threads", "variable_value": "8"}]


def test_output_bounded_with_full_counts():
    old = users()
    new = users(*[(f"u{i}", "x", 1, "") for i in range(500)])
    found = d.diff(old, new, limit=5)["tables"]["mysql_users"]
    assert found["counts"]["added"] == 500 and len(found["added"]) == 5


def test_table_without_key_compared_as_whole_rows_with_duplicates():
    spec = {"columns": ["a", "b"], "key": []}
    old = {"t": dict(spec, rows=[(1, 2), (1, 2), (3, 4)])}
    new = {"t": dict(spec, rows=[(1, 2), (3, 5)])}
    found = d.diff(old, new)["tables"]["t"]
    assert found["counts"] == {"added": 1, "removed": 2, "changed": 0}


def test_uuid_that_proxysql_writes_at_start_is_left_out():
    spec = {"columns": ["variable_name", "variable_value"], "key": ["variable_name"]}
    old = {"global_settings": dict(spec, rows=[("uuid", "a")])}
    new = {"global_settings": dict(spec, rows=[("uuid", "b")])}
    assert d.diff(old, new)["identical"]


def test_the_token_each_install_writes_is_left_out_as_the_uuid_is():
    spec = {"columns": ["variable_name", "variable_value"], "key": ["variable_name"]}
    never = {"global_settings": dict(spec, rows=[("uuid", "a")])}
    installed = {"global_settings": dict(spec, rows=[("proxysql_ha_install", "7-1f"), ("uuid", "a")])}
    again = {"global_settings": dict(spec, rows=[("proxysql_ha_install", "8-2e"), ("uuid", "b")])}
    assert d.diff(never, installed)["identical"] and d.diff(installed, again)["identical"]
    assert d.own_changes(never, again, installed)["identical"]
    other = {"global_settings": dict(spec, rows=[("proxysql_ha_install", "8-2e"), ("other", "x")])}
    assert d.diff(again, other)["tables"]["global_settings"]["counts"]["added"] == 1


def test_tables_on_one_side_or_reshaped_are_named():
    spec = {"columns": ["a"], "key": ["a"], "rows": [(1,)]}
    found = d.diff({"t": spec}, {"u": spec, "t": dict(spec, columns=["a", "b"])})["tables"]
    assert found["u"] == {"only_in": "new", "rows": 1}
    assert "columns_differ" in found["t"]


def test_own_changes_leaves_out_what_the_peer_changed_and_what_it_already_has():
    base = users(("app", "s", 1, ""), ("peer", "s", 1, ""), ("both", "s", 1, ""))
    ours = users(("app", "s", 1, "ours"), ("peer", "s", 1, ""), ("both", "s", 1, "same"),
                 ("mine", "s", 1, ""))
    theirs = users(("app", "s", 1, ""), ("peer", "s", 1, "theirs"), ("both", "s", 1, "same"))
    found = d.own_changes(base, ours, theirs)["tables"]["mysql_users"]
    assert found["counts"] == {"added": 1, "removed": 0, "changed": 1}
    assert found["added"][0]["username"] == "mine"
    assert found["changed"][0]["key"]["username"] == "app"
    assert d.own_changes(base, base, theirs)["identical"]


def test_own_changes_without_base_is_the_whole_diff():
    assert d.own_changes(None, users(("a", "s", 1, "")), users())["tables"]["mysql_users"][
        "counts"]["added"] == 1


def test_real_databases_read_by_primary_key(make_db):
    old, new = make_db("old.db", seed=1), make_db("new.db", seed=1)
    conn = sqlite3.connect(new)
    conn.execute("UPDATE mysql_servers SET weight = weight + 7 WHERE rowid = 1")
    conn.execute("INSERT INTO mysql_query_rules (rule_id, active, apply) VALUES (999, 1, 1)")
    conn.commit()
    conn.close()
    read = [proxysql_ha_sqlite.read_live(str(p), proxysql_ha_sqlite.contents) for p in (old, new)]
    assert read[0]["mysql_users"]["key"] == ["username", "backend"]
    assert read[0]["mysql_servers"]["key"] == ["hostgroup_id", "hostname", "port"]
    found = d.diff(*read)["tables"]
    assert set(found) == {"mysql_servers", "mysql_query_rules"}  # the uuids differ: left out
    assert found["mysql_query_rules"]["added"][0]["rule_id"] == 999
    assert list(found["mysql_servers"]["changed"][0]["columns"]) == ["weight"]
