"""Restore under ProxySQL's own start-up rule: rolling upgrades, and the classes of candidate the
judge refuses only once installed or through the names and dates around it.

B runs ProxySQL 3.0.1 (its stand-in applies ProxySQL's start-up rule with the migrations of
upgrades.json). Each candidate is placed in B's inbox, where it is the newest thing B could restore;
A's shipped backup is the older valid one to fall back to.
"""

import contextlib
import json
import shutil
import sqlite3
import time

import pytest

from tests.functional.test_bad_inputs import Candidate, changed, rejection, resealed
from standin import proxysql_db


def users(path):
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return sorted(row[0] for row in conn.execute("SELECT username FROM mysql_users"))


def loaded(node, timeout=20.0):
    """Wait (bounded) until the stand-in ran its start-up rule on the live db: 3.0.1's pgsql_users exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.closing(sqlite3.connect(f"file:{node.live_db}?mode=ro", uri=True)) as conn:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'pgsql_users'").fetchone() and node.running():
                return True
        time.sleep(0.1)
    return False


def from_version(c, version, **build):
    """A backup made by ProxySQL ``version``: its own schema and rows, sealed truly."""
    path = c.scratch / f"proxysql-{version}.db"
    proxysql_db.build_db(path, proxysql_db.load_schema(c.shared_dir, version), users=9, seed=7, **build)
    resealed(c, path)
    return path


@pytest.mark.parametrize("version", ["2.0.18", "2.6.6", "2.7.2"])
def test_a_backup_of_an_older_proxysql_is_restored_and_started_without_losing_a_row(
        pair, tmp_path, shared_dir, version):
    pair.a.ha.ship()
    bad = Candidate(pair, tmp_path, shared_dir)
    made = from_version(bad, version)
    live_uuid = pair.b.live_uuid()

    report = pair.b.ha.restore(start=True)

    assert (report["restored"], report["chosen"]) == (True, bad.name), report["rejected"]
    assert loaded(pair.b)
    assert users(pair.b.live_db) == users(made)  # every user survived ProxySQL's migration
    assert pair.b.live_uuid() == live_uuid
    with contextlib.closing(sqlite3.connect(pair.b.live_db)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_the_verdict_says_what_proxysql_will_do_with_each_table(pair, tmp_path, shared_dir):
    bad = Candidate(pair, tmp_path, shared_dir)
    from_version(bad, "2.0.18")

    listing = pair.b.ha.list_backups()

    verdict = next(v for v in listing["incoming"] if v["name"] == bad.name)
    assert verdict["valid"], verdict["reason"]
    assert verdict["tables"]["migrated"]["mysql_users"] == "mysql_users_v200"
    assert "pgsql_users" in verdict["tables"]["created_empty"]


@pytest.mark.parametrize("how", ["newer-layout", "2.7.2"])
def test_the_judge_refuses_exactly_when_proxysql_s_start_up_would_lose_rows(pair, tmp_path, shared_dir, how):
    """Accepted or refused as the stand-in's start-up rule (ProxySQL's, with its migrations) keeps or loses rows."""
    bad = Candidate(pair, tmp_path, shared_dir)
    if how == "newer-layout":
        changed(bad, "ALTER TABLE mysql_users ADD COLUMN future_column VARCHAR")
    else:
        from_version(bad, how)
    verdict = next(v for v in pair.b.ha.list_backups()["incoming"] if v["name"] == bad.name)

    trial = tmp_path / "trial.db"
    shutil.copyfile(bad.db, trial)
    before = users(trial)
    statements = proxysql_db.load_schema(shared_dir, "3.0.1")
    upgrades = proxysql_db.load_upgrades(proxysql_db.upgrades_path(proxysql_db.schema_path(shared_dir, "3.0.1")))
    with contextlib.closing(sqlite3.connect(trial, isolation_level=None)) as conn:
        proxysql_db.apply_startup_rule(conn, statements, upgrades)
    kept = users(trial) == before
    assert verdict["valid"] is kept, verdict["reason"]


def test_an_installed_copy_that_fails_its_check_leaves_the_live_db_and_the_next_backup_is_restored(
        pair, tmp_path, shared_dir):
    """global_settings empty but in a layout that refuses the uuid: valid as judged, unfit once installed."""
    older = pair.a.ha.ship()["name"]
    bad = Candidate(pair, tmp_path, shared_dir)
    changed(bad, "DROP TABLE global_settings",
            "CREATE TABLE global_settings (variable_name VARCHAR NOT NULL PRIMARY KEY "
            "CHECK (variable_name <> 'uuid'), variable_value VARCHAR NOT NULL)")
    live = pair.b.live_db.read_bytes()

    verdict = next(v for v in pair.b.ha.list_backups()["incoming"] if v["name"] == bad.name)
    assert verdict["valid"], verdict["reason"]
    pair.b.configure(stop_on_backup=False)
    pre = {p.name for p in pair.b.datadir.iterdir()}
    report = pair.b.ha.restore(start=True)

    assert (report["restored"], report["chosen"]) == (True, older), report["rejected"]
    reasons = rejection(report, bad.name)
    assert reasons and "installed copy failed" in reasons[0] and "CHECK constraint failed" in reasons[0]
    assert live != pair.b.live_db.read_bytes()  # the older backup went in ...
    assert any(n.startswith("proxysql.db.pre-restore-") for n in {p.name for p in pair.b.datadir.iterdir()} - pre)
    assert pair.b.running()


def test_a_wal_mode_backup_is_installed_with_the_rollback_journal_and_nothing_beside_it(pair, tmp_path, shared_dir):
    bad = Candidate(pair, tmp_path, shared_dir)
    path = tmp_path / "wal.db"
    shutil.copyfile(bad.good_db, path)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    resealed(bad, path)

    report = pair.b.ha.restore(start=True)

    assert (report["restored"], report["chosen"]) == (True, bad.name), report["rejected"]
    assert pair.b.live_db.read_bytes()[18:20] == b"\x01\x01"
    assert not [p.name for p in pair.b.datadir.iterdir() if p.name.endswith(("-wal", "-shm"))]
    assert pair.b.running()


def test_a_name_with_an_impossible_date_stops_nothing(pair, tmp_path, shared_dir):
    older = pair.a.ha.ship()["name"]
    bad = Candidate(pair, tmp_path, shared_dir)
    impossible = "proxysql-ha-g0000000009-20261399T999999999Z-node-a"
    shutil.copyfile(bad.good_db, pair.b.inbox_dir / f"{impossible}.db")
    (pair.b.inbox_dir / f"{impossible}.json").write_text(json.dumps(dict(bad.good_manifest, name=impossible)))

    assert pair.b.ha.status()["newest_received"]["name"] == older
    assert pair.b.ha.purge()["incoming"]["kept_newest_valid"] == older
    report = pair.b.ha.restore(start=True)
    assert (report["restored"], report["chosen"]) == (True, older)
    assert (pair.b.inbox_dir / f"{impossible}.db").exists()  # not ours to delete: not of our naming
    assert pair.b.running()


def test_generations_past_ten_digits_keep_shipping_and_restoring(pair):
    a = pair.a
    first = a.ha.backup()["name"]
    wide = first.replace("g0000000001", "g9999999999")
    for ext in (".db", ".json"):
        (a.backup_dir / f"{first}{ext}").rename(a.backup_dir / f"{wide}{ext}")
    manifest = a.manifest(wide)
    (a.backup_dir / f"{wide}.json").write_text(json.dumps(dict(manifest, name=wide, generation=9_999_999_999)))
    a.save_users(4)

    shipped = a.ha.ship()["name"]

    assert shipped.startswith("proxysql-ha-g10000000000-")
    assert pair.b.ha.restore(start=True)["chosen"] == shipped


def test_a_node_whose_proxysql_never_ran_says_so_and_the_pillar_fingerprint_lets_it_restore(pair):
    shipped = pair.a.ha.ship()["name"]
    fingerprint = pair.a.ha.list_backups()["expected_schema"]["fingerprint"]
    pair.b.live_db.unlink()

    report = pair.b.ha.restore(start=False)
    assert report["restored"] is False
    assert "ProxySQL never ran here" in rejection(report, shipped)[0]
    kinds = [p["kind"] for p in pair.b.ha.status()["problems"]]
    assert "schema_unknown" in kinds

    pair.b.configure(schema_fingerprint=fingerprint)
    assert pair.b.ha.restore(start=True)["chosen"] == shipped
    assert pair.b.running()


def test_status_reports_a_version_skew_as_a_problem_of_its_own(pair):
    pair.a.configure(proxysql_version="2.7.2")
    pair.a.ha.ship()
    pair.b.configure(proxysql_version="3.0.1")

    report = pair.b.ha.status()

    assert report["proxysql_versions"] == {"local": "3.0.1", "peer": "2.7.2"}
    assert [p for p in report["problems"] if p["kind"] == "version_skew"]


def test_a_candidate_judged_at_arrival_is_not_read_again_while_unchanged(pair):
    """The verdict comes from the cached facts while the file's (dev, inode, size, mtime) stay."""
    shipped = pair.a.ha.ship()["name"]
    assert pair.b.ha.list_backups()["incoming"][0]["valid"]
    cache_file = pair.b.state_dir / "facts.json"
    cache = json.loads(cache_file.read_text())
    entry = cache[str(pair.b.inbox_dir / f"{shipped}.db")]
    assert oct(cache_file.stat().st_mode & 0o777) == "0o600"
    entry["integrity"] = "marked by the test"  # what only the cache says
    cache_file.write_text(json.dumps(cache))

    verdict = pair.b.ha.list_backups()["incoming"][0]

    assert verdict["reason"] == "integrity_check failed (with CHECK and NOT NULL): marked by the test"


@pytest.mark.parametrize("garbage", ['{"x": "y"}', "[1, 2]", "not json", '{"/no/such": {"key": 1}}'])
def test_a_damaged_facts_cache_costs_a_read_never_a_verdict(pair, garbage):
    shipped = pair.a.ha.ship()["name"]
    pair.b.state_dir.mkdir(parents=True, exist_ok=True)
    (pair.b.state_dir / "facts.json").write_text(garbage)
    stale = {str(pair.b.inbox_dir / f"{shipped}.db"): "not facts"}
    if garbage == '{"x": "y"}':
        (pair.b.state_dir / "facts.json").write_text(json.dumps(stale))

    report = pair.b.ha.restore(start=True)

    assert (report["restored"], report["chosen"]) == (True, shipped), report["rejected"]
    assert pair.b.running()
