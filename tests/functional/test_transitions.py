"""CARP transitions (promote, demote) and what status and check report about a node."""

import re

import pytest
from salt.exceptions import CommandExecutionError


def kinds(report):
    return sorted(problem["kind"] for problem in report["problems"])


@pytest.fixture
def shipped(pair):
    """A's backup of a changed configuration, shipped into B's inbox as generation 2: its name."""
    pair.a.ha.ship()
    pair.a.save_users(7)
    return pair.a.ha.ship()["name"]


def test_promote_on_a_backup_node_does_nothing(pair, shipped):
    b = pair.b
    live = b.live_db.read_bytes()

    report = b.ha.promote()

    assert (report["acted"], report["role"]) == (False, "BACKUP")
    assert not b.running()
    assert b.live_db.read_bytes() == live


def test_promote_after_failover_restores_the_newer_generation_and_starts_proxysql(pair, shipped):
    a, b = pair.a, pair.b
    pair.fail_over()

    report = b.ha.promote()

    assert (report["acted"], report["role"], report["errors"]) == (True, "MASTER", [])
    assert (report["restore"]["restored"], report["restore"]["chosen"]) == (True, shipped)
    assert report["started"] is True
    assert b.running()
    assert b.shared_config() == a.shared_config()
    # its own timings, as the bench splits them: before the restore, and the check after the start
    assert 0 < report["plan_ms"] and report["plan_ms"] + report["start_ms"] <= report["ms"]
    assert "verified" in report["restore"]["verify"] and report["verify_ms"] >= 0


def test_second_promote_restores_nothing_and_leaves_proxysql_running(pair, shipped):
    b = pair.b
    pair.fail_over()
    b.ha.promote()
    live = b.live_db.read_bytes()
    pid = b.pidfile.read_text()

    again = b.ha.promote()

    assert (again["acted"], again["actions"]) == (False, [])
    assert b.live_db.read_bytes() == live
    assert b.pidfile.read_text() == pid and b.running()


def test_promote_without_a_newer_backup_starts_proxysql_on_the_current_db(pair):
    a = pair.a
    a.ha.ship()
    live = (a.shared_config(), a.live_uuid())

    report = a.ha.promote()

    assert (report["acted"], report["restore"]["restored"], report["started"]) == (True, False, True)
    assert a.running()
    assert (a.shared_config(), a.live_uuid()) == live  # but for the default variables the start wrote


def test_demote_stops_proxysql_and_is_idempotent(pair):
    a = pair.a
    assert a.standin("start").returncode == 0
    pair.fail_over()

    first = a.ha.demote()
    second = a.ha.demote()

    assert (first["acted"], first["role"], first["stopped"], first["errors"]) == (True, "BACKUP", True, [])
    assert (second["acted"], second["actions"]) == (False, [])
    assert not a.running()


def test_demote_keeps_proxysql_running_when_stop_on_backup_is_off(pair):
    b = pair.b
    b.configure(stop_on_backup=False)
    pair.fail_over()
    assert b.ha.promote()["started"] is True
    pair.fail_over()

    report = b.ha.demote()

    assert (report["acted"], report["actions"], report["stopped"]) == (True, ["hand over as BACKUP"], False)
    assert b.running()


def test_demote_on_the_master_does_nothing(pair):
    a = pair.a
    assert a.standin("start").returncode == 0

    report = a.ha.demote()

    assert (report["acted"], report["role"]) == (False, "MASTER")
    assert a.running()


# ---- status and check -------------------------------------------------------------------


def test_check_passes_on_a_master_with_proxysql_running_and_a_fresh_backup(pair):
    a = pair.a
    a.ha.ship()
    assert a.standin("start").returncode == 0

    assert a.ha.check() is True
    assert kinds(a.ha.status()) == []


def test_check_fails_on_a_master_whose_proxysql_is_down(pair):
    a = pair.a
    a.ha.ship()

    assert a.ha.check() is False
    assert kinds(a.ha.status()) == ["master_proxysql_down"]


def test_check_fails_on_a_backup_node_whose_proxysql_runs(pair):
    b = pair.b
    assert b.standin("start").returncode == 0

    assert b.ha.check() is False
    assert kinds(b.ha.status()) == ["backup_proxysql_up"]


def test_status_reports_an_invalid_newest_received_backup(pair, shipped):
    b = pair.b
    received = b.inbox_dir / f"{shipped}.db"
    received.write_bytes(received.read_bytes()[:-1] + b"\x01")

    report = b.ha.status()

    assert kinds(report) == ["received_invalid"]
    assert shipped in report["problems"][0]["message"] and "sha256" in report["problems"][0]["message"]
    assert report["newest_valid_received"]["generation"] == 1
    assert b.ha.check() is False


def test_status_reports_a_failed_ship(pair):
    a = pair.a
    assert a.standin("start").returncode == 0
    pair.b.inbox_dir.parent.mkdir(parents=True)
    pair.b.inbox_dir.write_text("a file where the peer's inbox should be")

    with pytest.raises(CommandExecutionError, match=re.escape(str(pair.b.inbox_dir))):
        a.ha.ship()
    report = a.ha.status()

    assert kinds(report) == ["ship_failed"]
    assert report["last_ship"]["ok"] is False
    assert a.ha.check() is False
