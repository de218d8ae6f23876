"""A crash at any point of promote or demote: the next reconcile finishes the same transition.

The crash is a step of the module raising SystemExit or KeyboardInterrupt (what a killed
salt-call leaves behind is the files at that point: the same as here). After it, B's ProxySQL
saves a change into the live db, as a serving MASTER's would; the next reconcile must never
restore over it, and must not lose it.
"""

import json

import pytest

ROLE = "role.json"
JOURNAL = "transition.json"


class Crash(SystemExit):
    """The process dies here."""


@pytest.fixture
def shipped(pair):
    """A's changed configuration shipped into B's inbox; then CARP makes B MASTER."""
    pair.a.ha.ship()
    pair.a.save_users(7)
    name = pair.a.ha.ship()["name"]
    pair.fail_over()
    return name


def crash_in(node, util, after=None, before=None):
    """Make the helper ``util`` of ``node``'s loader crash before or after it runs, when the predicate holds."""
    node.ha  # pylint: disable=pointless-statement  (loads the node's loader)
    utils = node.loaders.utils
    real = utils[util].func  # the function itself: the loader's wrapper looks its name up again

    def crashing(*args, **kwargs):
        if before is not None and before(*args):
            raise Crash(f"crash before {util}")
        result = real(*args, **kwargs)
        if after is not None and after(*args):
            raise Crash(f"crash after {util}")
        return result

    utils[util] = crashing
    return lambda: utils.__setitem__(util, real)


def pre_restore_copies(node):
    return sorted(p.name for p in node.datadir.glob("proxysql.db.pre-restore-*"))


def state(node, name):
    path = node.state_dir / name
    return json.loads(path.read_text()) if path.exists() else None


def users(node):
    return {row[0] for row in __import__("sqlite3").connect(node.live_db).execute("SELECT username FROM mysql_users")}


def test_a_crash_before_the_install_restores_once_on_the_next_run(pair, shipped):
    a, b = pair.a, pair.b
    undo = crash_in(b, "proxysql_ha_sqlite.write_for_restore", before=lambda *_: True)
    with pytest.raises(Crash):
        b.ha.promote()
    undo()
    assert state(b, JOURNAL)["restoring"] == shipped
    assert pre_restore_copies(b) == []

    report = b.ha.reconcile()

    assert report["actions"][:2] == [report["actions"][0], f"restore {shipped}"]
    assert "resuming the takeover" in report["actions"][0]
    assert report["report"]["errors"] == []
    assert b.running() and b.shared_config() == a.shared_config()
    assert state(b, JOURNAL) is None and state(b, ROLE)["role"] == "MASTER"
    assert b.ha.reconcile()["actions"] == []


@pytest.mark.parametrize("point", ["after the install", "after ProxySQL started"])
def test_a_crash_after_the_copy_is_live_never_restores_again_nor_loses_a_change(pair, shipped, point):
    a, b = pair.a, pair.b
    if point == "after the install":
        undo = crash_in(b, "proxysql_ha_store.publish", after=lambda tmp, final: final == str(b.live_db))
    else:
        undo = crash_in(b, "proxysql_ha_store.write_json", before=lambda directory, name, data: name == ROLE)
    with pytest.raises(Crash):
        b.ha.promote()
    undo()
    assert b.running() is (point == "after ProxySQL started")
    copies = pre_restore_copies(b)
    assert len(copies) == 1
    served = b.save_users(9)  # ProxySQL saves a change into the restored copy
    expected = {row[0] for row in served}

    report = b.ha.reconcile()

    assert report["actions"][0].startswith("finish the takeover begun at"), report["actions"]
    assert not any(action.startswith("restore ") for action in report["actions"])
    assert "restore" not in report["report"]
    assert report["report"]["errors"] == []
    assert b.running()
    assert users(b) == expected
    assert pre_restore_copies(b) == copies
    assert state(b, JOURNAL) is None and state(b, ROLE)["role"] == "MASTER"
    assert b.ha.reconcile()["actions"] == []
    assert a.shared_config()["mysql_users"] != b.shared_config()["mysql_users"]  # B's change is B's


def test_a_crash_in_demote_keeps_the_step_down_time_for_the_next_run(pair):
    a = pair.a
    a.ha.promote()
    assert a.running()
    pair.fail_over()
    undo = crash_in(a, "proxysql_ha_store.write_json", before=lambda directory, name, data: name == ROLE)
    with pytest.raises(Crash):
        a.ha.demote()
    undo()
    stepped_down = state(a, JOURNAL)["stepped_down"]
    assert state(a, ROLE)["role"] == "MASTER"

    report = a.ha.reconcile()

    assert report["actions"] == ["hand over as BACKUP"]
    assert report["report"]["errors"] == []
    assert state(a, ROLE) == {"role": "BACKUP", "since": stepped_down}
    assert state(a, JOURNAL) is None and not a.running()
    assert a.ha.reconcile()["actions"] == []
