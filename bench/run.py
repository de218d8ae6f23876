"""
``make bench``: measure proxysql-ha side by side with the classic recipe and
write ``docs/BENCHMARKS.md``.

    python -m bench.run [--quick] [--out docs/BENCHMARKS.md] [--no-lab]

``--quick`` (used by the test suite so the bench cannot rot) runs every part
once on small data. The two-host lab parts need root and network namespaces;
without them their rows say why they were skipped.
"""

import argparse
import datetime
import os
import platform
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import local, report  # noqa: E402  pylint: disable=wrong-import-position
from tests.support import sshd  # noqa: E402  pylint: disable=wrong-import-position


def schema_file():
    path = Path(os.environ.get("PROXYSQL_SCHEMA") or REPO.parent / "shared/proxysql/schema-3.0.1.sql")
    if not path.is_file():
        raise SystemExit(f"bench: ProxySQL's DDL not found at {path} (set PROXYSQL_SCHEMA)")
    return path


def run_local(quick):
    why = sshd.missing()
    if why:
        return {"skipped": why}
    runs = 1 if quick else 7
    sizes = ("small",) if quick else ("small", "large")
    with tempfile.TemporaryDirectory(prefix="proxysql-ha-bench-") as root:
        bench = local.Bench(root, schema_file())
        try:
            return {
                "idle": local.idle_tick(bench, 3 if quick else 20),
                "changed": {size: local.changed(bench, size, runs) for size in sizes},
                "restore": {size: local.restore(bench, size, runs) for size in sizes},
                "growth": local.growth(bench, (1000,) if quick else (1000, 10_000, 100_000)),
                "inspection": local.inspection(bench, 1000 if quick else 100_000),
            }
        finally:
            bench.close()


def run_lab(quick, enabled):
    if not enabled:
        return {"skipped": "--no-lab given"}
    try:
        from bench import lab_bench  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        return {"skipped": f"the lab is not available: {exc}"}
    return lab_bench.run(quick, schema_file())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--quick", action="store_true", help="one run of each part, small data")
    parser.add_argument("--out", default=str(REPO / "docs" / "BENCHMARKS.md"))
    parser.add_argument("--no-lab", action="store_true", help="skip the two-host lab parts")
    args = parser.parse_args(argv)
    results = {
        "local": run_local(args.quick),
        "lab": run_lab(args.quick, not args.no_lab),
    }
    command = "make bench" + (" QUICK=1" if args.quick else "")
    machine = f"{platform.node()}: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}"
    text = report.render(results, command=command, machine=machine,
                         date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                         quick=args.quick)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(text)
    return results


if __name__ == "__main__":
    main()
