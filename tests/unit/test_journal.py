"""The transition journal: how far an unfinished takeover got, and when a node stepped down."""

import proxysql_ha_journal as journal
import pytest

BEFORE = {"ino": 100, "size": 4096, "mtime_ns": 1, "journal": False}
AFTER_INSTALL = {"ino": 200, "size": 8192, "mtime_ns": 2, "journal": False}
CHANGED_SINCE = {"ino": 200, "size": 9000, "mtime_ns": 3, "journal": False}  # ProxySQL saved into it


def takeover(restoring="proxysql-ha-g0000000002-20261201T090000000Z-node-a", live=BEFORE):
    return journal.begin_promote(1000.0, restoring, live)


def test_the_intent_names_the_time_the_copy_and_the_file_it_replaces():
    assert takeover() == {"transition": "promote", "since": 1000.0,
                          "restoring": "proxysql-ha-g0000000002-20261201T090000000Z-node-a",
                          "replacing": 100}


@pytest.mark.parametrize("entry", [None, {}, "garbage", journal.begin_demote(5.0, 4.0)])
def test_no_takeover_under_way_without_a_promote_journal(entry):
    assert journal.takeover_progress(entry, BEFORE) is None


def test_a_crash_before_the_install_restores_again():
    assert journal.takeover_progress(takeover(), BEFORE) == "restore"


@pytest.mark.parametrize("live", [AFTER_INSTALL, CHANGED_SINCE])
def test_a_crash_after_the_install_never_restores_again_even_after_changes(live):
    assert journal.takeover_progress(takeover(), live) == "installed"


def test_a_takeover_with_nothing_to_restore_only_finishes():
    assert journal.takeover_progress(takeover(restoring=None), BEFORE) == "installed"


def test_a_missing_live_db_means_the_copy_is_not_live():
    assert journal.takeover_progress(takeover(), None) == "restore"


def test_a_takeover_over_no_live_db_is_installed_once_one_exists():
    assert journal.takeover_progress(takeover(live=None), AFTER_INSTALL) == "installed"


def test_an_unfinished_demote_keeps_its_step_down_time():
    assert journal.stepped_down(journal.begin_demote(50.0, 42.0), {"role": "MASTER"}, 99.0) == 42.0


@pytest.mark.parametrize("recorded", [{"role": "MASTER", "since": 10.0}, {}, None])
def test_a_master_or_an_unknown_node_steps_down_now(recorded):
    assert journal.stepped_down(None, recorded, 99.0) == 99.0


def test_a_node_crashed_while_taking_over_steps_down_now():
    assert journal.stepped_down(takeover(), {"role": "BACKUP", "since": 10.0}, 99.0) == 99.0


def test_backup_to_init_is_not_a_new_step_down():
    assert journal.stepped_down(None, {"role": "BACKUP", "since": 10.0}, 99.0) == 10.0
