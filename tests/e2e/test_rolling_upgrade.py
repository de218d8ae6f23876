"""
A rolling upgrade in the two-host lab: B already runs a newer ProxySQL (3.0.1's DDL) than A (2.0.18),
and takes over from A without losing a row. B's judge accepts A's older layout because ProxySQL's
own start-up migrates it (``mysql_users`` and ``mysql_query_rules`` renamed to ``<table>_v200*``,
rows copied) and creates the tables A's version lacks empty; the stand-in on B applies that
start-up rule to the restored file.
"""

import sqlite3
import time

import pytest

from tests.e2e.pair import change_arrives, copy_path, wait_takeover
from standin import proxysql_db

pytestmark = pytest.mark.e2e

LAB_SCHEMAS = {"a": "2.0.18"}  # B keeps the lab's 3.0.1


def _by_name(path):
    """``{table: [column names]}`` of a database, SQLite's own tables left out."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [n for (n,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'")]
        return {n: [c[1] for c in conn.execute(f'PRAGMA table_info("{n}")')] for n in names}
    finally:
        conn.close()


def _rows(path, table, columns):
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        quoted = ", ".join(f'"{c}"' for c in columns)
        return sorted(conn.execute(f'SELECT {quoted} FROM "{table}"').fetchall(), key=repr)
    finally:
        conn.close()


def test_b_on_a_newer_proxysql_takes_over_from_a_without_losing_a_row(lab, summary):
    a, b = lab.host("a"), lab.host("b")
    saved, copy, _ = change_arrives(lab, a, b)
    died = time.time()
    a.kill()
    promoted = wait_takeover(lab, b, died)

    restore = promoted["data"]["restore"]
    assert restore["chosen"] == copy, restore
    shipped, live = copy_path(b, copy), b.node.live_db
    old, new = _by_name(shipped), _by_name(live)
    kept = 0
    for table, columns in old.items():  # every row A saved is served by B, column by column
        if table in proxysql_db.STARTUP_TABLES:
            continue
        rows = _rows(shipped, table, columns)
        assert _rows(live, table, columns) == rows, table
        kept += len(rows)
    assert kept and any(_rows(shipped, "mysql_users", ["username"]))
    for table in ("mysql_users", "mysql_query_rules"):  # ProxySQL's migration left the old tables
        assert any(name.startswith(f"{table}_v") for name in new), sorted(new)
    assert "pgsql_users" in new and not _rows(live, "pgsql_users", ["username"])  # 3.0's, empty
    summary(f"rolling upgrade: A (2.0.18) died, B (3.0.1) took over in {promoted['data']['ms']:.0f} ms "
            f"with all {kept} rows of A's last saved configuration")
