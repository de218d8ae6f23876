#!/usr/bin/env python3
"""A stand-in for the ProxySQL daemon, for tests and the two-host lab. It is not ProxySQL.

It does only what matters to a tool that manages ProxySQL's configuration file: it runs as
a daemon with a pid file, opens ``<datadir>/proxysql.db`` at start-up and applies ProxySQL's
start-up rule to it, statement by statement (the ``disk_upgrade_*()`` migrations listed in the
``upgrades.json`` beside ``--schema``; then a missing table is created, a table whose DDL text
differs from the built-in one is dropped and created empty, an unknown table is left alone;
``global_settings`` keeps or gets a ``uuid``),
reports what it loaded in ``<datadir>/standin-loaded.json``, keeps the database open, and
exits on SIGTERM. It serves no MySQL traffic and has no admin interface.

Usage::

    python proxysql_standin.py {start|stop|status} --datadir DIR --schema FILE [--pidfile FILE] [--user NAME]

``--schema`` is one of the shared ``schema-<version>.sql`` files (needed by ``start``). Exit
codes follow LSB init scripts: ``status`` exits 0 when running and 3 when not. Run it as a
script: ``proxysql_db.py`` must sit beside it. Standard library only.
"""

import argparse
import json
import os
import pwd
import select
import signal
import sys
import time
import traceback
from pathlib import Path

try:
    from . import proxysql_db  # imported as tests.support.proxysql_standin
except ImportError:
    import proxysql_db  # run as a script: proxysql_db.py sits beside this file

WAIT_SECONDS = 5
LOADED_FILE = "standin-loaded.json"
LOG_FILE = "standin.log"


def read_pid(pidfile):
    """The pid recorded in ``pidfile``, or None when there is no readable pid."""
    try:
        return int(Path(pidfile).read_text().strip())
    except (OSError, ValueError):
        return None


def is_standin(pid):
    """True when ``pid`` is a live (not zombie) process running this stand-in."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user (--user)
    proc = Path("/proc") / str(pid)
    if not proc.exists():
        return True  # no procfs: trust the signal check
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes()
    except OSError:
        return False
    # a whole argv word naming this file: not "test_proxysql_standin.py" in a pytest command line
    words = {Path(word.decode(errors="replace")).name for word in cmdline.split(b"\0")}
    return state != "Z" and Path(__file__).name in words


def running_pid(pidfile):
    """The pid of the running stand-in named by ``pidfile``, or None."""
    pid = read_pid(pidfile)
    return pid if pid is not None and is_standin(pid) else None


def drop_privileges(user):
    """Become ``user`` when running as root; say so and stay as is when that user does not exist."""
    if os.geteuid() != 0:
        return
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        print(f"proxysql-standin: user {user!r} does not exist; keeping uid {os.geteuid()}", flush=True)
        return
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)


def write_atomically(path, text):
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    tmp = Path(f"{path}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def read_upgrades(schema):
    """The migrations of ``upgrades.json`` beside the ``--schema`` file, or None (logged) when absent."""
    path = proxysql_db.upgrades_path(schema)
    if not path.is_file():
        print(f"proxysql-standin: {path} absent: no disk_upgrade migrations", flush=True)
        return None
    return proxysql_db.load_upgrades(path)


def load_database(datadir, statements, upgrades=None):
    """Open ``proxysql.db`` and apply ProxySQL's start-up rule; return the connection and the report.

    Statement by statement, no wrapping transaction, as ``ProxySQL_Admin::init()`` does.
    """
    conn = proxysql_db.connect(Path(datadir) / "proxysql.db")
    changes = proxysql_db.apply_startup_rule(conn, statements, upgrades)
    uuid = proxysql_db.ensure_uuid(conn)
    config = {}
    for statement in statements:
        name = proxysql_db.table_name(statement)
        config[name] = conn.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0]
    report = {"pid": os.getpid(), "started": time.time(), "config": config, "uuid": uuid, **changes}
    return conn, report


def serve(args, statements, ready_fd):
    """The daemon's life: drop privileges, write the pid file, load the db, wait for SIGTERM."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    if args.user:
        drop_privileges(args.user)
    write_atomically(args.pidfile, f"{os.getpid()}\n")
    try:
        conn, report = load_database(args.datadir, statements, read_upgrades(args.schema))
        write_atomically(Path(args.datadir) / LOADED_FILE, json.dumps(report, indent=2) + "\n")
        print(f"proxysql-standin: loaded {report['config']} uuid {report['uuid']}", flush=True)
    except BaseException:
        Path(args.pidfile).unlink(missing_ok=True)
        raise
    os.write(ready_fd, b"ok")
    os.close(ready_fd)
    received = signal.sigwait({signal.SIGTERM, signal.SIGINT})
    print(f"proxysql-standin: got signal {received}, stopping", flush=True)
    conn.close()
    Path(args.pidfile).unlink(missing_ok=True)


def detach(logfile):
    """Second half of the double fork: new session, fork again, stdin from /dev/null, output to ``logfile``.

    Returns in the daemon only.
    """
    os.setsid()
    if os.fork():
        os._exit(0)
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDONLY)
    log = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)


def start(args):
    """Start the daemon unless it runs; return once it has opened the db (exit code)."""
    pid = running_pid(args.pidfile)
    if pid:
        print(f"proxysql-standin already running (pid {pid})")
        return 0
    if not args.schema:
        print("proxysql-standin: start needs --schema FILE", file=sys.stderr)
        return 1
    statements = proxysql_db.read_schema(args.schema)
    datadir = Path(args.datadir)
    (datadir / LOADED_FILE).unlink(missing_ok=True)
    read_fd, ready_fd = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_fd)
        detach(datadir / LOG_FILE)
        try:
            serve(args, statements, ready_fd)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    os.close(ready_fd)
    os.waitpid(child, 0)
    return wait_until_loaded(read_fd, args)


def wait_until_loaded(read_fd, args):
    """Wait up to WAIT_SECONDS for the daemon's "ok"; return the exit code for ``start``."""
    answer = b""
    if select.select([read_fd], [], [], WAIT_SECONDS)[0]:
        answer = os.read(read_fd, 16)
    os.close(read_fd)
    pid = running_pid(args.pidfile)
    if answer == b"ok" and pid:
        print(f"proxysql-standin started (pid {pid})")
        return 0
    log = Path(args.datadir) / LOG_FILE
    print(f"proxysql-standin failed to start within {WAIT_SECONDS} s; see {log}", file=sys.stderr)
    return 1


def stop(args):
    """SIGTERM the daemon and wait up to WAIT_SECONDS for it to exit (exit code)."""
    pid = running_pid(args.pidfile)
    if pid is None:
        print("proxysql-standin not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if not is_standin(pid):
            print(f"proxysql-standin stopped (pid {pid})")
            return 0
        time.sleep(0.05)
    print(f"proxysql-standin (pid {pid}) still running after {WAIT_SECONDS} s", file=sys.stderr)
    return 1


def status(args):
    """LSB status: 0 when running, 3 when not."""
    pid = running_pid(args.pidfile)
    if pid:
        print(f"proxysql-standin running (pid {pid})")
        return 0
    print("proxysql-standin not running")
    return 3


def parse_args(argv):
    """Command-line arguments, with the pid file defaulting to ``<datadir>/proxysql.pid``."""
    parser = argparse.ArgumentParser(description="Stand-in for the ProxySQL daemon (not ProxySQL).")
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.add_argument("--datadir", required=True, type=lambda p: Path(p).resolve())
    parser.add_argument("--schema", help="shared schema-<version>.sql file (for start)")
    parser.add_argument("--pidfile", type=lambda p: Path(p).resolve())
    parser.add_argument("--user", help="when root, run as this user")
    args = parser.parse_args(argv)
    args.pidfile = args.pidfile or args.datadir / "proxysql.pid"
    return args


def main(argv=None):
    """Run the requested action and return its exit code."""
    args = parse_args(argv)
    return {"start": start, "stop": stop, "status": status}[args.action](args)


if __name__ == "__main__":
    sys.exit(main())
