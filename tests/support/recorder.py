#!/usr/bin/env python3
"""Run a command and record when it ran, for tests that must prove two operations never overlapped.

Usage::

    python recorder.py --log FILE --lock FILE --name NAME -- ARGV...

Runs ``ARGV`` (no shell), exits with its exit code, and appends one JSON line to ``FILE``:
``{"name", "pid", "begin", "end", "rc", "lock_held"}`` (times from ``time.time()``).
``lock_held`` says whether another process held an exclusive ``flock`` on the ``--lock`` file
when the command began, as proxysql_ha holds ``<state_dir>/lock`` around every change.

Standard library only: the module under test runs it as a pillar ``commands`` entry.
"""

import argparse
import fcntl
import json
import os
import subprocess
import sys
import time


def lock_held(path):
    """Whether some process holds an exclusive flock on ``path`` (False when there is no file)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases the lock when this process could take it
    return False


def read_log(path):
    """The records of ``path``, in the order they were written."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def overlapping(records):
    """Pairs of records whose ``[begin, end]`` intervals overlap."""
    ordered = sorted(records, key=lambda r: r["begin"])
    return [(a, b) for a, b in zip(ordered, ordered[1:]) if b["begin"] < a["end"]]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", required=True)
    parser.add_argument("--lock", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    record = {"name": args.name, "pid": os.getpid(), "begin": time.time(),
              "lock_held": lock_held(args.lock)}
    record["rc"] = subprocess.run(command, check=False).returncode
    record["end"] = time.time()
    fd = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())  # one write: lines never interleave
    finally:
        os.close(fd)
    return record["rc"]


if __name__ == "__main__":
    sys.exit(main())
