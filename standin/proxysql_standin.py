#!/usr/bin/env python3
"""A stand-in for the ProxySQL daemon, for tests and the two-host lab. It is not ProxySQL.

It does only what matters to a tool that manages ProxySQL's configuration file, each step
following the ProxySQL source it names (github.com/sysown/proxysql, tag 3.0.1):

- ``start`` returns as soon as the daemon has written its pid file: ProxySQL's parent waits in
  ``ProxySQL_daemonize_wait_daemon()`` only for the child's ``daemon_retval_send(0)``, sent in
  ``ProxySQL_daemonize_phase2()`` right after ``daemon_pid_file_create()`` (src/main.cpp), before
  ``ProxySQL_Main_init_phase2___not_started()`` loads ``proxysql.db``.
- After ``--load-delay`` seconds (the time ProxySQL spends in phase 2) the daemon loads
  ``<datadir>/proxysql.db``: the start-up rule of ``ProxySQL_Admin::init()`` (lib/Admin_Bootstrap.cpp),
  statement by statement: the ``disk_upgrade_*()`` migrations listed in the ``upgrades.json``
  beside ``--schema``; then a missing table is created, a table whose DDL text differs from the
  built-in one is dropped and created empty, an unknown table is left alone; then
  ``INSERT OR IGNORE`` of the default ``global_variables`` (``DEFAULT_VARIABLES``); then
  ``load_or_update_global_settings()``: a uuid ``uuid_parse`` accepts is kept, an invalid one is
  ignored and replaced by a new random one, as is a missing one.
- Then it listens on its traffic port and accepts (and closes) TCP connections: ProxySQL starts
  its listeners in ``ProxySQL_Main_init_phase3___start_all()`` (``GloMTH->start_listeners()``),
  after the configuration is loaded. The address is the first ``mysql-interfaces`` entry of the
  loaded ``global_variables`` (``0.0.0.0:6033`` when empty, as ``start_listeners()`` does).
- It reports what it loaded in ``<datadir>/standin-loaded.json`` (written once the admin
  interface, if any, listens, and before the traffic port does),
  keeps the database open, and exits on SIGTERM.

- With ``--admin`` it also serves the admin interface (``proxysql_admin.AdminServer``: the MySQL
  protocol over SQLite, ``main`` in memory, the file attached as ``disk``, a runtime layer) on
  ``HOST:PORT``, or with ``--admin auto`` on the first ``admin-mysql_ifaces`` entry of the loaded
  ``global_variables``, as ProxySQL's admin thread does (``ProxySQL_Admin::init()`` starts it
  before ``start_listeners()`` opens the traffic port, so it listens before the traffic port does).
  Without ``--admin`` there is none: a deviation, so that several stand-ins share one machine.

Not modelled: the angel process (``glovars.proxy_restart_on_error``, ``handleProcessRestart()``
in src/main.cpp, restarts a ProxySQL that crashes); the MySQL protocol on the traffic port.

Usage::

    python proxysql_standin.py {start|stop|status} --datadir DIR --schema FILE [--pidfile FILE]
        [--user NAME] [--load-delay SECONDS] [--traffic HOST:PORT] [--admin HOST:PORT|auto]
        [--fail-start {exit,die}]

Test-only options, with environment variables so a lab or demo can set them for every start:
``--load-delay`` (``PROXYSQL_STANDIN_LOAD_DELAY``, default 0.2 s); ``--traffic``
(``PROXYSQL_STANDIN_TRAFFIC``) listens there instead of ``mysql-interfaces``, a deviation
from ProxySQL that lets several nodes on one machine each have their own loopback port;
``--fail-start`` (``PROXYSQL_STANDIN_FAIL_START``) imitates a ProxySQL that cannot start:
``exit`` makes ``start`` exit 2 without a pid file (``daemon_retval_send(2)``, the pid file
could not be created), ``die`` lets ``start`` succeed and the daemon exit 1 after the load
delay without loading, leaving its pid file behind as a crash does.

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
import socket
import sys
import threading
import time
import traceback
import uuid as uuidlib
from pathlib import Path

try:
    from . import proxysql_db  # imported as standin.proxysql_standin
except ImportError:
    import proxysql_db  # run as a script: proxysql_db.py sits beside this file

WAIT_SECONDS = 5
LOADED_FILE = "standin-loaded.json"
LOG_FILE = "standin.log"
DEFAULT_LOAD_DELAY = 0.2
ENV_LOAD_DELAY = "PROXYSQL_STANDIN_LOAD_DELAY"
ENV_TRAFFIC = "PROXYSQL_STANDIN_TRAFFIC"
ENV_FAIL_START = "PROXYSQL_STANDIN_FAIL_START"
ENV_ADMIN = "PROXYSQL_STANDIN_ADMIN"
FAIL_MODES = ("exit", "die")
DEFAULT_INTERFACES = "0.0.0.0:6033"  # MySQL_Threads_Handler::start_listeners() when mysql-interfaces is ""

# A representative part of what ProxySQL writes into the disk db's global_variables at every
# start: ProxySQL_Admin::init() (lib/Admin_Bootstrap.cpp) calls flush_mysql_variables___runtime_to_database()
# and flush_admin_variables___runtime_to_database() on configdb with replace=false, an
# INSERT OR IGNORE of every variable with its runtime (at start: default) value. Defaults from
# MySQL_Threads_Handler::MySQL_Threads_Handler() (lib/MySQL_Thread.cpp; mysql-threads is its
# DEFAULT_NUM_THREADS) and ProxySQL_Admin::ProxySQL_Admin() (lib/ProxySQL_Admin.cpp); booleans
# are written as "true"/"false", as get_variable() returns them.
DEFAULT_VARIABLES = (
    ("admin-admin_credentials", "admin:admin"),
    ("admin-stats_credentials", "stats:stats"),
    ("admin-mysql_ifaces", "0.0.0.0:6032"),
    ("admin-pgsql_ifaces", "0.0.0.0:6132"),
    ("admin-refresh_interval", "2000"),
    ("admin-read_only", "false"),
    ("admin-vacuum_stats", "true"),
    ("admin-cluster_username", ""),
    ("admin-cluster_password", ""),
    ("admin-cluster_check_interval_ms", "1000"),
    ("admin-cluster_check_status_frequency", "10"),
    ("admin-cluster_mysql_query_rules_diffs_before_sync", "3"),
    ("admin-cluster_mysql_servers_diffs_before_sync", "3"),
    ("admin-cluster_mysql_users_diffs_before_sync", "3"),
    ("admin-cluster_proxysql_servers_diffs_before_sync", "3"),
    ("admin-cluster_mysql_query_rules_save_to_disk", "true"),
    ("admin-cluster_mysql_servers_save_to_disk", "true"),
    ("admin-cluster_mysql_users_save_to_disk", "true"),
    ("admin-stats_mysql_connection_pool", "60"),
    ("admin-stats_mysql_connections", "60"),
    ("admin-stats_system_cpu", "60"),
    ("admin-restapi_enabled", "false"),
    ("admin-restapi_port", "6070"),
    ("admin-web_enabled", "false"),
    ("admin-web_port", "6080"),
    ("mysql-interfaces", ""),
    ("mysql-threads", "4"),
    ("mysql-max_connections", "10000"),
    ("mysql-server_version", "8.0.11"),
    ("mysql-default_schema", "information_schema"),
    ("mysql-monitor_enabled", "true"),
    ("mysql-monitor_username", "monitor"),
    ("mysql-monitor_password", "monitor"),
    ("mysql-monitor_history", "7200000"),
    ("mysql-monitor_connect_interval", "120000"),
    ("mysql-monitor_ping_interval", "8000"),
    ("mysql-monitor_read_only_interval", "1000"),
    ("mysql-shun_on_failures", "5"),
    ("mysql-shun_recovery_time_sec", "10"),
    ("mysql-query_retries_on_failure", "1"),
    ("mysql-connect_retries_on_failure", "10"),
    ("mysql-connect_timeout_server", "1000"),
    ("mysql-max_allowed_packet", "67108864"),
    ("mysql-threshold_query_length", "524288"),
    ("mysql-threshold_resultset_size", "4194304"),
    ("mysql-wait_timeout", "28800000"),
    ("mysql-default_query_timeout", "86400000"),
    ("mysql-ping_interval_server_msec", "10000"),
    ("mysql-poll_timeout", "2000"),
    ("mysql-have_compress", "true"),
    ("mysql-commands_stats", "true"),
    ("mysql-multiplexing", "true"),
    ("mysql-query_digests", "true"),
    ("mysql-sessions_sort", "true"),
    ("mysql-servers_stats", "true"),
    ("mysql-eventslog_filename", ""),
)


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


def insert_default_variables(conn):
    """``INSERT OR IGNORE`` each of ``DEFAULT_VARIABLES``; return how many rows were added."""
    before = conn.total_changes
    conn.executemany(
        "INSERT OR IGNORE INTO global_variables (variable_name, variable_value) VALUES (?, ?)", DEFAULT_VARIABLES
    )
    return conn.total_changes - before


def uuid_parses(text):
    """Whether libuuid's ``uuid_parse()`` accepts ``text``: 36 characters, ``-`` at 8, 13, 18 and 23,
    hexadecimal digits (either case) elsewhere; any version or variant. Braces, ``urn:uuid:`` and
    the 32-digit form that Python's ``uuid.UUID`` also takes are refused."""
    if not isinstance(text, str) or len(text) != 36:
        return False
    return all(
        (c == "-") if i in (8, 13, 18, 23) else (c in "0123456789abcdefABCDEF") for i, c in enumerate(text)
    )


def load_global_settings(conn):
    """``ProxySQL_Admin::load_or_update_global_settings()`` (lib/ProxySQL_Admin.cpp); return ``(uuid, ignored)``.

    A uuid that ``uuid_parse`` accepts is kept as it is. An invalid one is ignored ("Ignoring
    invalid UUID format in global_settings") and, as for a missing one, a new random uuid is
    written with ``INSERT OR REPLACE``; ``ignored`` is the invalid value, or None.
    """
    ignored = None
    for name, value in conn.execute("SELECT variable_name, variable_value FROM global_settings ORDER BY variable_name"):
        if name.lower() == "uuid":
            if uuid_parses(value):
                return value, None
            ignored = value
            print(f"proxysql-standin: Ignoring invalid UUID format in global_settings: {value}", flush=True)
    new = str(uuidlib.uuid4())
    conn.execute("INSERT OR REPLACE INTO global_settings VALUES ('uuid', ?)", (new,))
    return new, ignored


def load_database(datadir, statements, upgrades=None):
    """Open ``proxysql.db`` and do what ProxySQL's start does to it; return the connection and the report.

    Statement by statement, no wrapping transaction, as ``ProxySQL_Admin::init()`` does.
    """
    conn = proxysql_db.connect(Path(datadir) / "proxysql.db")
    changes = proxysql_db.apply_startup_rule(conn, statements, upgrades)
    defaults = insert_default_variables(conn)
    # ProxySQL 2.0.x has no global_settings table and no Cluster uuid (2.0.18's table list lacks
    # it; load_or_update_global_settings came later): a start on such a version keeps none.
    has_settings = any(proxysql_db.table_name(s) == "global_settings" for s in statements)
    uuid, ignored = load_global_settings(conn) if has_settings else (None, None)
    config = {}
    for statement in statements:
        name = proxysql_db.table_name(statement)
        config[name] = conn.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0]
    report = {
        "pid": os.getpid(),
        "started": time.time(),
        "config": config,
        "uuid": uuid,
        "invalid_uuid_ignored": ignored,
        "default_variables_inserted": defaults,
        **changes,
    }
    return conn, report


def parse_address(text):
    """``(host, port)`` of a ``HOST:PORT`` or ``[IPV6]:PORT`` interface entry; ValueError otherwise."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not a HOST:PORT address: {text!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


def first_interface(conn, variable, default):
    """The first entry of a ``;``-separated interfaces variable of the loaded ``global_variables``."""
    row = conn.execute("SELECT variable_value FROM global_variables WHERE variable_name=?", (variable,)).fetchone()
    entries = [entry for entry in (row[0] if row and row[0] else "").split(";") if entry.strip()]
    return entries[0] if entries else default


def traffic_interface(conn):
    """The first ``mysql-interfaces`` entry (``0.0.0.0:6033`` when empty, as start_listeners() does)."""
    return first_interface(conn, "mysql-interfaces", DEFAULT_INTERFACES)


def admin_interface(conn):
    """The first ``admin-mysql_ifaces`` entry (ProxySQL's default when unset)."""
    return first_interface(conn, "admin-mysql_ifaces", dict(DEFAULT_VARIABLES)["admin-mysql_ifaces"])


def import_admin():
    """The ``proxysql_admin`` module (mysql-mimic is a test dependency), imported as package or script."""
    try:
        from . import proxysql_admin  # pylint: disable=import-outside-toplevel
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from standin import proxysql_admin  # pylint: disable=import-outside-toplevel
    return proxysql_admin


def start_admin(args, address, imported):
    """The admin stand-in serving on ``address``, or None, logged, when it cannot (ProxySQL logs and runs on)."""
    try:
        imported.join()
        host, port = parse_address(address)
        server = import_admin().AdminServer(Path(args.datadir) / "proxysql.db", args.schema, host, port)
        server.start()
    except Exception as exc:  # pylint: disable=broad-except
        print(f"proxysql-standin: cannot serve the admin interface on {address}: {exc}", flush=True)
        return None
    print(f"proxysql-standin: admin interface on {address}", flush=True)
    return server


def listen(address):
    """A listening TCP socket on ``address`` (``HOST:PORT``), or None, logged, when it cannot bind.

    ProxySQL logs a listener it cannot add and goes on running without it.
    """
    try:
        host, port = parse_address(address)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        print(f"proxysql-standin: listening on {address}", flush=True)  # logged first: nothing after
        sock.listen(64)
    except (OSError, ValueError) as exc:
        print(f"proxysql-standin: cannot listen on {address}: {exc}", flush=True)
        return None
    return sock


def accept_until(sock, stop):
    """Accept and close connections on ``sock`` until ``stop`` is set (checked every 0.2 s)."""
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            client, _ = sock.accept()
        except (TimeoutError, socket.timeout):
            continue
        except OSError:
            return
        client.close()


def serve(args, statements, ready_fd):
    """The daemon's life: drop privileges, write the pid file, say "ok", wait, load, listen, wait for SIGTERM."""
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    if args.user:
        drop_privileges(args.user)
    # The admin stand-in's imports (mysql-mimic, about 0.4 s) run while the daemon waits to load.
    imported = threading.Thread(target=import_admin if args.admin else (lambda: None), daemon=True)
    imported.start()
    write_atomically(args.pidfile, f"{os.getpid()}\n")
    os.write(ready_fd, b"ok")  # daemon_retval_send(0): the start command returns now
    os.close(ready_fd)
    if signal.sigtimedwait(stop_signals, args.load_delay) is not None:
        print("proxysql-standin: stopped before loading", flush=True)
        Path(args.pidfile).unlink(missing_ok=True)
        return
    if args.fail_start == "die":
        print("proxysql-standin: --fail-start die: exiting without loading", flush=True)
        os._exit(1)  # the pid file stays, as after a crash
    try:
        conn, report = load_database(args.datadir, statements, read_upgrades(args.schema))
        address = args.traffic or traffic_interface(conn)
        report["traffic"] = address
        report["admin"] = None
        if args.admin:
            report["admin"] = admin_interface(conn) if args.admin == "auto" else args.admin
        admin = start_admin(args, report["admin"], imported) if report["admin"] else None
        report["admin_serving"] = admin is not None
        write_atomically(Path(args.datadir) / LOADED_FILE, json.dumps(report, indent=2) + "\n")
        print(f"proxysql-standin: loaded {report['config']} uuid {report['uuid']}", flush=True)
    except BaseException:
        Path(args.pidfile).unlink(missing_ok=True)
        raise
    sock, stop = listen(address), threading.Event()
    acceptor = threading.Thread(target=accept_until, args=(sock, stop), daemon=True) if sock else None
    if acceptor:
        acceptor.start()
    received = signal.sigwait(stop_signals)
    print(f"proxysql-standin: got signal {received}, stopping", flush=True)
    stop.set()
    if acceptor:
        acceptor.join(timeout=WAIT_SECONDS)
        sock.close()
    if admin:
        admin.stop(timeout=WAIT_SECONDS)
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
    """Start the daemon unless it runs; return once it has written its pid file (exit code)."""
    pid = running_pid(args.pidfile)
    if pid:
        print(f"proxysql-standin already running (pid {pid})")
        return 0
    if not args.schema:
        print("proxysql-standin: start needs --schema FILE", file=sys.stderr)
        return 1
    if args.fail_start == "exit":
        print("proxysql-standin: --fail-start exit: could not create the pid file", file=sys.stderr)
        return 2
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
    return wait_for_pidfile(read_fd, args)


def wait_for_pidfile(read_fd, args):
    """Wait up to WAIT_SECONDS for the daemon's "ok" (pid file written); return the exit code for ``start``."""
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


def free_loopback_port():
    """A TCP port on 127.0.0.1 that nothing listens on just now (for ``--traffic``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accepts(address, timeout=0.5):
    """Whether a TCP connection to ``address`` (``HOST:PORT``) is accepted within ``timeout`` s."""
    host, port = parse_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_loaded(datadir, timeout=WAIT_SECONDS):
    """The ``standin-loaded.json`` report of ``datadir`` once written; TimeoutError after ``timeout`` s."""
    path = Path(datadir) / LOADED_FILE
    deadline = time.monotonic() + timeout
    while True:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{path} not written within {timeout} s") from None
        time.sleep(0.02)


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
    parser.add_argument(
        "--load-delay", type=float, default=float(os.environ.get(ENV_LOAD_DELAY, DEFAULT_LOAD_DELAY)),
        help=f"seconds between the pid file and loading the db (${ENV_LOAD_DELAY}, default {DEFAULT_LOAD_DELAY})",
    )
    parser.add_argument(
        "--traffic", default=os.environ.get(ENV_TRAFFIC) or None,
        help=f"test only: listen on HOST:PORT instead of mysql-interfaces (${ENV_TRAFFIC})",
    )
    parser.add_argument(
        "--fail-start", choices=FAIL_MODES, default=os.environ.get(ENV_FAIL_START) or None,
        help=f"test only: fail as a ProxySQL that cannot start (${ENV_FAIL_START})",
    )
    parser.add_argument(
        "--admin", default=os.environ.get(ENV_ADMIN) or None, metavar="HOST:PORT|auto",
        help=f"serve the admin interface there (auto: admin-mysql_ifaces) (${ENV_ADMIN})",
    )
    args = parser.parse_args(argv)
    if args.load_delay < 0:
        parser.error("--load-delay must be >= 0")
    if args.fail_start not in (None, *FAIL_MODES):
        parser.error(f"${ENV_FAIL_START} must be one of {', '.join(FAIL_MODES)}")
    if args.traffic:
        try:
            parse_address(args.traffic)
        except ValueError as exc:
            parser.error(f"--traffic: {exc}")
    if args.admin and args.admin != "auto":
        try:
            parse_address(args.admin)
        except ValueError as exc:
            parser.error(f"--admin: {exc}")
    args.pidfile = args.pidfile or args.datadir / "proxysql.pid"
    return args


def main(argv=None):
    """Run the requested action and return its exit code."""
    args = parse_args(argv)
    return {"start": start, "stop": stop, "status": status}[args.action](args)


if __name__ == "__main__":
    sys.exit(main())
