"""A state dir that cannot be written (full, read-only) during a takeover: ProxySQL runs on B.

The state dir is a small tmpfs (root needed), filled up or remounted read-only just before the
takeover. Every state write that fails is reported in the promote's errors; ProxySQL is started
on the restored copy; the next reconcile never restores over what B's ProxySQL saved since.
"""

import os
import subprocess

import pytest

from tests.functional.test_enospc import fill, tmpfs  # noqa: F401  pylint: disable=unused-import

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")


def make_unwritable(directory, how):
    if how == "full":
        fill(directory, leave=0)
    else:
        result = subprocess.run(["mount", "-o", "remount,ro", str(directory)], capture_output=True,
                                text=True, timeout=30, check=False)
        if result.returncode != 0:
            pytest.skip(f"cannot remount {directory} read-only: {result.stderr.strip()}")


@pytest.mark.parametrize("how", ["full", "read-only"])
def test_a_takeover_with_an_unwritable_state_dir_starts_proxysql_and_reports_it(pair, tmpfs, how):  # noqa: F811
    a, b = pair.a, pair.b
    tmpfs(b.state_dir, "256k")
    assert b.standin("start").returncode == 0
    assert b.ha.reconcile()["report"]["stopped"]  # B handed over once: role.json and the lock exist
    a.ha.ship()
    a.save_users(7)
    shipped = a.ha.ship()["name"]
    pair.fail_over()
    make_unwritable(b.state_dir, how)

    report = b.ha.promote()

    assert report["restore"]["chosen"] == shipped and report["restore"]["restored"] is True
    assert b.running()
    assert b.shared_config() == a.shared_config()
    written = {"full": "No space left on device", "read-only": "Read-only file system"}[how]
    failed = [e for e in report["errors"] if e.startswith(f"cannot write {b.state_dir}")]
    assert failed and all(written in e for e in failed), report["errors"]
    assert any("live.json" in e for e in failed) and any("role.json" in e for e in failed)

    served = {row[0] for row in b.save_users(9)}  # ProxySQL saves a change
    again = b.ha.reconcile()

    assert not any(action.startswith("restore ") for action in again["actions"]), again["actions"]
    assert "restore" not in again["report"]
    assert b.running()
    assert {row[0] for row in __import__("sqlite3").connect(b.live_db).execute(
        "SELECT username FROM mysql_users")} == served
    b.standin("stop")  # before the mount goes
