"""The pure judge on data alone: ProxySQL's start-up rule table by table, and every other rule."""

import datetime
import hashlib
import itertools
import json

import proxysql_ha_judge as judge
import pytest

from standin import proxysql_db

VERSIONS = ("2.0.18", "2.4.8", "2.5.5", "2.6.6", "2.7.2", "3.0.1")
NAME = "proxysql-ha-g0000000007-20270115T080000000Z-node-a"
NAME_TS = datetime.datetime(2027, 1, 15, 8, tzinfo=datetime.timezone.utc).timestamp()


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def upgrades(shared_dir):
    return json.loads((shared_dir / "proxysql" / "upgrades.json").read_text())["tables"]


@pytest.fixture(scope="module")
def layouts(shared_dir):
    """``{version: {table: ddl}}`` of the six schema files."""
    return {v: {proxysql_db.table_name(s): s
                for s in proxysql_db.read_schema(shared_dir / "proxysql" / f"schema-{v}.sql")}
            for v in VERSIONS}


def test_the_migration_record_is_exactly_upgrades_json(upgrades):
    recorded = {t: {h: l["renamed_to"] for h, l in by_sha.items()} for t, by_sha in judge.MIGRATIONS.items()}
    source = {t: {sha(e["ddl"]): e["renamed_to"] for e in entries} for t, entries in upgrades.items()}
    assert recorded == source


def test_the_column_losses_and_the_failed_copy_are_those_the_notes_name(upgrades):
    for table, entries in upgrades.items():
        for entry in entries:
            layout = judge.MIGRATIONS[table][sha(entry["ddl"])]
            for column in layout["loses"]:
                assert column in entry["note"] and "carry over" in entry["note"]
            assert layout["copies_rows"] == ("copy fails" not in entry["note"]), entry["renamed_to"]


@pytest.mark.parametrize("table", sorted(judge.MIGRATIONS))
def test_each_migration_source_with_rows_is_accepted_as_migrated_or_refused_when_its_copy_fails(
        upgrades, layouts, table):
    local = layouts["3.0.1"]
    for entry in upgrades[table]:
        backup = dict(local, **{table: entry["ddl"]})
        reason, tables, _notes = judge.compatibility(backup, {table: 5}, {}, local)
        if "copy fails" in entry["note"]:
            assert "does not copy them" in reason
        else:
            assert reason is None and tables["migrated"][table] == entry["renamed_to"]


def test_a_migration_whose_rename_target_exists_is_refused(upgrades, layouts):
    local = layouts["3.0.1"]
    backup = dict(local, mysql_users=layouts["2.0.18"]["mysql_users"])
    reason, _t, _n = judge.compatibility(backup, {"mysql_users": 3}, {}, local, {"mysql_users_v200"})
    assert "mysql_users_v200 exists" in reason


def lossy(backup, local, upgrades):
    """Independently of the judge: the tables ProxySQL ``local`` drops from a ``backup`` file."""
    migratable = {t: {e["ddl"] for e in entries if "copy fails" not in e["note"]} for t, entries in upgrades.items()}
    return sorted(t for t in local if t in backup and backup[t] != local[t]
                  and backup[t] not in migratable.get(t, ()))


@pytest.mark.parametrize("pair", list(itertools.permutations(VERSIONS, 2)), ids="-on-".join)
def test_every_version_pair_is_accepted_or_refused_as_proxysql_start_up_keeps_or_loses_rows(
        layouts, upgrades, pair):
    made_by, running = pair
    backup, local = layouts[made_by], layouts[running]
    rows = {t: 4 for t in backup}
    reason, tables, notes = judge.compatibility(backup, rows, {}, local)
    lost = lossy(backup, local, upgrades)
    if lost:
        assert reason and all(t in reason for t in lost), (lost, reason)
    else:
        assert reason is None
        assert sorted(tables["created_empty"]) == sorted(set(local) - set(backup))
        assert sorted(tables["unserved"]) == sorted(set(backup) - set(local))
        assert [n for n in notes if "does not serve" in n] == [
            f"{t}: 4 rows the local ProxySQL does not serve" for t in sorted(set(backup) - set(local))]
    # the same pair with every table empty is never refused: nothing would be lost
    assert judge.compatibility(backup, {}, {}, local)[0] is None


def test_upgrading_from_2_0_18_to_3_0_1_migrates_three_tables_and_creates_the_new_ones_empty(layouts):
    reason, tables, _notes = judge.compatibility(layouts["2.0.18"], {"mysql_users": 3}, {}, layouts["3.0.1"])
    assert reason is None
    assert tables["migrated"] == {"mysql_users": "mysql_users_v200", "mysql_query_rules": "mysql_query_rules_v200e",
                                  "restapi_routes": "restapi_routes_v2015"}
    assert "global_settings" in tables["created_empty"] and "pgsql_users" in tables["created_empty"]


def test_a_known_column_loss_is_reported_when_the_column_holds_values(layouts):
    values = {"mysql_query_rules": {"cache_timeout": 2}}
    _r, _t, notes = judge.compatibility(layouts["2.0.18"], {"mysql_query_rules": 3}, values, layouts["3.0.1"])
    assert "mysql_query_rules.cache_timeout: 2 values not carried over by the migration" in notes
    assert not judge.compatibility(layouts["2.0.18"], {"mysql_query_rules": 3}, {}, layouts["3.0.1"])[2]


# ---- the whole verdict ---------------------------------------------------------------------


def facts_for(tables, **changes):
    facts = {"size": 10, "sha256": "a" * 64, "content_sha256": "b" * 64, "journal_mode": "delete",
             "sqlite_error": None, "integrity": "ok", "tables": tables, "served_tables": sorted(tables),
             "missing_tables": [], "objects": [{"type": "table", "name": t, "table": t, "sql": s}
                                               for t, s in tables.items()],
             "ddl_fingerprint": "f" * 64, "served_fingerprint": "f" * 64, "row_counts": {t: 1 for t in tables},
             "value_counts": {}, "global_settings": {}}
    facts.update(changes)
    return facts


def manifest_for(facts, **changes):
    manifest = {"name": NAME, "generation": 7, "node_id": "node-a", "created": "2027-01-15T08:00:00.000+00:00",
                "created_ts": NAME_TS,
                "sha256": facts["sha256"], "size": facts["size"], "ddl_fingerprint": facts["ddl_fingerprint"],
                "row_counts": facts["row_counts"], "name_generation": 7, "name_node": "node-a"}
    manifest["name_ts"] = manifest["created_ts"]
    manifest.update(changes)
    return manifest


@pytest.fixture
def local(layouts):
    return layouts["3.0.1"]


def verdict(local, manifest_changes=None, expected=None, now=None, **fact_changes):
    facts = facts_for(local, **fact_changes)
    manifest = manifest_for(facts, **(manifest_changes or {}))
    return judge.judge(manifest, facts, expected or {"tables": local},
                       manifest["name_ts"] + 60 if now is None else now)


def test_a_backup_of_the_local_layout_is_valid_and_every_table_kept(local):
    result = verdict(local)
    assert (result["valid"], result["reason"]) == (True, None)
    assert sorted(result["tables"]["kept"]) == sorted(local)


@pytest.mark.parametrize(("manifest_changes", "fact_changes", "reason"), [
    ({"generation": 8}, {}, "manifest generation 8 differs from the name's 7"),
    ({"node_id": "node-\x1b[31mb"}, {}, r"manifest node node-\x1b[31mb differs"),
    ({"created_ts": float("inf")}, {}, "not a finite number"),
    ({"created_ts": 1.0}, {}, "differs from the name's stamp"),
    ({"size": 11}, {}, "size 10 differs from the manifest's 11"),
    ({"sha256": "c" * 64}, {}, "sha256 differs"),
    ({}, {"sqlite_error": "file is not a database"}, "unreadable as SQLite"),
    ({}, {"integrity": "CHECK constraint failed in mysql_servers"}, "CHECK constraint failed"),
    ({}, {"missing_tables": ["mysql_users"]}, "missing tables mysql_users"),
    ({}, {"objects": [{"type": "trigger", "name": "t", "table": "x", "sql": "CREATE TRIGGER t"}]}, "trigger t"),
    ({}, {"objects": [{"type": "view", "name": "v", "table": "v", "sql": "CREATE VIEW v"}]}, "view v"),
    ({}, {"objects": [{"type": "index", "name": "i", "table": "x", "sql": "CREATE INDEX i"}]}, "index i"),
    ({"ddl_fingerprint": "e" * 64}, {}, "the schema differs from the manifest's"),
    ({"row_counts": {}}, {}, "row counts differ"),
], ids=["generation", "node", "infinite-time", "time", "size", "sha256", "not-sqlite", "check", "tables",
        "trigger", "view", "index", "schema", "rows"])
def test_each_rule_refuses_with_its_reason(local, manifest_changes, fact_changes, reason):
    result = verdict(local, manifest_changes, **fact_changes)
    assert result["valid"] is False
    assert reason in result["reason"], result["reason"]


def test_sqlite_s_own_autoindexes_are_not_foreign_objects(local):
    auto = [{"type": "index", "name": "sqlite_autoindex_mysql_users_1", "table": "mysql_users", "sql": None}]
    assert verdict(local, objects=auto)["valid"]


def test_a_backup_dated_in_the_future_is_refused_until_the_clock_passes_it(local):
    result = verdict(local, now=1_000_000_000.0)
    assert "dated in the future" in result["reason"]


def test_without_a_local_layout_the_reason_says_so(local):
    result = verdict(local, expected={"error": "/var/db/proxysql/proxysql.db does not exist"})
    assert result["reason"] == "cannot check the schema: /var/db/proxysql/proxysql.db does not exist"


def test_a_pillar_fingerprint_accepts_only_that_exact_served_layout(local):
    assert verdict(local, expected={"fingerprint": "f" * 64})["valid"]
    assert "schema_fingerprint" in verdict(local, expected={"fingerprint": "0" * 64})["reason"]


def test_printable_escapes_control_characters_and_bounds_the_length():
    assert judge.printable("a\nb\x1b[2J") == "a\\x0ab\\x1b[2J"
    assert len(judge.printable("x" * 1000)) == 203
