"""
A change saved on A just before A dies: B takes over without it; when A is back as BACKUP and B has
shipped its own copy since, A's status and check report ``diverged`` with the change row by row, and
the copy that holds it (A's live db, or a backup A made but never shipped).
"""

import time

import pytest

from tests.e2e.pair import change_arrives, wait_takeover

pytestmark = pytest.mark.e2e
REPORT_SECONDS = 60  # bound: A back, its demote, B's copy arriving, A's status


def test_a_change_lost_with_a_reported_row_by_row_when_a_returns(lab, summary):
    a, b = lab.host("a"), lab.host("b")
    change_arrives(lab, a, b)
    died = time.time()
    # A's link goes first, so A cannot ship what it saves next (the engine notices a save in
    # tens of ms: a save merely followed by the kill was sometimes shipped first); then it dies
    a.cut_link()
    saved = a.save_change()
    lost = next(row for row in saved["mysql_users"] if row[0] == a.added_user(saved))
    a.kill()
    a.restore_link()  # the port back on the bridge, A's interface down until it is revived
    wait_takeover(lab, b, died)
    assert lost[0] not in [row[0] for row in b.config()["mysql_users"]]
    a.revive()
    lab.wait_until(lambda: a.role() == "BACKUP", REPORT_SECONDS, "A to come back as BACKUP")
    _, copy, _ = change_arrives(lab, b, a)  # B moves on: its newer user is B's, not A's divergence

    def reported():
        status, _ = a.salt_call("proxysql_ha.status")
        found = [p for p in status.get("problems", []) if p["kind"] == "diverged"]
        return found[0] if found else None

    problem = lab.wait_until(reported, REPORT_SECONDS, "A to report that it diverged", interval=1)
    users = problem["tables"]["mysql_users"]
    assert [row["username"] for row in users["added"]] == [lost[0]]
    assert users["added"][0]["password"] == "<hidden>"
    assert problem["copy"] == "live" or problem["copy"] in a.backups("outgoing")
    assert copy in problem["message"]
    _, code = a.salt_call("proxysql_ha.check")
    assert code != 0
    summary(f"divergence reported on A: {users['counts']} in mysql_users, held by {problem['copy']}")
