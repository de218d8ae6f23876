"""
One operation on one database, in a process of its own, so the benchmark can
read that process's time and peak memory: ``python -m bench.ops OP DB SCRATCH``.

OP is ``backup`` (snapshot + check, as proxysql_ha.backup does), ``verify``
(the one-pass inspection a restore candidate is judged on), ``inspect10``
(ten of them in one process: time linear, memory flat), ``restore`` (the
copy into the datadir, sha256 re-verified, rollback journal, uuid put back,
checked again) or ``noop`` (the same imports, no work: the baseline the
others' memory is measured against). Prints the elapsed milliseconds.
"""

import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "_utils"))

import proxysql_ha_judge as judge  # noqa: E402  pylint: disable=wrong-import-position
import proxysql_ha_sqlite as psql  # noqa: E402  pylint: disable=wrong-import-position
import proxysql_ha_store as store  # noqa: E402  pylint: disable=wrong-import-position


def run(op, db, scratch):
    if op == "backup":
        target = store.new_tmp(scratch)
        psql.snapshot(db, target, 0, 10)
        psql.describe_file(target)
        store.sha256_file(target)
    elif op == "verify":
        psql.inspect(db, judge.lossy_columns())
    elif op == "inspect10":
        for _ in range(10):
            psql.inspect(db, judge.lossy_columns())
    elif op == "restore":
        target = store.new_tmp(scratch)
        psql.write_for_restore(db, store.sha256_file(db)[0], target,
                               "00000000-0000-4000-8000-000000000000")
    elif op != "noop":
        raise SystemExit(f"unknown op {op}")


def main(argv):
    op, db, scratch = argv[1:4]
    start = time.perf_counter()
    run(op, db, scratch)
    print(f"{(time.perf_counter() - start) * 1000:.3f}")


if __name__ == "__main__":
    main(sys.argv)
    os._exit(0)  # pylint: disable=protected-access
