"""Divergence: a node back as BACKUP that holds changes the pair's MASTER does not have says so, row by row."""

import sqlite3

import pytest
from salt.exceptions import SaltInvocationError


def add_rule(db, rule_id, comment):
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("INSERT INTO mysql_query_rules (rule_id, active, apply, comment) VALUES (?, 1, 1, ?)",
                     (rule_id, comment))
    conn.close()


def diverged(report):
    return [p for p in report["problems"] if p["kind"] == "diverged"]


@pytest.fixture
def returned(pair):
    """A was MASTER and shipped; B took over and shipped its own copy to A; A is back as BACKUP."""
    a, b = pair.a, pair.b
    a.ha.ship()
    pair.fail_over()
    assert b.ha.promote()["errors"] == []
    assert a.ha.demote()["role"] == "BACKUP"
    b.save_users(4)  # the new MASTER moves on: its changes are not A's
    assert b.ha.ship()["name"] in b.backups()
    return pair


def test_a_node_in_line_reports_no_divergence(returned):
    report = returned.a.ha.status()
    assert report["diverged"] is None and diverged(report) == []


def test_a_change_saved_on_the_old_master_is_reported_row_by_row(returned):
    a = returned.a
    add_rule(a.live_db, 4242, "saved on A just before it died")

    report = a.ha.status()

    (problem,) = diverged(report)
    assert problem["copy"] == "live"
    rules = problem["tables"]["mysql_query_rules"]
    assert rules["counts"] == {"added": 1, "removed": 0, "changed": 0}
    assert rules["added"][0]["rule_id"] == 4242
    assert set(problem["tables"]) == {"mysql_query_rules"}  # B's newer users are B's, not A's
    assert "pre-restore" in problem["message"] and "proxysql_ha.diff" in problem["message"]
    assert a.ha.check() is False


def test_an_unshipped_backup_of_its_own_is_reported(returned):
    a = returned.a
    a.vip = "127.0.0.1"  # MASTER again for a moment: it takes a backup that is never shipped
    a.configure()
    add_rule(a.live_db, 77, "unshipped")
    made = a.ha.backup()
    assert made["result"] == "created"
    a.vip = "127.0.0.66"
    a.configure()

    problems = diverged(a.ha.status())

    assert problems and problems[0]["copy"] == made["name"]
    assert problems[0]["tables"]["mysql_query_rules"]["added"][0]["rule_id"] == 77


def test_diff_reads_live_backups_and_pre_restore_copies_and_nothing_else(returned):
    a, b = returned.a, returned.b
    add_rule(a.live_db, 9, "x")
    name = b.backups()[-1]
    found = a.ha.diff(name, "live")
    assert found["tables"]["mysql_query_rules"]["added"][0]["rule_id"] == 9
    pre = next(b.datadir.glob("proxysql.db.pre-restore-*"))
    assert b.ha.diff(str(pre), pre.name)["identical"]
    for bad in ("/etc/passwd", "../proxysql.db", str(b.datadir / ".." / "proxysql" / "x.pre-restore-1"),
                str(a.datadir / "proxysql.db.pre-restore-x"), "proxysql.db-journal"):
        with pytest.raises(SaltInvocationError):
            b.ha.diff(bad, "live")


def test_diff_masks_passwords(returned):
    a = returned.a
    conn = sqlite3.connect(a.live_db)
    with conn:
        conn.execute("UPDATE mysql_users SET password = 'topsecret-new'")
    conn.close()
    found = a.ha.diff(a.backups()[-1], "live")
    assert found["tables"]["mysql_users"]["counts"]["changed"] > 0
    assert "topsecret" not in repr(found)
