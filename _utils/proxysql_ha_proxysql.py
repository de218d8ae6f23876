"""
ProxySQL control: service commands, readiness.

ProxySQL's start command returns once its daemon has written the pid file
(src/main.cpp: the parent waits in ``ProxySQL_daemonize_wait_daemon()`` for the
child's ``daemon_retval_send(0)``, sent in ``ProxySQL_daemonize_phase2()`` just
after ``daemon_pid_file_create()``), before the daemon loads ``proxysql.db`` in
``ProxySQL_Main_init_phase2___not_started()``. It opens its MySQL listeners only
after that, in ``ProxySQL_Main_init_phase3___start_all()``
(``GloMTH->start_listeners()``). So a ProxySQL that *serves* is one whose
process runs and whose traffic port accepts a TCP connection: only then is the
configuration loaded. That is what :func:`start` waits for.

The traffic address (pillar ``proxysql:traffic_address``): ``auto`` is the first
``mysql-interfaces`` entry of the live db's ``global_variables`` (``0.0.0.0:6033``
when it is empty or absent, as ``MySQL_Threads_Handler::start_listeners()`` does;
a wildcard is probed on loopback); ``none`` waits for the process only; or an
explicit ``host:port``.

No ``__salt__`` here: the module passes the service actions in as callables.
"""

import os
import shlex
import socket
import sqlite3
import time

from salt.exceptions import CommandExecutionError

__virtualname__ = "proxysql_ha_proxysql"

DEFAULT_INTERFACES = "0.0.0.0:6033"
CONNECT_TIMEOUT = 0.5  # seconds per connect attempt; the wait as a whole is service:timeout
POLL = 0.1


def __virtual__():
    return __virtualname__


# ---- addresses ----------------------------------------------------------------


def read_interfaces(live_db):
    """``mysql-interfaces`` of the database at ``live_db`` (read-only), or None when absent."""
    if not os.path.isfile(live_db):
        return None
    try:
        conn = sqlite3.connect(f"file:{live_db}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute("SELECT variable_value FROM global_variables "
                               "WHERE variable_name = 'mysql-interfaces'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise CommandExecutionError(
            f"cannot read mysql-interfaces from {live_db}: {exc}; set "
            "proxysql_ha:proxysql:traffic_address to host:port or none") from exc
    return row[0] if row else None


def traffic_address(setting, live_db, parse_ifaces):
    """
    ``(host, port)`` to probe for ``setting`` (``auto``, ``none`` or
    ``host:port``), or None for ``none``. ``parse_ifaces``: the one parser of
    ProxySQL's ``*_ifaces`` lists (``proxysql_ha_admin.parse_ifaces``).
    """
    if setting == "none":
        return None
    try:
        if setting == "auto":
            return parse_ifaces(read_interfaces(live_db), tcp=True, default=DEFAULT_INTERFACES)
        return parse_ifaces(setting, tcp=True)
    except ValueError as exc:
        where = f"mysql-interfaces of {live_db}" if setting == "auto" else "traffic_address"
        raise CommandExecutionError(f"{where}: {exc}; set proxysql_ha:proxysql:traffic_address "
                                    "to host:port or none") from exc


def show(address):
    """``host:port`` (IPv6 in brackets) for messages."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# ---- probes ----------------------------------------------------------------------


def accepts(address, timeout=CONNECT_TIMEOUT):
    """None when a TCP connection to ``address`` is accepted within ``timeout`` s, else the error text."""
    try:
        with socket.create_connection(address, timeout=timeout):
            return None
    except OSError as exc:
        return str(exc) or type(exc).__name__


def healthy(answers, traffic, probe=accepts):
    """
    The health rule where ProxySQL's admin interface is used: its admin answers
    (``answers()``: ``SELECT 1``, bounded by the caller) and its traffic port
    accepts (``traffic()``: the address, or None to skip the probe). A traffic
    address that cannot be resolved skips the probe: the admin answered.
    """
    if not answers():
        return False
    try:
        address = traffic()
    except (CommandExecutionError, ValueError):
        return True
    return address is None or probe(address) is None


# ---- control -----------------------------------------------------------------------


def run_service(conf, verb, run_all, salt_function):
    """
    Run ``verb`` (start, stop, status) through the pillar's ``commands`` (with
    ``run_all(argv, timeout)``, Salt's ``cmd.run_all``) or ``service.<verb>``
    (``salt_function(name)``: the loaded function or None). ``status`` returns
    whether ProxySQL runs; start and stop return True or raise.
    """
    commands = conf["commands"]
    if commands["start"]:
        out = run_all(commands[verb], conf["service"]["timeout"])
        if verb == "status":
            return out["retcode"] == 0
        if out["retcode"] != 0:
            raise CommandExecutionError(
                f"ProxySQL {verb} command {shlex.join(commands[verb])} failed (exit {out['retcode']}): "
                f"{(out.get('stderr') or out.get('stdout') or '').strip()}"
            )
        return True
    function = salt_function(f"service.{verb}")
    if function is None:
        raise CommandExecutionError(
            f"service.{verb} is not available on this minion (on FreeBSD with Salt 3008, install "
            "saltext-freebsd), or set proxysql_ha:commands"
        )
    result = function(conf["service"]["name"])
    if verb != "status" and not result:
        raise CommandExecutionError(f"service.{verb} {conf['service']['name']} failed")
    return bool(result)


def wait_stopped(status, timeout, clock=time.monotonic, sleep=time.sleep):
    """Wait until ``status()`` is False, at most ``timeout`` s."""
    deadline = clock() + timeout
    while status():
        if clock() >= deadline:
            raise CommandExecutionError(f"ProxySQL did not stop within {timeout:g} s")
        sleep(POLL)


def wait_serving(status, address, timeout, clock=time.monotonic, sleep=time.sleep,
                 probe=accepts, poll=POLL):
    """
    Wait until ``status()`` is True and, unless ``address`` is None, a TCP
    connection to ``address`` is accepted; at most ``timeout`` s in all, each
    connect attempt at most ``CONNECT_TIMEOUT`` s, ``poll`` s between looks
    (shorter when ``status()`` is cheap). The error names the address.
    """
    deadline = clock() + timeout
    while True:
        why = "its process is not running"  # what the last look saw, not the one before it
        if status():
            if address is None:
                return
            left = deadline - clock()
            error = probe(address, max(0.05, min(CONNECT_TIMEOUT, left)))
            if error is None:
                return
            why = f"its process runs but {show(address)} does not accept connections ({error})"
        if clock() >= deadline:
            where = f" on {show(address)}" if address else ""
            raise CommandExecutionError(
                f"ProxySQL did not start serving{where} within {timeout:g} s: {why}; see "
                "ProxySQL's log, or check proxysql_ha:proxysql:traffic_address")
        sleep(poll)


def start(status, start_command, resolve, timeout, running=None, poll=None):
    """
    Start ProxySQL unless it runs (``running``: already known) and wait until it
    serves; True when started now. ``resolve()`` gives the traffic address (or
    None), read before the start; when it fails ProxySQL is still started and
    waited for as a process, then the failure is raised. ``poll``: seconds
    between looks while waiting (default ``POLL``).
    """
    if running if running is not None else status():
        return False
    try:
        address, unresolved = resolve(), None
    except (CommandExecutionError, ValueError) as exc:
        address, unresolved = None, exc
    start_command()
    wait_serving(status, address, timeout, poll=poll or POLL)
    if unresolved is not None:
        raise CommandExecutionError(f"ProxySQL was started, but whether it serves is unknown: "
                                    f"{unresolved}") from unresolved
    return True


def stop(status, stop_command, timeout, running=None):
    """Stop ProxySQL if it runs (``running``: already known); True when stopped now."""
    if not (running if running is not None else status()):
        return False
    stop_command()
    wait_stopped(status, timeout)
    return True
