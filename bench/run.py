"""
``make bench``: measure proxysql-ha side by side with the classic recipe and
write ``docs/BENCHMARKS.md``.

    python -m bench.run [--quick] [--out docs/BENCHMARKS.md] [--no-lab]
                        [--parts idle,changed,...] [--readme README.md]

``--quick`` (used by the test suite so the bench cannot rot) runs every part
once on small data. The two-host lab parts need root and network namespaces;
without them their rows say why they were skipped. ``--parts`` runs only some
parts (``make bench PARTS=changed,lab``; ``PARTS=lab_idle``: the lab's idle
cost alone, which ``lab`` measures too); the others' sections say they were
not run. ``--readme`` rewrites the README's table between its marker comments
with this run's numbers (``make bench`` does, except with QUICK or PARTS).

A part is a function here (``LOCAL_PARTS`` or the lab) and a renderer in
``bench.report``: a new row goes into one of them, a new part into both.
"""

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import local, report  # noqa: E402  pylint: disable=wrong-import-position
from standin import sshd# noqa: E402  pylint: disable=wrong-import-position


def schema_file():
    path = Path(os.environ.get("PROXYSQL_SCHEMA") or REPO.parent / "shared/proxysql/schema-3.0.1.sql")
    if not path.is_file():
        raise SystemExit(f"bench: ProxySQL's DDL not found at {path} (set PROXYSQL_SCHEMA)")
    return path


LOCAL_PARTS = {  # name: (bench, quick) -> result
    "idle": lambda bench, quick: local.idle_tick(bench, 3 if quick else 20),
    "changed": lambda bench, quick: {size: local.changed(bench, size, _runs(quick))
                                     for size in _sizes(quick)},
    "restore": lambda bench, quick: {size: local.restore(bench, size, _runs(quick))
                                     for size in _sizes(quick)},
    "warm_apply": lambda bench, quick: {size: local.warm_apply(bench, size, 2 if quick else 10)
                                        for size in _sizes(quick)},
    "growth": lambda bench, quick: local.growth(bench, (1000,) if quick else (1000, 10_000, 100_000)),
    "inspection": lambda bench, quick: local.inspection(bench, 1000 if quick else 100_000),
}
PARTS = (*LOCAL_PARTS, "lab", "lab_idle")  # lab_idle: the lab's idle cost alone (in "lab" too)


def _runs(quick):
    return 1 if quick else 7


def _sizes(quick):
    return ("small",) if quick else ("small", "large")


def run_local(quick, parts=PARTS):
    wanted = [name for name in LOCAL_PARTS if name in parts]
    if not wanted:
        return {name: {"skipped": "not in --parts"} for name in LOCAL_PARTS}
    why = sshd.missing()
    if why:
        return {"skipped": why}
    results = {name: {"skipped": "not in --parts"} for name in LOCAL_PARTS if name not in parts}
    with tempfile.TemporaryDirectory(prefix="proxysql-ha-bench-") as root:
        bench = local.Bench(root, schema_file())
        try:
            for name in wanted:
                results[name] = LOCAL_PARTS[name](bench, quick)
        finally:
            bench.close()
    return results


def parts_list(text):
    parts = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        raise argparse.ArgumentTypeError(f"unknown part(s) {unknown or text!r}: choose from {', '.join(PARTS)}")
    return parts


def run_lab(quick, enabled, parts=PARTS):
    if "lab" not in parts and "lab_idle" not in parts:
        return {"skipped": "not in --parts"}
    if not enabled:
        return {"skipped": "--no-lab given"}
    try:
        from bench import lab_bench  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        return {"skipped": f"the lab is not available: {exc}"}
    if "lab" not in parts:
        return lab_bench.run_idle(quick, schema_file())
    return lab_bench.run(quick, schema_file())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--quick", action="store_true", help="one run of each part, small data")
    parser.add_argument("--out", default=str(REPO / "docs" / "BENCHMARKS.md"))
    parser.add_argument("--no-lab", action="store_true", help="skip the two-host lab parts")
    parser.add_argument("--parts", type=parts_list, default=list(PARTS),
                        help=f"comma-separated parts to run (default all: {','.join(PARTS)})")
    parser.add_argument("--readme", help="rewrite the table between the markers of this README")
    args = parser.parse_args(argv)
    began = time.monotonic()
    results = {  # the lab first: a lab that fails, fails early
        "lab": run_lab(args.quick, not args.no_lab, args.parts),
    }
    results["local"] = run_local(args.quick, args.parts)
    results["seconds"] = time.monotonic() - began
    command = "make bench" + (" QUICK=1" if args.quick else "") + (
        f" PARTS={','.join(args.parts)}" if set(args.parts) != set(PARTS) else "")
    machine = f"{platform.node()}: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}"
    text = report.render(results, command=command, machine=machine,
                         date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                         quick=args.quick)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    if args.readme:
        readme = Path(args.readme)
        readme.write_text(report.with_readme_table(readme.read_text(encoding="utf-8"),
                                                   report.readme_table(results)), encoding="utf-8")
    print(text)
    return results


if __name__ == "__main__":
    main()
