"""
ProxySQL active-passive failover behind a CARP virtual IP.

The MASTER node takes verified online backups of ProxySQL's configuration
database (``<datadir>/proxysql.db``) and ships them to its peer; when CARP makes
the peer MASTER, it restores the newest *valid* backup and starts ProxySQL; a
node that becomes BACKUP stops shipping and purges what it receives.

Configuration: the ``proxysql_ha`` pillar key (see ``pillar.example``).

Every function that changes something takes one lock (``<state_dir>/lock``),
so transitions, backups and restores never overlap. Functions return plain
data; failures raise ``CommandExecutionError`` (a failed operation) or
``SaltInvocationError`` (bad arguments or pillar) with the reason.
"""

import calendar
import contextlib
import fcntl
import grp
import importlib
import logging
import os
import pwd
import shlex
import shutil
import sqlite3
import stat
import subprocess
import tempfile
import threading
import time

import salt.utils.event
import salt.utils.platform
from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "proxysql_ha"

DB_NAME = "proxysql.db"
SIDE_FILES = ("-journal", "-wal", "-shm")
STALE_TMP = 600  # seconds before an unfinished file is left over, not in progress
LIVE_STATE = "live.json"
ROLE_STATE = "role.json"  # the role this node last acted on: promote restores only on a change
SHIP_STATE = "ship.json"
METRICS_STATE = "metrics.json"  # the counters behind proxysql_ha.metrics
VIP_STATE = "vip.json"  # whether this node gave up the VIP because ProxySQL could not run
JOURNAL = "transition.json"  # the intent of an unfinished promote or demote (proxysql_ha_journal)
STANDBY_STATE = "standby.json"  # warm standby: the live db's source_state after the last apply
VERIFY_STATE = "verify.json"  # the last check that ProxySQL runs the installed file
STATE_ERRORS = "proxysql_ha.state_errors"  # __context__: state writes that failed in this call
PIDFILE_STATE = "pidfile.json"  # the pid file this node has seen ProxySQL write (see _pid_status)
PIDFILE_SEEN = "proxysql_ha.pidfile_seen"  # __context__: PIDFILE_STATE's path, once read
FAST_POLL = 0.02  # s between looks while waiting for ProxySQL, when a look is a pid-file read


# One function of each _utils module this module needs: __virtual__ resolves them,
# so a missing helper refuses the module with the reason instead of failing a failover.
HELPERS = ("proxysql_ha_config.build", "proxysql_ha_carp.parse_ifconfig",
           "proxysql_ha_sqlite.source_state", "proxysql_ha_store.write_json",
           "proxysql_ha_plan.plan", "proxysql_ha_journal.takeover_progress",
           "proxysql_ha_watch.pid_state")
_RESOLVED = {}  # "module.function" -> the function: resolved once per load of this module


def __virtual__():
    if salt.utils.platform.is_windows():
        return (False, "proxysql_ha: ProxySQL failover runs on FreeBSD and Linux only")
    for name in HELPERS:
        try:
            _u(name)
        except CommandExecutionError as exc:
            return (False, str(exc))
    return __virtualname__


# ---- plumbing ----------------------------------------------------------------


def _u(name):
    """
    A function of this extension's ``_utils`` modules: through the loader when
    they were synced (``saltutil.sync_all``), else from the installed package
    (Salt's utils loader does not look into ``salt.loader`` entry points).
    Resolved once per load of this module (a sync reloads it), not at every call.
    """
    try:
        return _RESOLVED[name]
    except KeyError:
        pass
    try:
        found = __utils__[name]
    except KeyError:
        module, function = name.split(".", 1)
        try:
            found = getattr(importlib.import_module(f"saltext.proxysql_ha.utils.{module}"),
                            function)
        except (ImportError, AttributeError) as exc:
            raise CommandExecutionError(
                f"proxysql_ha's helper {name} is not loaded: run saltutil.sync_all, "
                "or install the saltext.proxysql-ha package"
            ) from exc
    _RESOLVED[name] = found
    return found


def _config():
    raw = __salt__["config.get"]("proxysql_ha", {})
    return _u("proxysql_ha_config.build")(raw, __grains__.get("os_family"), __opts__.get("id"),
                                          root_dir=__opts__.get("root_dir") or "/")


def _live(conf):
    return os.path.join(conf["datadir"], DB_NAME)


def _ms(start):
    return round((time.monotonic() - start) * 1000, 1)


@contextlib.contextmanager
def _lock(conf):
    """Serialise every change on this node; give up after ``lock_timeout``."""
    path = os.path.join(_u("proxysql_ha_store.ensure_dir")(conf["state_dir"]), "lock")
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | nofollow, 0o600)
    except OSError:  # a read-only or full state dir: flock works on a read-only descriptor
        try:
            fd = os.open(path, os.O_RDONLY | nofollow)
        except OSError:  # and none could be created there: the directory itself is the lock
            try:
                fd = os.open(conf["state_dir"], os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            except OSError as exc:
                raise CommandExecutionError(
                    f"cannot open the lock {path}: {exc.strerror or exc} (proxysql_ha:state_dir)"
                ) from exc
    deadline = time.monotonic() + conf["lock_timeout"]
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise CommandExecutionError(  # pylint: disable=raise-missing-from
                        f"another proxysql_ha operation holds {path} for more than "
                        f"{conf['lock_timeout']:g} s; try again later"
                    )
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def _minion_daemon_up():
    """
    Whether a salt-minion daemon listens on this node's event bus. Asked at
    most every 10 s (0.5 s at most each time), so a run without a daemon pays
    for the question once.
    """
    cached = __context__.get("proxysql_ha.daemon_up")
    if cached and time.monotonic() - cached[1] < 10:
        return cached[0]
    try:
        with salt.utils.event.MinionEvent(__opts__, listen=False) as bus:
            up = bool(bus.connect_pull(timeout=0.5))
    except Exception:  # pylint: disable=broad-except
        up = False
    __context__["proxysql_ha.daemon_up"] = (up, time.monotonic())
    return up


def daemon_up():
    """
    Whether a salt-minion daemon answers on this node's event bus (at most
    0.5 s). The schedule jobs and the engine live in that daemon: the formula
    refuses a masterless ``salt-call --local`` apply without one.

    CLI Example:

    .. code-block:: bash

        salt-call proxysql_ha.daemon_up
    """
    return _minion_daemon_up()


def _fire(tag, data):
    """
    Fire ``proxysql_ha/<tag>`` on the minion's event bus and on to the master.
    Best effort and bounded (0.5 s per send): an event never blocks a failover.
    """
    return _send(f"proxysql_ha/{tag}", data, master=True)


def _ask_job(job):
    """Ask the minion to run its schedule job ``job`` now (``run_job`` on its bus, as the
    engine asks): it runs in a process of its own once this call has released the lock."""
    return _send("manage_schedule", {"func": "run_job", "name": job}, master=False)


def _send(tag, data, master):
    if not _minion_daemon_up():
        log.info("no salt-minion daemon on this node: event %s not sent", tag)
        return False
    try:
        with salt.utils.event.MinionEvent(__opts__, listen=False) as bus:
            if not bus.fire_event(data, tag, timeout=500):
                log.warning("event %s could not be sent to the minion's event bus", tag)
                return False
            if master and not __opts__.get("local") and __opts__.get("file_client") != "local":
                bus.fire_master(data, tag, timeout=500)
        return True
    except Exception as exc:  # pylint: disable=broad-except
        log.warning("could not fire event %s: %s", tag, exc)
        return False


def _state(conf, name):
    return _u("proxysql_ha_store.read_json")(os.path.join(conf["state_dir"], name))


def _save_state(conf, name, data, errors=None):
    """
    Write the state file ``name`` atomically (a temporary file renamed over
    it). A failure (ENOSPC, EIO, a read-only file system) raises
    ``CommandExecutionError``; with ``errors`` (a list) it is logged, alerted
    and appended there instead, so the caller goes on (ProxySQL is started
    whatever the state dir says). Returns True when written.
    """
    try:
        _u("proxysql_ha_store.write_json")(conf["state_dir"], name, data)
        return True
    except OSError as exc:
        message = (f"cannot write {os.path.join(conf['state_dir'], name)}: "
                   f"{exc.strerror or exc}; free space or fix proxysql_ha:state_dir")
        if errors is None:
            raise CommandExecutionError(message) from exc
    log.error("proxysql_ha: %s", message)
    _fire("alert/state_write_failed", {"file": name, "error": message})
    errors.append(message)
    return False


def _clear_state(conf, name, errors):
    """Remove the state file ``name``; a failure is reported in ``errors``."""
    try:
        os.unlink(os.path.join(conf["state_dir"], name))
    except FileNotFoundError:
        pass
    except OSError as exc:
        errors.append(f"cannot remove {os.path.join(conf['state_dir'], name)}: "
                      f"{exc.strerror or exc}")


def _state_errors():
    """The state writes that failed in this call so far (taken: each is reported once)."""
    return __context__.pop(STATE_ERRORS, [])


def _fail_retcode():
    __context__["retcode"] = 1


def _count(conf, name, **gauges):
    """Raise the persistent counter ``name`` (``metrics.json``) by one; never fails the caller."""
    try:
        _save_state(conf, METRICS_STATE, _u("proxysql_ha_metrics.bump")(
            _state(conf, METRICS_STATE) or {}, name, **gauges))
    except (OSError, ValueError, CommandExecutionError) as exc:
        log.warning("proxysql_ha: could not count %s: %s", name, exc)


# ---- the CARP role ---------------------------------------------------------------


def role():
    """
    The CARP role of this node for the configured vhid and interface:
    ``MASTER``, ``BACKUP`` or ``INIT``. Anything unreadable is an error.

    With ``role_source: freebsd_carp`` it parses ``ifconfig <interface>``; with
    ``role_source: vip`` (ucarp, keepalived) the node is MASTER when the virtual
    IP is on the interface.

    CLI Example:

    .. code-block:: bash

        salt-call proxysql_ha.role
    """
    return _read_role(_config())


def _read_role(conf):
    if conf["role_source"] == "freebsd_carp":
        out = __salt__["cmd.run_all"](
            ["ifconfig", conf["interface"]],
            python_shell=False,
            ignore_retcode=True,
            timeout=10,
        )
        if out["retcode"] != 0:
            raise CommandExecutionError(
                f"ifconfig {conf['interface']} failed (exit {out['retcode']}): "
                f"{(out.get('stderr') or out.get('stdout') or '').strip()}"
            )
        return _u("proxysql_ha_carp.parse_ifconfig")(out["stdout"], conf["vhid"])
    interfaces = __salt__["network.interfaces"]()
    return _u("proxysql_ha_carp.vip_role")(interfaces, conf["interface"], conf["vip"])


# ---- ProxySQL's service (control and readiness: _utils/proxysql_ha_proxysql.py) ----


def _control(conf):
    """
    ProxySQL's service actions as plain callables for the control module. Every
    dunder is looked up here: the utils functions call them back from their own
    loader context, which has no ``__salt__``.
    """
    run_service = _u("proxysql_ha_proxysql.run_service")
    run_all_function, lookup = __salt__["cmd.run_all"], __salt__.get

    def run_all(argv, timeout):
        return run_all_function(argv, python_shell=False, ignore_retcode=True, timeout=timeout)

    def verb(name):
        return lambda: run_service(conf, name, run_all, lookup)

    traffic, parse = _u("proxysql_ha_proxysql.traffic_address"), _u("proxysql_ha_admin.parse_ifaces")
    status = verb("status")
    return {"status": lambda: _pid_status(conf, status), "start": verb("start"),
            "stop": verb("stop"),
            "traffic": lambda: traffic(conf["proxysql"]["traffic_address"], _live(conf), parse)}


def _pid_status(conf, status_command):
    """
    Whether ProxySQL runs, from its pid file where that is as sure as the status
    command (no fork: the command costs a process, ~0.2 s on a loaded host):
    a pid file naming a live ProxySQL process says it runs; no pid file says it
    is stopped (ProxySQL removes it as it exits: src/main.cpp, after
    ``ProxySQL_Main_init_phase4___shutdown()``), but only once this node has
    seen ProxySQL write it at this path (``pidfile.json``), so a pid file that
    ProxySQL never writes there is never read as "stopped". A stale pid file
    (left by a crash, or naming another process), an unreadable one, or no
    ``pidfile``: ``status_command()`` decides.
    """
    pidfile = conf["pidfile"]
    if not pidfile:
        return status_command()
    state = _u("proxysql_ha_watch.pid_state")(pidfile)
    if state == "running":
        _pidfile_seen(conf, pidfile)
        return True
    if state == "absent" and _pidfile_known(conf, pidfile):
        return False
    return status_command()


def _pidfile_known(conf, pidfile):
    if __context__.get(PIDFILE_SEEN) != pidfile:
        if (_state(conf, PIDFILE_STATE) or {}).get("path") != pidfile:
            return False
        __context__[PIDFILE_SEEN] = pidfile
    return True


def _pidfile_seen(conf, pidfile):
    """Record that ProxySQL writes its pid file at ``pidfile`` (once; a failure only costs forks)."""
    if not _pidfile_known(conf, pidfile):
        try:
            _u("proxysql_ha_store.write_json")(
                _u("proxysql_ha_store.ensure_dir")(conf["state_dir"]), PIDFILE_STATE,
                {"path": pidfile})
            __context__[PIDFILE_SEEN] = pidfile
        except OSError as exc:
            log.debug("proxysql_ha: cannot record the pid file: %s", exc)


def _service(conf, verb):
    """Run ``verb`` (start, stop, status) through pillar commands or ``service.*``."""
    return _control(conf)[verb]()


def _running(conf, role=None, admin=None):
    """
    Whether ProxySQL runs: its service status; on a MASTER where the admin
    interface is used (``admin``, from :func:`_admin`), also ``SELECT 1`` there
    and its traffic port's accept (the health rule the VIP follows).
    """
    running = _service(conf, "status")
    if admin is not None:
        admin["service_running"] = running
    if not running or role != "MASTER" or admin is None or admin["params"] is None:
        return running
    _admin_answers(admin)  # asked here: the utils call back from a loader without __utils__
    # An answer refusing the credentials comes from ProxySQL's admin module: it is alive (the
    # wrong password is admin_denied, never a reason to give up the VIP).
    return _u("proxysql_ha_proxysql.healthy")(lambda: admin["reachable"] or admin["denied"],
                                              _control(conf)["traffic"])


def _serving(conf, running):
    """Whether ProxySQL serves (runs and accepts on its traffic port); None when not known."""
    if not running:
        return False if running is False else None
    address = _control(conf)["traffic"]()
    if address is None:
        return None
    return _u("proxysql_ha_proxysql.accepts")(address) is None


def _start(conf, running=None, timeout=None):
    """Start ProxySQL unless it runs (``running``: already known) and wait until it serves;
    True when started now. ``timeout``: how long it gets (default ``service:timeout``)."""
    control = _control(conf)
    return _u("proxysql_ha_proxysql.start")(
        control["status"], control["start"], control["traffic"],
        conf["service"]["timeout"] if timeout is None else timeout, running,
        poll=FAST_POLL if conf["pidfile"] else None)


def _stop(conf, running=None):
    """Stop ProxySQL if it runs (``running``: already known); True when stopped now."""
    control = _control(conf)
    return _u("proxysql_ha_proxysql.stop")(
        control["status"], control["stop"], conf["service"]["timeout"], running)


# ---- ProxySQL's admin interface (the client: _utils/proxysql_ha_admin.py) ----------


def _admin(conf):
    """
    The admin interface for this call, resolved once (pillar ``admin:`` keys,
    else the live db): ``{"address", "params", "reachable", "error"}``, or None
    when ``admin:enabled`` is false. ``params`` None: it could not be resolved
    (``error`` says why); ``reachable`` None: not asked yet.
    """
    if not conf["admin"]["enabled"]:
        return None
    try:  # the live db is read for what the pillar leaves out: it may be unreadable or odd
        params = _u("proxysql_ha_admin.resolve")(conf["admin"], _live(conf))
    except (CommandExecutionError, SaltInvocationError, OSError, sqlite3.Error, KeyError) as exc:
        return {"address": None, "params": None, "reachable": False, "denied": False,
                "error": _printable(exc)}
    return {"address": _u("proxysql_ha_admin.where")(params), "params": params,
            "reachable": None, "denied": False, "error": None}


def _admin_answers(admin):
    """
    Whether the admin interface answers ``SELECT 1``, asked once per call and
    bounded by its connect timeout (the health rule is in the failover path).
    """
    if admin["reachable"] is None:
        params = admin["params"]
        quick = dict(params, query_timeout=min(params["query_timeout"],
                                               params["connect_timeout"] + 1))
        try:
            admin["reachable"] = _u("proxysql_ha_admin.ping")(quick)
        except (CommandExecutionError, SaltInvocationError) as exc:
            admin.update(reachable=False, denied=_u("proxysql_ha_admin.denied")(exc),
                         error=str(exc))
    return admin["reachable"]


def _admin_problems(conf, report, admin):
    """
    ``admin_unreachable`` where the admin interface is used and ProxySQL runs
    but the admin does not answer; on the MASTER, the layer checks
    (``config_not_saved``, ``config_not_loaded``, per module; one client run).
    Never saves anything: the messages say what the operator should run.
    """
    if admin is None or admin.get("service_running") is False:
        return []
    if _admin_answers(admin) and report["role"] == "MASTER":
        try:
            found = _u("proxysql_ha_admin.check_layers")(admin["params"], _live(conf))
        except (CommandExecutionError, SaltInvocationError) as exc:
            admin.update(reachable=False, error=str(exc))
        else:
            return [dict(kind=p["problem"], modules=p["modules"], message=p["message"])
                    for p in _u("proxysql_ha_layers.difference_problems")(found)]
    if admin["reachable"]:
        return []
    if admin["denied"]:
        return [{"kind": "admin_denied", "address": admin["address"],
                 "message": f"ProxySQL's admin interface ({admin['address']}) refuses this "
                            f"node's credentials: {admin['error']}; ProxySQL answers, so it "
                            "counts as running, but the layer checks were not made "
                            "(pillar proxysql_ha:admin:user/password, or admin-admin_credentials)"}]
    return [{"kind": "admin_unreachable", "address": admin["address"],
             "message": f"ProxySQL's admin interface ({admin['address'] or 'address unknown'}) "
                        f"does not answer: {admin['error']}; the layer checks were not made "
                        "(pillar proxysql_ha:admin)"}]


def _admin_report(admin):
    """What ``status`` shows of the admin interface: its address, never its credentials."""
    if admin is None:
        return {"enabled": False}
    return {"enabled": True, "address": admin["address"], "error": admin["error"]}


# ---- judging backups -------------------------------------------------------------


def _expected_schema(conf):
    """
    The layout the local ProxySQL serves: ``{"tables": {name: sql}, "fingerprint",
    "source"}`` from the live database (ProxySQL rewrote its tables at its last
    start), or the pillar's ``schema_fingerprint`` (``{"fingerprint", "source"}``),
    or ``{"error": reason}`` when there is neither (ProxySQL never ran here).
    """
    if conf["schema_fingerprint"]:
        return {"fingerprint": conf["schema_fingerprint"], "source": "pillar"}
    live = _live(conf)
    unset = "and proxysql_ha:schema_fingerprint is not set: start ProxySQL once, or set it"
    if not os.path.isfile(live):
        return {"error": f"{live} does not exist (ProxySQL never ran here) {unset}",
                "source": None}
    try:
        table_sql = _u("proxysql_ha_sqlite.live_tables")(live)
    except Exception as exc:  # pylint: disable=broad-except  # a bad live db must not stop a failover
        return {"error": f"{live} is unreadable ({_printable(exc)}) {unset}", "source": None}
    if "mysql_users" not in table_sql:
        return {"error": f"{live} has no ProxySQL tables {unset}", "source": None}
    served = {n: s for n, s in table_sql.items()
              if not _u("proxysql_ha_sqlite.is_leftover")(n, table_sql)}
    return {"tables": served, "fingerprint": _u("proxysql_ha_sqlite.fingerprint")(served),
            "source": "live database"}


def _printable(value):
    return _u("proxysql_ha_judge.printable")(str(value))


def _judge(directory, base, files, expected, now, cache=None):
    """
    The verdict on one backup: ``valid`` and, when not, the ``reason``; for a
    valid one what ProxySQL's start-up will do with its tables. Any failure
    while reading or judging it rejects this backup, never the caller.
    """
    verdict = {"name": base, "dir": directory, "generation": None, "created": None,
               "valid": False, "reason": None}
    try:
        verdict["generation"] = _u("proxysql_ha_store.parse_name")(base)[0]
        verdict["created"] = _u("proxysql_ha_store.utc_iso")(
            _u("proxysql_ha_store.stamp_ts")(base))
        verdict["reason"] = _problem(directory, base, files, expected, now, verdict, cache)
    except Exception as exc:  # pylint: disable=broad-except  # the fault barrier
        verdict["reason"] = f"could not be judged: {type(exc).__name__}: {_printable(exc)}"
    verdict["valid"] = verdict["reason"] is None
    return verdict


def _problem(directory, base, files, expected, now, verdict, cache):
    """The first reason not to trust a backup, or None."""
    if not files["db"]:
        return "database file missing (manifest without data)"
    try:
        manifest = _u("proxysql_ha_store.read_manifest")(os.path.join(directory, base + ".json"))
    except ValueError as exc:
        return str(exc)
    if manifest["name"] != base:
        return f"manifest names {_printable(manifest['name'])}, not this file"
    manifest = dict(manifest, **_u("proxysql_ha_store.name_facts")(base))
    verdict.update(size=manifest["size"], node_id=_printable(manifest["node_id"]),
                   created=_printable(manifest["created"]),
                   proxysql_version=_version(manifest.get("proxysql_version")))
    try:
        facts = _inspect(os.path.join(directory, base + ".db"), cache)
    except (OSError, ValueError) as exc:
        return f"unreadable: {_printable(getattr(exc, 'strerror', None) or exc)}"
    result = _u("proxysql_ha_judge.judge")(manifest, facts, expected, now)
    verdict.update(sha256=facts["sha256"], row_counts=facts.get("row_counts"),
                   tables=result["tables"], notes=result["notes"])
    return result["reason"]


def _version(value):
    return _printable(value) if isinstance(value, str) else None


def _inspect(path, cache):
    """The facts of a candidate, from ``cache`` when the file is unchanged since it was inspected."""
    st = os.lstat(path)
    key = _u("proxysql_ha_sqlite.cache_key")(st)
    entry = cache.get(path) if cache is not None else None
    if isinstance(entry, dict) and entry.get("key") == key and entry.get("format") == FACTS_FORMAT:
        return entry
    facts = dict(_u("proxysql_ha_sqlite.inspect")(path, _u("proxysql_ha_judge.lossy_columns")()),
                 format=FACTS_FORMAT)
    if cache is not None:
        cache[path] = facts
    return facts


FACTS_CACHE = "facts.json"
FACTS_FORMAT = 1  # bump when the inspection's facts change: older entries are inspected again


@contextlib.contextmanager
def _facts_cache(conf):
    """
    The inspected facts of the candidates (``{path: facts}``), kept in the state
    dir (0600, written atomically) so a backup judged at arrival is not read
    again at failover. A cache that cannot be read or written is only slower.
    """
    path = os.path.join(conf["state_dir"], FACTS_CACHE)
    loaded = _u("proxysql_ha_store.read_json")(path, {})
    cache = dict(loaded) if isinstance(loaded, dict) else {}
    before = dict(cache)
    yield cache
    cache = {p: f for p, f in cache.items() if os.path.lexists(p)}
    if cache != before:
        try:
            _u("proxysql_ha_store.write_json")(
                _u("proxysql_ha_store.ensure_dir")(conf["state_dir"]), FACTS_CACHE, cache)
        except Exception as exc:  # pylint: disable=broad-except
            log.warning("proxysql_ha: cannot keep the facts cache %s: %s", path, exc)


def _entries(directory, expected, now, min_generation=0, arrived_after=None, cache=None,
             exclude=()):
    """
    Every backup in ``directory`` newest first, judged lazily: yields verdicts,
    symlinks and incomplete pairs included. Stops below ``min_generation``;
    with ``arrived_after`` (a time), yields only the backups written here
    after it, whatever their generation. ``exclude``: names already tried.
    """
    found = _u("proxysql_ha_store.scan")(directory)
    for name in sorted(found["symlinks"]):
        yield {"name": name, "dir": directory, "generation": None, "valid": False,
               "reason": "symlink: never followed"}
    for base in _u("proxysql_ha_store.newest_first")(found["backups"]):
        if base in exclude:
            continue
        if arrived_after is not None:
            if _arrival(directory, base) <= arrived_after:
                continue
        elif _u("proxysql_ha_store.parse_name")(base)[0] < min_generation:
            return
        yield _judge(directory, base, found["backups"][base], expected, now, cache)


def _arrival(directory, base):
    """When a backup was written into ``directory`` (its file's mtime), or 0."""
    try:
        return os.lstat(os.path.join(directory, base + ".db")).st_mtime
    except OSError:
        return 0


def _choose(conf, name=None, min_generation=0, stepped_down=None, exclude=()):
    """
    The backup to restore (or the one called ``name``): the newest valid one
    in the inbox, else the newest valid one in the outgoing dir, with the
    invalid ones met on the way. The peer's copies come first: a node's own
    outgoing copies can be stale, e.g. made while a split brain cut it off.

    ``stepped_down``: when this node stopped being MASTER. Copies the peer
    shipped since then are the pair's configuration, newer than this node's
    whatever their generation: after a split brain both sides numbered their
    own copies, so numbers collide. Without such copies, ``min_generation``
    applies. ``exclude``: names already tried (their installed copy failed).
    The chosen verdict carries ``retry``, the arguments that choose the next one.
    """
    expected = _expected_schema(conf)
    now = time.time()
    rejected = []
    arrived = stepped_down if stepped_down is not None and any(
        _arrival(conf["inbox_dir"], base) > stepped_down
        for base in _u("proxysql_ha_store.scan")(conf["inbox_dir"])["backups"]) else None
    with _facts_cache(conf) as cache:
        for directory in (conf["inbox_dir"], conf["backup_dir"]):
            since = arrived if directory == conf["inbox_dir"] else None
            if arrived is not None and directory == conf["backup_dir"]:
                break  # the peer's newer copies are all invalid: not one of our own instead
            for verdict in _entries(directory, expected, now, min_generation, since, cache,
                                    exclude):
                if name is not None and verdict["name"] != name:
                    continue
                if verdict["valid"]:
                    verdict["retry"] = {"name": name, "min_generation": min_generation,
                                        "stepped_down": stepped_down}
                    return verdict, rejected
                rejected.append(verdict)
    if name is not None and not rejected and not exclude:
        raise SaltInvocationError(f"no backup named {name!r} in the inbox or the backup dir")
    return None, rejected


# ---- backup ----------------------------------------------------------------------


def backup():
    """
    Take an online, consistent snapshot of ProxySQL's database through the
    SQLite backup API, after it has been quiet for ``settle`` seconds, and write
    it with its manifest to ``backup_dir``. When the configuration equals the
    newest backup's, nothing is written and the result is ``unchanged``.
    Refused unless this node is MASTER.

    CLI Example:

    .. code-block:: bash

        salt-call proxysql_ha.backup
    """
    conf = _config()
    with _lock(conf):
        current = _read_role(conf)
        if current != "MASTER":
            raise CommandExecutionError(
                f"refused: this node is {current}; only the MASTER's database is the pair's "
                "configuration (a backup here would outrank the peer's newer copies)"
            )
        return _backup(conf)


def _backup(conf):
    start = time.monotonic()
    live = _live(conf)
    if not os.path.isfile(live):
        raise CommandExecutionError(f"no ProxySQL database at {live} (proxysql_ha:datadir)")
    reference = _state(conf, LIVE_STATE) or {}
    source = _u("proxysql_ha_sqlite.source_state")(live)
    if reference.get("source") == source:
        return {"result": "unchanged", "name": reference.get("name"), "ms": _ms(start)}
    backup_dir = _u("proxysql_ha_store.ensure_dir")(conf["backup_dir"])
    tmp = _u("proxysql_ha_store.new_tmp")(backup_dir)
    try:
        return _write_backup(conf, live, tmp, reference, start)
    except (OSError, sqlite3.Error) as exc:
        if _u("proxysql_ha_store.is_enospc")(exc):
            raise CommandExecutionError(
                f"no space left in {backup_dir}: backup not written, nothing else changed"
            ) from exc
        raise CommandExecutionError(f"backup failed: {exc}") from exc
    finally:
        _u("proxysql_ha_store.remove_quietly")(tmp)


def _write_backup(conf, live, tmp, reference, start):
    quiet = _u("proxysql_ha_sqlite.snapshot")(live, tmp, conf["settle"], conf["settle_timeout"])
    try:
        facts = _u("proxysql_ha_sqlite.describe_file")(tmp)
    except ValueError as exc:
        raise CommandExecutionError(f"the live database {live} is not usable: {exc}") from exc
    if facts["content_sha256"] == reference.get("content_sha256"):
        _save_state(conf, LIVE_STATE, dict(reference, source=quiet))
        return {"result": "unchanged", "name": reference.get("name"), "ms": _ms(start)}
    generation = 1 + max(
        _u("proxysql_ha_store.max_generation")(conf["backup_dir"], conf["inbox_dir"]),
        reference.get("generation", 0),
    )
    created = time.time()
    base = _u("proxysql_ha_store.make_name")(generation, created, conf["node_id"])
    digest, size = _u("proxysql_ha_store.sha256_file")(tmp)
    manifest = {
        "format": 1,
        "name": base,
        "node_id": conf["node_id"],
        "generation": generation,
        "created": _u("proxysql_ha_store.utc_iso")(created),
        "created_ts": created,
        "sha256": digest,
        "size": size,
        "ddl_fingerprint": facts["ddl_fingerprint"],
        "content_sha256": facts["content_sha256"],
        "row_counts": facts["row_counts"],
        "proxysql_version": conf["proxysql_version"],
        "source": quiet,
    }
    _u("proxysql_ha_store.publish")(tmp, os.path.join(conf["backup_dir"], base + ".db"))
    _u("proxysql_ha_store.write_json")(conf["backup_dir"], base + ".json", manifest)
    _save_state(conf, LIVE_STATE, {
        "name": base, "generation": generation,
        "content_sha256": facts["content_sha256"], "source": quiet,
    })
    log.info("proxysql_ha: backup %s written (%d bytes)", base, size)
    return {"result": "created", "name": base, "generation": generation, "size": size,
            "ms": _ms(start)}


# ---- shipping ----------------------------------------------------------------------


def ship(backup=True):
    """
    Send the newest backup to the peer, if this node is MASTER right now.

    ``backup`` (default True) takes a backup first. A backup already shipped is
    not sent again. With ``peer:transport: ssh`` the system OpenSSH client
    (BatchMode, StrictHostKeyChecking=yes, the dedicated identity and
    known_hosts) streams it to the peer's receive command, which writes it
    under a temporary name and renames it only when it is complete and its
    sha256 matches; with ``local`` it is copied into ``peer:path``.

    CLI Example:

    .. code-block:: bash

        salt-call proxysql_ha.ship
        salt-call proxysql_ha.ship backup=False
    """
    conf = _config()
    with _lock(conf):
        if backup and _source_unchanged(conf):
            pending = _pending(conf)
            if pending.get("comment"):  # the idle tick: nothing read but a stat() and two files
                return dict(pending, shipped=False, backup={"result": "unchanged"})
        current = _read_role(conf)
        if current != "MASTER":
            return {"shipped": False, "role": current,
                    "comment": f"refused: this node is {current}; only the MASTER ships"}
        report = {"shipped": False, "role": current}
        if backup:
            report["backup"] = _backup(conf)
            current = _read_role(conf)
            if current != "MASTER":
                report.update(role=current, comment=f"not shipped: this node became {current}")
                return report
        fresh = report["backup"]["name"] if backup and report["backup"]["result"] == "created" \
            else None
        report.update(_ship_newest(conf, fresh))
        if fresh:
            report["purged"] = _purge_dir(conf, conf["backup_dir"], test=False,
                                          known_valid=fresh)["deleted"]
        return report


def _source_unchanged(conf):
    """Whether proxysql.db is as it was at the last backup (one stat())."""
    source = _source_or_none(conf)
    return source is not None and (_state(conf, LIVE_STATE) or {}).get("source") == source


def _source_or_none(conf):
    """proxysql.db's state (stat and journal), or None when it is not there."""
    try:
        return _u("proxysql_ha_sqlite.source_state")(_live(conf))
    except OSError:
        return None


def _pending(conf):
    """
    The newest backup to ship (``name``, ``files``, ``target``), or a
    ``comment`` saying why there is nothing to ship.
    """
    found = _u("proxysql_ha_store.scan")(conf["backup_dir"])
    complete = [b for b, f in found["backups"].items() if f["db"] and f["json"]]
    if not complete:
        return {"comment": "no backup to ship yet"}
    base = _u("proxysql_ha_store.newest_first")(complete)[0]
    live_generation = (_state(conf, LIVE_STATE) or {}).get("generation", 0)
    if _u("proxysql_ha_store.parse_name")(base)[0] < live_generation:
        return {"name": base, "comment": (
            f"nothing to ship: the live configuration (generation {live_generation}) came "
            "from the peer, which has it")}
    target = _target(conf)
    last = _state(conf, SHIP_STATE) or {}
    if last.get("ok") and last.get("name") == base and last.get("target") == target:
        return {"name": base, "comment": "already shipped"}
    return {"name": base, "files": found["backups"][base], "target": target}


def _ship_newest(conf, fresh=None):
    """Ship the newest backup unless already shipped; ``fresh`` was just checked."""
    start = time.monotonic()
    pending = _pending(conf)
    if pending.get("comment"):
        return pending
    base, target = pending["name"], pending["target"]
    verdict = {"valid": True} if base == fresh else _judge(
        conf["backup_dir"], base, pending["files"], _expected_schema(conf), time.time())
    if not verdict["valid"]:
        _record_ship(conf, base, target, f"newest backup is invalid: {verdict['reason']}")
        raise CommandExecutionError(f"not shipping {base}: {verdict['reason']}")
    try:
        if conf["peer"]["transport"] == "local":
            _ship_local(conf, base)
        else:
            _ship_ssh(conf, base)
    except CommandExecutionError as exc:
        _record_ship(conf, base, target, str(exc))
        _fire("ship/failed", {"name": base, "target": target, "error": str(exc)})
        raise
    _record_ship(conf, base, target, None)
    return {"shipped": True, "name": base, "target": target, "ms": _ms(start)}


def _target(conf):
    peer = conf["peer"]
    if peer["transport"] == "local":
        return f"local:{peer['path']}"
    return f"ssh://{peer['user']}@{peer['host']}:{peer['port']}"


def _record_ship(conf, base, target, error):
    last = _state(conf, SHIP_STATE) or {}
    now = time.time()
    record = {"name": base, "target": target, "ok": error is None, "error": error,
              "last_attempt": now, "last_success": last.get("last_success")}
    if error is None:
        record["last_success"] = now
    else:
        record["name"], record["failed_name"] = last.get("name"), base
    _save_state(conf, SHIP_STATE, record)
    if error is not None:
        _count(conf, "ship_failures")


def _ship_local(conf, base):
    store = "proxysql_ha_store."
    target_dir = _u(store + "ensure_dir")(conf["peer"]["path"])
    source_db = os.path.join(conf["backup_dir"], base + ".db")
    existing = os.path.join(target_dir, base + ".db")
    try:
        if os.path.lexists(existing):
            if _u(store + "sha256_file")(existing) != _u(store + "sha256_file")(source_db):
                raise CommandExecutionError(f"{existing} exists with other content: not replaced")
        else:
            _u(store + "copy_file")(source_db, target_dir, base + ".db")
        _u(store + "copy_file")(os.path.join(conf["backup_dir"], base + ".json"),
                                target_dir, base + ".json")
    except OSError as exc:
        raise CommandExecutionError(f"copy to {target_dir} failed: {exc}") from exc


def _ssh_argv(conf):
    peer = conf["peer"]
    for key in ("identity_file", "known_hosts"):
        if not os.path.isfile(peer[key]):
            raise CommandExecutionError(f"proxysql_ha:peer:{key} {peer[key]} does not exist")
    return [
        "ssh", "-F", "/dev/null", "-T",
        "-o", "BatchMode=yes",
        "-o", f"ConnectTimeout={peer['connect_timeout']}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={peer['known_hosts']}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "IdentitiesOnly=yes",
        "-o", "ServerAliveInterval=2",
        "-o", "ServerAliveCountMax=3",
        "-o", "LogLevel=ERROR",
        *_multiplexing(conf),
        "-i", peer["identity_file"],
        "-p", str(peer["port"]),
        "-l", peer["user"],
        "--", peer["host"], peer["receive_command"],
    ]


def _multiplexing(conf):
    """
    Options that keep one SSH connection to the peer open for a minute and run
    each transfer over it: a new connection costs a key exchange (about
    300 ms here), more than shipping a small database. The control socket
    lives in the state dir (0700); a socket path is limited to about 100
    bytes, so a deeper state dir ships without it.
    """
    path = os.path.join(conf["state_dir"], "ssh-%C")
    if len(path) - 2 + 40 > 100:
        return []
    return ["-o", "ControlMaster=auto", "-o", f"ControlPath={path}", "-o", "ControlPersist=60"]


def _ship_ssh(conf, base):
    """Stream ``base`` to the peer's receive command: a JSON header line, then the db."""
    argv = _ssh_argv(conf)
    manifest = _u("proxysql_ha_store.read_manifest")(
        os.path.join(conf["backup_dir"], base + ".json"))
    header = {"version": 1, "name": base, "size": manifest["size"], "sha256": manifest["sha256"],
              "manifest": manifest}
    with open(os.path.join(conf["backup_dir"], base + ".db"), "rb") as data:
        returncode, reply, error = _stream(argv, _u("proxysql_ha_store.json_line")(header), data,
                                           conf["peer"]["timeout"])
    if returncode is None:
        raise CommandExecutionError(
            f"shipping {base} to {conf['peer']['host']} took more than "
            f"{conf['peer']['timeout']} s and was stopped"
        )
    if returncode != 0 or reply != f"OK {base}":
        raise CommandExecutionError(
            f"shipping {base} to {conf['peer']['host']} failed (ssh exit {returncode}): "
            f"{(error or reply or 'no answer')[-500:]}"
        )


def _stream(argv, header, data, timeout):
    """
    Run ``argv`` with ``header`` and then the file ``data`` on its standard
    input, fed in 1 MiB writes by a thread, for at most ``timeout`` seconds.
    Returns ``(exit code or None on time-out, stdout, stderr)``.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out, stderr=err)
        except OSError as exc:
            raise CommandExecutionError(f"cannot run {argv[0]}: {exc}") from exc
        feeder = threading.Thread(target=_feed, args=(proc.stdin, header, data), daemon=True)
        feeder.start()
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            returncode = None
        feeder.join(timeout=5)
        out.seek(0)
        err.seek(0)
        return (returncode, out.read(4096).decode("utf-8", "replace").strip(),
                err.read(65536).decode("utf-8", "replace").strip())


def _feed(pipe, header, data):
    try:
        pipe.write(header)
        shutil.copyfileobj(data, pipe, 1 << 20)
        pipe.close()
    except OSError:  # the other end went away; its exit code says why
        pass


# ---- purge, list, verify ------------------------------------------------------------


def purge(test=False):
    """
    Delete old backups in the backup dir and the inbox: keep the newest
    ``retention:keep`` and all younger than ``retention:max_age``, and never the
    newest valid one. Remove temporary and incomplete files left over for more
    than 10 minutes. Only files of this extension's naming; symlinks untouched.

    test
        Report what would be deleted and delete nothing.

    CLI Example:

    .. code-block:: bash

        salt-call proxysql_ha.purge
        salt-call proxysql_ha.purge test=True
    """
    conf = _config()
    with _lock(conf):
        return {
            "test": bool(test),
            "outgoing": _purge_dir(conf, conf["backup_dir"], test),
            "incoming": _purge_dir(conf, conf["inbox_dir"], test),
        }


def _purge_dir(conf, directory, test, known_valid=None):
    """Purge one directory; ``known_valid`` is a backup just checked (not judged again)."""
    store = "proxysql_ha_store."
    found = _u(store + "scan")(directory)
    now = time.time()
    complete = [b for b, f in found["backups"].items() if f["db"] and f["json"]]
    ordered = _u(store + "newest_first")(complete)
    if ordered and ordered[0] == known_valid:
        protect = known_valid
    else:
        expected = _expected_schema(conf)
        with _facts_cache(conf) as cache:
            protect = next((b for b in ordered if _judge(
                directory, b, found["backups"][b], expected, now, cache)["valid"]), None)
    ages = {b: now - _u(store + "stamp_ts")(b) for b in found["backups"]}
    retention = conf["retention"]
    doomed = [os.path.join(directory, b + ext)
              for b in _u(store + "purge_plan")(ordered, retention["keep"],
                                                retention["max_age"], protect, ages)
              for ext in (".db", ".json")]
    incomplete = [b for b in found["backups"] if b not in complete and ages[b] > STALE_TMP]
    doomed += [os.path.join(directory, b + ext) for b in incomplete for ext in (".db", ".json")
               if found["backups"][b][ext[1:]]]
    doomed += [os.path.join(directory, n)
               for n in _u(store + "stale_tmp")(directory, found["tmp"], now, STALE_TMP)]
    if not test:
        for path in doomed:
            _u(store + "remove_quietly")(path)
    return {"deleted": sorted(os.path.basename(p) for p in doomed), "kept_newest_valid": protect,
            "symlinks_ignored": sorted(found["symlinks"])}


def list_backups():
    """
    Every backup in the backup dir and the inbox, newest first, each with a
    verdict (``valid``) and, when invalid, the reason.

    CLI Example:

    .. code-block:: bash

        salt-call proxysql_ha.list_backups
    """
    conf = _config()
    expected = _expected_schema(conf)
    now = time.time()
    with _facts_cache(conf) as cache:
        return {
            "expected_schema": {key: expected.get(key) for key in ("fingerprint", "source", "error")},
            "outgoing": list(_entries(conf["backup_dir"], expected, now, cache=cache)),
            "incoming": list(_entries(conf["inbox_dir"], expected, now, cache=cache)),
        }


def verify(name=None):
    """
    Verify backups: the manifest, sha256, ``PRAGMA integrity_check``, the
    schema against the local ProxySQL's, the config tables and row counts.

    name
        Verify only this backup (its base name, without ``.db``). Without it,
        every backup is verified.

    Returns ``valid`` (the one named is valid, or at least one backup is) and
    every verdict. The exit code is 1 when ``valid`` is False.

    CLI Example:

    .. code-block:: bash

        salt-call proxysql_ha.verify
        salt-call proxysql_ha.verify name=proxysql-ha-g0000000042-20261125T184816123Z-node-a
    """
    listing = list_backups()
    verdicts = listing["outgoing"] + listing["incoming"]
    if name is not None:
        verdicts = [v for v in verdicts if v["name"] == name]
        if not verdicts:
            raise SaltInvocationError(f"no backup named {name!r} in the backup dir or the inbox")
    valid = any(v["valid"] for v in verdicts)
    if not valid:
        _fail_retcode()
    return {"valid": valid, "backups": verdicts}


# ---- restore -----------------------------------------------------------------------


def restore(name=None, test=False, start=None, force=False):
    """
    Restore the newest valid backup (inbox and backup dir) into ProxySQL's
    datadir, keeping this node's ProxySQL Cluster uuid, and start ProxySQL
    (by default only where the role wants it running: on a MASTER, or on a
    BACKUP without ``stop_on_backup``).

    A MASTER in office (CARP says MASTER and this node already acts as MASTER)
    serves its live configuration, which is newer than any backup: a restore
    there is refused unless ``force=True``. A node whose role cannot be read is
    refused as well (it may be the MASTER).

    ProxySQL is stopped first; a leftover ``proxysql.db-journal`` is moved
    aside with the old database, which is kept as
    ``proxysql.db.pre-restore-<UTC time>``; the new file replaces the old one by
    an atomic rename. With no valid backup the current database is left
    untouched, ProxySQL is started on it, and every rejected backup is listed
    with its reason.

    name
        Restore this backup instead of the newest valid one (it must be valid).
    test
        Report what would happen on this role (``would``: refuse, restore,
        start ProxySQL or not); change nothing.
    start
        Start ProxySQL afterwards: True, False, or as the role wants (default).
    force
        Restore even on a MASTER in office (its live configuration is replaced:
        the previous one is kept as ``proxysql.db.pre-restore-<time>``).

    CLI Example:

    .. code-block:: bash

        salt-call proxysql_ha.restore
        salt-call proxysql_ha.restore test=True
        salt-call proxysql_ha.restore force=True
    """
    conf = _config()
    with _lock(conf):
        try:
            current, unreadable = _read_role(conf), None
        except CommandExecutionError as exc:
            current, unreadable = None, str(exc)
        refusal = _restore_refusal(conf, current, unreadable)
        if start is None:
            start = current == "MASTER" or not conf["stop_on_backup"]
        if test:
            report = _restore(conf, name=name, test=True, start=start)
            report.update(role=current, force=bool(force),
                          refused=bool(refusal and not force))
            if refusal and not force:
                report["comment"] = f"would refuse: {refusal}; " + report["comment"] + \
                    " only with force=True"
            elif not start and current != "MASTER" and conf["stop_on_backup"]:
                report["comment"] += (f"; ProxySQL would stay stopped (this node is {current}"
                                      " and stop_on_backup is set)")
            return report
        if refusal and not force:
            _fail_retcode()
            raise CommandExecutionError(f"restore refused: {refusal}; to replace the live "
                                        "configuration anyway, run restore force=True")
        return dict(_restore(conf, name=name, test=False, start=start), role=current)


def _in_office(conf, role):
    """
    Whether this node is a MASTER in office: CARP says MASTER and the node
    already acted as MASTER (``role.json``). Its live configuration is the
    newest there is, so nothing restores over it. (One function, so a stricter
    notion of office can replace it.)
    """
    return role == "MASTER" and (_state(conf, ROLE_STATE) or {}).get("role") == "MASTER"


def _restore_refusal(conf, role, unreadable):
    """Why a manual restore must not run on this node now, or None."""
    if unreadable is not None:
        return (f"the CARP role cannot be read ({unreadable}): this node may be the MASTER "
                "serving its live configuration")
    if _in_office(conf, role):
        return ("this node is the MASTER in office: its live configuration is newer than any "
                "backup and is what it ships")
    return None


def _restore(conf, name=None, test=False, start=True, min_generation=0, pick=None,
             running=None):
    """
    ``pick``: the ``(chosen, rejected)`` of a :func:`_choose` made under this lock;
    ``running``: whether ProxySQL runs, when the caller just asked.
    """
    begin = time.monotonic()
    chosen, rejected = pick or _choose(conf, name=name, min_generation=min_generation)
    steps = {"choose": _ms(begin)}
    report = {"restored": False, "chosen": chosen and chosen["name"], "rejected": rejected}
    if test:
        report.update(test=True, running=_running(conf))
        report["comment"] = (
            f"would restore {chosen['name']}" if chosen
            else "no valid backup: would leave the database untouched"
        ) + (" and start ProxySQL" if start else "")
        report["would_start"] = bool(start)
        return report
    if chosen is None:
        report["comment"] = (
            f"no valid backup newer than generation {min_generation - 1}" if min_generation
            else "no valid backup") + ": the current database was left untouched"
        if name is not None:
            _fail_retcode()
        report["started"] = _start(conf) if start else False
        report["ms"] = _ms(begin)
        return report
    owner = _owner(conf)
    mark = time.monotonic()
    report["stopped"] = _stop(conf, running)
    steps["stop"] = _ms(mark)
    mark = time.monotonic()
    try:
        chosen, report["pre_restore_copy"] = _install_first_fit(conf, chosen, owner, rejected)
        report["chosen"] = chosen["name"]
    except Exception as exc:  # pylint: disable=broad-except  # ProxySQL is started whatever failed
        try:
            started = _start(conf) if start else False
        except CommandExecutionError as start_exc:  # keep both: neither hides the other
            raise CommandExecutionError(
                f"{exc}; the current database was left untouched; starting ProxySQL on it: "
                f"{start_exc}") from exc
        raise CommandExecutionError(
            f"{exc}; the current database was left untouched"
            + ("; ProxySQL was started on it" if started else "")
        ) from exc
    steps["install"] = _ms(mark)
    mark = time.monotonic()
    report["started"] = _start(conf, running=False) if start else False
    steps["start"] = _ms(mark)
    report.update(restored=True, generation=chosen["generation"], steps_ms=steps,
                  ms=_ms(begin), comment=f"restored {chosen['name']}")
    _count(conf, "restores", last_restore_ms=report["ms"], last_restore_at=time.time())
    if start:  # after the restore's own time: ProxySQL serves already; this only checks it
        mark = time.monotonic()
        report["verify"] = _verify(conf)
        steps["verify"] = _ms(mark)
    state_errors = _state_errors()
    if state_errors:
        report["state_errors"] = state_errors
    log.info("proxysql_ha: restored %s", chosen["name"])
    return report


def _owner(conf):
    """uid and gid for ProxySQL's files; checked before anything is changed."""
    try:
        uid = pwd.getpwnam(conf["user"]).pw_uid
        gid = grp.getgrnam(conf["group"]).gr_gid
    except KeyError as exc:
        raise CommandExecutionError(
            f"user {conf['user']!r} or group {conf['group']!r} does not exist "
            "(proxysql_ha:user, proxysql_ha:group)"
        ) from exc
    if os.geteuid() != 0 and uid != os.geteuid():
        raise CommandExecutionError(
            f"cannot give the restored database to user {conf['user']!r}: not running as root"
        )
    return uid, gid


def _install_first_fit(conf, chosen, owner, rejected):
    """
    Install ``chosen``; when its installed copy fails its last check (the live
    database untouched), reject it with the reason and install the next valid
    backup instead. Returns ``(installed verdict, pre-restore copy)``.
    """
    tried = []
    for _ in range(1000):  # bounded: every round excludes one more backup
        retry = chosen.pop("retry", None) or {}
        try:
            return chosen, _install(conf, chosen, owner)
        except _Unfit as exc:
            rejected.append(dict(chosen, valid=False, reason=str(exc)))
            log.warning("proxysql_ha: %s not installed: %s", chosen["name"], exc)
        tried.append(chosen["name"])
        chosen, more = _choose(conf, exclude=tried, **retry)
        rejected.extend(more)
        if chosen is None:
            break
    raise CommandExecutionError("no valid backup passed its check once installed")


class _Unfit(CommandExecutionError):
    """The installed copy of a backup failed its check; the live database was not touched."""


def _install(conf, chosen, owner):
    """
    Put a verified backup in place of the live database, atomically: its bytes
    read once and held against the sha256 it was judged by, written out,
    this node's uuid put back, the rollback journal set (ProxySQL's mode),
    checked again; only then is the live database replaced.
    """
    store = "proxysql_ha_store."
    datadir, live = conf["datadir"], _live(conf)
    if not os.path.isdir(datadir):
        raise CommandExecutionError(f"datadir {datadir} does not exist")
    node_uuid = _u("proxysql_ha_sqlite.live_uuid")(live) if os.path.isfile(live) else None
    tmp = _u(store + "new_tmp")(datadir, ".restore")
    try:
        digest = _prepare(conf, chosen, tmp, node_uuid)
        if os.geteuid() == 0:
            os.chown(tmp, *owner)
        os.chmod(tmp, 0o600)
        pre = _set_aside(conf, live)
        _u(store + "publish")(tmp, live)
        if pre:
            os.chmod(pre, 0o600)  # it holds credentials, whatever the old mode was
    except (OSError, sqlite3.Error, ValueError) as exc:
        if _u(store + "is_enospc")(exc):
            raise CommandExecutionError(f"no space left in {datadir} to restore") from exc
        raise CommandExecutionError(f"restore of {chosen['name']} failed: {exc}") from exc
    finally:
        for suffix in ("",) + SIDE_FILES:
            _u(store + "remove_quietly")(tmp + suffix)
    try:  # the restored copy is live: a state write that fails is reported, never raised
        source = _u("proxysql_ha_sqlite.source_state")(live)
    except OSError:
        source = None
    _save_state(conf, LIVE_STATE, {
        "name": chosen["name"], "generation": chosen["generation"],
        "content_sha256": digest, "source": source,
    }, errors=__context__.setdefault(STATE_ERRORS, []))
    _prune_pre_restore(conf)
    return pre


def _prepare(conf, chosen, tmp, node_uuid):
    """
    Write the installed copy of ``chosen`` into ``tmp`` and check it; raises
    ``_Unfit`` (try the next backup) when it is not what was judged or fails.
    Returns its content digest.
    """
    expected = _expected_schema(conf)
    try:
        facts = _u("proxysql_ha_sqlite.write_for_restore")(
            os.path.join(chosen["dir"], chosen["name"] + ".db"), chosen["sha256"], tmp, node_uuid,
            (expected.get("tables") or {}).get("global_settings"),
            stamp=f"{chosen['generation']}-{os.urandom(8).hex()}")  # this install's, unique
    except Exception as exc:  # pylint: disable=broad-except  # per candidate: try the next one
        if _u("proxysql_ha_store.is_enospc")(exc):
            raise CommandExecutionError(f"no space left in {conf['datadir']} to restore") from exc
        raise _Unfit(f"its installed copy failed: {type(exc).__name__}: {_printable(exc)}") from exc
    problem = _u("proxysql_ha_judge.installed_problem")(facts, chosen, expected, node_uuid)
    if problem:
        raise _Unfit(f"its installed copy failed its check: {problem}")
    return facts["content_sha256"]


def _set_aside(conf, live):
    """
    Keep the current database (and any journal beside it, which belongs to
    it) as ``proxysql.db.pre-restore-<time>``. A stale hot journal left next
    to the restored file would be rolled into it by SQLite and corrupt it.
    """
    pre = _keep_copy(live) if os.path.isfile(live) else None
    for suffix in SIDE_FILES:
        if os.path.lexists(live + suffix):
            os.replace(live + suffix, (pre or live + ".stale") + suffix)
            os.chmod((pre or live + ".stale") + suffix, 0o600)
    return pre


def _keep_copy(live):
    """
    A hard link (a copy where links are not possible) of ``live`` under a new
    ``proxysql.db.pre-restore-<UTC time>[-N]`` name; never replaces one.
    """
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now * 1000) % 1000:03d}Z"
    for attempt in range(1000):
        pre = f"{live}.pre-restore-{stamp}" + (f"-{attempt}" if attempt else "")
        try:
            os.link(live, pre)
            return pre
        except FileExistsError:
            continue
        except OSError:  # no hard links here: copy, refusing to replace
            with open(live, "rb") as src, open(pre, "xb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            return pre
    raise CommandExecutionError(f"cannot find a free name for a copy of {live}")


def _prune_pre_restore(conf):
    prefix = DB_NAME + ".pre-restore-"
    copies = sorted(n for n in os.listdir(conf["datadir"])
                    if n.startswith(prefix) and not n.endswith(SIDE_FILES))
    keep = conf["retention"]["keep_pre_restore"]
    for name in copies[: max(0, len(copies) - keep)]:
        for suffix in ("",) + SIDE_FILES:
            path = os.path.join(conf["datadir"], name + suffix)
            if os.path.isfile(path) and not os.path.islink(path):
                os.unlink(path)


# ---- warm standby and verified installs ------------------------------------------------


def apply(test=False):
    """
    On a warm BACKUP (``standby: warm``): apply the newest valid received backup
    to the running ProxySQL. It is installed as a restore installs it (atomic
    rename, this node's uuid kept), then ``PROXYSQL FLUSH CONFIGDB``, ``LOAD
    <module> FROM DISK`` and ``LOAD <module> TO RUNTIME`` for every module the
    file holds, and verified (runtime against the file). A backup that needs
    ProxySQL's migration (another layout), or an admin interface that does not
    answer, is applied with a restart instead. Serialised and journalled like
    the transitions; reconcile does the same on a warm BACKUP, and the engine
    asks for it when the inbox changes.

    test
        Report what would be done; change nothing.

    CLI Example:

    .. code-block:: bash

        salt-call proxysql_ha.apply
        salt-call proxysql_ha.apply test=True
    """
    conf = _config()
    if conf["standby"] != "warm":
        return {"applied": False, "comment": "standby is cold: received backups are restored "
                                             "at a takeover, not applied"}
    with _lock(conf):
        current = _read_role(conf)
        if current == "MASTER":
            return {"applied": False, "role": current,
                    "comment": "this node is MASTER: it serves its live configuration"}
        plan = _plan(conf, current, schedule=False)
        how = plan["apply"]
        if test or how is None:
            return {"applied": False, "role": current, "test": bool(test), "would": how,
                    "comment": f"would {how}" if how else "nothing new to apply"}
        errors = []
        report = _apply(conf, how, plan["facts"]["received"], plan["running"], errors)
        return dict(report, role=current, errors=errors, applied=True)


def _apply(conf, how, chosen, running, errors, journal=True):
    """
    Apply ``chosen`` (or, ``how`` ``reload``, the live file again) to a warm
    ProxySQL (``proxysql_ha_plan.apply_plan``); ``journal``: record the intent
    (a promote has its own journal). Raises CommandExecutionError when the
    install fails (ProxySQL runs on as it was).
    """
    begin = time.monotonic()
    live = _live(conf)
    report = {"how": how, "chosen": chosen and chosen["name"], "installed": False}
    steps = report["steps_ms"] = {}
    admin = _admin(conf)  # a warm standby has admin:enabled (the pillar's rule)
    params = admin["params"] if admin else None
    if params is None:
        report["admin_error"] = ("admin interface unknown: "
                                 + (admin["error"] if admin else "admin:enabled is false"))
    if journal:
        _save_state(conf, JOURNAL, {"transition": "apply", "since": time.time(),
                                    "restoring": chosen and chosen["name"]}, errors)
    if chosen is not None:
        rejected = []
        chosen, report["pre_restore_copy"] = _install_first_fit(conf, chosen, _owner(conf),
                                                                rejected)
        report.update(installed=True, chosen=chosen["name"], generation=chosen["generation"],
                      rejected=rejected)
        errors.extend(_state_errors())
    steps["install"] = _ms(begin)
    mark = time.monotonic()
    facts = None  # the installed file's modules and tables, read once for the loads and the check
    if how == "restart" or not running or params is None:
        report["how"] = "restart"
        _restart(conf, running)
    else:
        try:  # one client run: the flush and the loads (the verification is one more)
            facts = _u("proxysql_ha_admin.installed_facts")(live)
            _u("proxysql_ha_admin.execute")(
                params, "; ".join(_u("proxysql_ha_admin.apply_statements")(facts["modules"])))
            report["loaded"] = facts["modules"]
        except (CommandExecutionError, SaltInvocationError, OSError, sqlite3.Error) as exc:
            report["admin_error"] = f"{_printable(exc)}: ProxySQL was restarted instead"
            report["how"] = "restart"
            _restart(conf, True)
    if report.get("admin_error"):
        errors.append(report["admin_error"])
    steps[report["how"]], mark = _ms(mark), time.monotonic()
    report["verify"] = _verify(conf, admin, facts)
    steps["verify"] = _ms(mark)
    report["ms"] = _ms(begin)
    if journal:
        _save_standby_baseline(conf, errors)
        _clear_state(conf, JOURNAL, errors)
    log.info("proxysql_ha: applied %s (%s) in %s ms", report["chosen"] or "the live db",
             report["how"], report["ms"])
    return report


def _restart(conf, running):
    """Stop ProxySQL if it runs, start it and wait until it serves: it reads the live db anew."""
    _stop(conf, running)
    _start(conf, running=False)


def _save_standby_baseline(conf, errors):
    """Record the live db as it is now: a later change of it on a warm BACKUP is its own save."""
    _save_state(conf, STANDBY_STATE, {"source": _source_or_none(conf), "at": time.time()}, errors)


def _verify(conf, admin=None, facts=None):
    """
    Whether ProxySQL runs the live file: its runtime against the file's rows,
    module by module, compared as SQL on the admin interface, where disk and
    runtime sit side by side (``restore_not_loaded``, kept in ``verify.json``
    for ``status``). ``admin`` and ``facts`` (``proxysql_ha_admin.installed_facts``
    of the live file): what the caller resolved and read already. Never raises:
    where no admin interface answers (or not within ``admin:query_timeout``)
    the install is reported as not verified.
    """
    admin = admin or _admin(conf)
    if admin is None:  # no client to ask (and no fork on the failover path)
        return {"verified": False, "problems": [],
                "reason": "not verified: admin:enabled is false (no admin client configured)"}
    try:
        if admin["params"] is None:
            raise CommandExecutionError(admin["error"])
        facts = facts or _u("proxysql_ha_admin.installed_facts")(_live(conf))
        differences = _u("proxysql_ha_admin.verify_installed")(admin["params"], facts)
    except Exception as exc:  # pylint: disable=broad-except  # a check: it never stops a failover
        result = {"verified": False, "problems": [],
                  "reason": f"not verified: {type(exc).__name__}: {_printable(exc)}"}
    else:
        result = {"verified": True, "modules": sorted(differences),
                  "problems": _u("proxysql_ha_layers.restore_problems")(differences)}
    _save_state(conf, VERIFY_STATE, dict(result, at=time.time()),
                __context__.setdefault(STATE_ERRORS, []))
    if result["problems"]:
        log.warning("proxysql_ha: %s", result["problems"][0]["message"])
    return result


def _received(conf):
    """On a warm BACKUP: the newest valid backup in the inbox newer than the live db, or None."""
    newest = (_state(conf, LIVE_STATE) or {}).get("generation", 0)
    chosen, _ = _choose(conf, min_generation=newest + 1)
    return chosen if chosen and chosen["dir"] == conf["inbox_dir"] else None


def _warm_problems(conf, report):
    """``restore_not_loaded`` from the last verification; ``backup_config_changed`` on a warm BACKUP."""
    found = [dict(kind=p["problem"], modules=p["modules"], message=p["message"])
             for p in (_state(conf, VERIFY_STATE) or {}).get("problems") or []]
    if conf["standby"] == "warm" and report["role"] in ("BACKUP", "INIT"):
        baseline = (_state(conf, STANDBY_STATE) or {}).get("source")
        if baseline and baseline != _source_or_none(conf):
            found.append({"kind": "backup_config_changed",
                          "message": f"{_live(conf)} changed on this warm {report['role']} since "
                                     "the last apply: a save here (SAVE ... TO DISK) is never "
                                     "shipped and the next apply replaces it; make the change on "
                                     "the MASTER"})
    return found


# ---- transitions --------------------------------------------------------------------


def promote(vhid=None, interface=None):
    """
    Make this node the active ProxySQL, if CARP says it is MASTER now: when it
    takes over (it was not MASTER before), restore the newest valid backup
    that is newer than the local database; start ProxySQL, enable the shipping
    job and disable the purge job.

    Level-triggered and idempotent: it re-reads the role under the lock, does
    nothing when the node is not MASTER, and nothing when the node is already
    in line (``acted: False``), so late or repeated events are harmless. A node
    that is MASTER already never restores over its live configuration.
    Fires ``proxysql_ha/promoted`` with the report when it acted.

    vhid, interface
        From the CARP event that asked for this (the reactor passes them): when
        given, they must be this node's, or nothing is done.

    CLI Example:

    .. code-block:: bash

        salt-call proxysql_ha.promote
    """
    return _transition("promote", vhid, interface)


def demote(vhid=None, interface=None):
    """
    Make this node the passive one, if CARP says it is not MASTER now: disable
    the shipping job, enable the purge job, and stop ProxySQL when
    ``stop_on_backup`` is set. Level-triggered and idempotent like ``promote``.
    Fires ``proxysql_ha/demoted`` with the report when it acted.

    vhid, interface
        As for ``promote``.

    CLI Example:

    .. code-block:: bash

        salt-call proxysql_ha.demote
    """
    return _transition("demote", vhid, interface)


def _transition(what, vhid=None, interface=None):
    """
    The frame of promote, demote and reconcile (``what`` None: as the role
    asks): check the event's vhid and interface, take the lock, re-read the
    role, plan, act only when the plan has actions, then report with timings
    and fire ``proxysql_ha/<promoted|demoted>``.
    """
    conf = _config()
    refused = _foreign_event(conf, what or "reconcile", vhid, interface)
    if refused:
        return refused
    begin = time.monotonic()
    _state_errors()  # none left from an earlier call in this process
    with _lock(conf):
        current = _read_role(conf)
        wanted = "promote" if current == "MASTER" else "demote"
        if what not in (None, wanted):
            return {"acted": False, "role": current,
                    "comment": f"not {what}d: this node is {current}"}
        plan = _plan(conf, current, acting=True)
        if not plan["actions"]:
            return {"acted": False, "role": current, "actions": [],
                    "comment": f"already in line with {current}: nothing to do"}
        report = {"acted": True, "role": current, "actions": plan["actions"], "errors": [],
                  "plan_ms": _ms(begin)}
        (_promote_steps if wanted == "promote" else _demote_steps)(conf, report, plan)
        report["ms"] = _ms(begin)
    _finish(f"{wanted}d", report)
    return report


def _promote_steps(conf, report, plan):
    """
    Take over or stay in office, crash-safe: the journal records the intent
    (since when, which copy, over which live file) before anything changes,
    and is removed only once ProxySQL runs; a run after a crash reads from
    the journal and the live file how far it got (``plan["takeover"]``) and
    finishes, never restoring over a copy that is live already.
    """
    facts, errors = plan["facts"], report["errors"]
    restored, running = False, plan["running"]
    if plan["takeover"] == "finish" and conf["standby"] == "warm" and running:
        try:  # a crash may have cut the apply short after the install: load the live db again
            report["apply"] = _apply(conf, "reload", None, True, errors, journal=False)
        except CommandExecutionError as exc:
            errors.append(str(exc))
        running = None  # ask again: a fallback may have restarted it
    if plan["takeover"] == "restore":
        chosen = plan["pick"][0] if plan["pick"] else None
        since = (facts["journal"] or {}).get("since") if facts["progress"] else None
        _save_state(conf, JOURNAL, _u("proxysql_ha_journal.begin_promote")(
            since or time.time(), chosen and chosen["name"], facts["live_state"]), errors)
        warm = _warm_takeover(conf, plan, chosen)
        if warm == "serving":
            report["apply"] = _check_serving(conf, errors)
        elif warm:
            try:
                report["apply"] = _apply(conf, warm, chosen, True, errors, journal=False)
            except CommandExecutionError as exc:  # not installed: ProxySQL serves what it had
                errors.append(str(exc))
                report["restore_failed"] = True
        if warm:
            running = None  # ask again: a fallback may have restarted it
        elif chosen is not None:
            try:
                report["restore"] = _restore(conf, start=False, pick=plan["pick"],
                                             running=plan["running"])
                restored = report["restore"]["restored"]
                errors.extend(report["restore"].get("state_errors", []))
            except CommandExecutionError as exc:
                errors.append(str(exc))
                report["restore_failed"] = True
        else:
            report["restore"] = {"restored": False, "chosen": None,
                                 "rejected": plan["pick"][1] if plan["pick"] else []}
    mark = time.monotonic()
    health = plan["release_if_down"] and not restored  # a restart, not a takeover's first start
    up = True
    try:  # a restore that went through left ProxySQL stopped; otherwise ask
        report["started"] = _start(conf, running=False if restored else running,
                                   timeout=conf["health"]["grace"] if health else None)
    except CommandExecutionError as exc:
        errors.append(str(exc))
        report["started"] = up = False
        if plan["release_if_down"]:
            report["vip"] = _release_vip(conf, report, str(exc))
    report["start_ms"] = _ms(mark)
    if restored and up:  # after ProxySQL serves: timed on its own (verify_ms)
        mark = time.monotonic()
        report["restore"]["verify"] = _verify(conf)
        report["verify_ms"] = _ms(mark)
    if plan["reclaim"]:
        report["vip"] = _reclaim_vip(conf, report, facts["vip"])
    report["schedule"] = _schedule(conf, "MASTER")
    if plan["takeover"] and up and not report.get("restore_failed"):
        # in office; a failed restore or start keeps the journal: the next run tries again
        if _save_state(conf, ROLE_STATE, {"role": "MASTER", "since": time.time()}, errors):
            _clear_state(conf, JOURNAL, errors)
        _count(conf, "failovers")
        # the peer gets this node's configuration now, not at the next save or the 15 min
        # schedule: a warm takeover, or a pair's first MASTER, writes nothing that the engine
        # would notice (the ship job, after this lock, ships only what the peer lacks)
        report["ship_asked"] = _ask_job(conf["schedule"]["ship_job"])


def _warm_takeover(conf, plan, chosen):
    """
    How a warm standby takes over (None: as a cold one, by a restore): apply a
    newer backup that arrived unapplied, finish an apply a crash cut short, or
    nothing to restore (``"serving"``: only check that ProxySQL serves).
    """
    if conf["standby"] != "warm" or not plan["running"]:
        return None
    if chosen is not None:
        return "restart" if _u("proxysql_ha_plan.needs_migration")(chosen) else "flush"
    if (plan["facts"]["journal"] or {}).get("transition") == "apply":
        return "reload"
    return "serving"


def _check_serving(conf, errors):
    """A warm takeover with nothing to restore: ProxySQL must accept on its traffic port, or it is
    restarted (the start that follows raises what is left)."""
    try:
        serving = _serving(conf, True)
    except CommandExecutionError as exc:
        serving = None
        errors.append(str(exc))
    if serving is False:
        errors.append("ProxySQL runs but does not accept on its traffic port: restarting it")
        try:
            _restart(conf, True)
        except CommandExecutionError as exc:
            errors.append(str(exc))
    return {"how": "serving", "serving": serving}


def _demote_steps(conf, report, plan):
    """
    Hand over, crash-safe: the journal keeps when this node stopped being
    MASTER, so a run after a crash records the same time (the peer's copies
    shipped since then are the pair's configuration).
    """
    facts, errors = plan["facts"], report["errors"]
    stepped_down = _u("proxysql_ha_journal.stepped_down")(
        facts["journal"], facts["recorded"], time.time())
    if plan["handover"]:
        _save_state(conf, JOURNAL, _u("proxysql_ha_journal.begin_demote")(
            time.time(), stepped_down), errors)
    report["schedule"] = _schedule(conf, report["role"])
    running = plan["running"]
    if plan["probe"]:
        running = _probe(conf, report)
    if running and plan["reclaim"] or plan["probe"] and running:
        report["vip"] = _reclaim_vip(conf, report, facts["vip"])
    report["stopped"] = False
    if conf["stop_on_backup"] and running:
        try:
            report["stopped"] = _stop(conf, running=True)
        except CommandExecutionError as exc:
            errors.append(str(exc))
    if conf["standby"] == "warm":
        _warm_standby_steps(conf, report, plan, running)
    if _save_state(conf, ROLE_STATE, {"role": report["role"], "since": stepped_down}, errors):
        _clear_state(conf, JOURNAL, errors)


def _warm_standby_steps(conf, report, plan, running):
    """A warm BACKUP: ProxySQL runs (started if not) with the newest received backup applied."""
    errors = report["errors"]
    try:
        if plan["apply"]:
            report["apply"] = _apply(conf, plan["apply"], plan["facts"]["received"], running,
                                     errors, journal=not plan["handover"])
        elif plan["start"]:
            report["started"] = _start(conf, running=False)
    except CommandExecutionError as exc:
        errors.append(str(exc))
    if plan["handover"]:  # what it served as MASTER is the baseline; its saves from now on are not
        _save_standby_baseline(conf, errors)


# ---- the VIP follows ProxySQL's health ------------------------------------------------


def _probe(conf, report):
    """Start ProxySQL on a node that gave up the VIP, to see whether it runs again."""
    vip = dict(_state(conf, VIP_STATE) or {}, probed=time.time())
    _save_state(conf, VIP_STATE, vip, report["errors"])
    try:
        _start(conf, running=False, timeout=conf["health"]["grace"])
        report["probe"] = "ProxySQL runs again"
        return True
    except CommandExecutionError as exc:
        report["probe"] = f"ProxySQL still does not run: {exc}"
        return False


def _vip_step(conf, step):
    """Run one step of proxysql_ha_carp (an argv, or a file to write); the error, or None."""
    if step is None:
        return None
    if "write" in step:
        path = step["write"]
        try:
            directory = os.path.dirname(path)
            tmp = _u("proxysql_ha_store.new_tmp")(directory)
            try:
                with open(tmp, "w", encoding="utf-8") as handle:
                    handle.write(step["text"])
                os.chmod(tmp, 0o644)  # keepalived reads it; it holds no secret
                _u("proxysql_ha_store.publish")(tmp, path)
            finally:
                _u("proxysql_ha_store.remove_quietly")(tmp)
        except OSError as exc:
            return f"cannot write {path}: {exc.strerror or exc}"
        return None
    out = __salt__["cmd.run_all"](step["argv"], python_shell=False, ignore_retcode=True,
                                  timeout=10)
    if out["retcode"] != 0:
        return (f"{shlex.join(step['argv'])} failed (exit {out['retcode']}): "
                f"{(out.get('stderr') or out.get('stdout') or '').strip()}")
    return None


def _health_carp(conf):
    return _u("proxysql_ha_config.health_carp")(conf, __grains__.get("os_family"))


def _release_vip(conf, report, why):
    """
    Give up the VIP: ProxySQL does not run on this MASTER. The intent is
    recorded first (a crash after the release still knows what to undo);
    fires ``proxysql_ha/vip/released`` and the alert at once.
    """
    implementation = _health_carp(conf)
    previous = _state(conf, VIP_STATE) or {}
    again = bool(previous.get("released"))
    record = {"released": True, "since": previous["since"] if again else time.time(),
              "carp": implementation, "reason": why, "params": previous.get("params")}
    outcome = {"released": False, "carp": implementation, "again": again}
    try:
        if implementation == "freebsd" and not record["params"]:
            record["params"] = _u("proxysql_ha_carp.parse_vhid_params")(
                _ifconfig(conf), conf["vhid"])
        step = _release_step(conf, implementation, record["params"]) if implementation else None
    except CommandExecutionError as exc:
        step, outcome["error"] = None, str(exc)
    if implementation is None:
        outcome["error"] = "no way to give up the VIP here (proxysql_ha:health:carp): kept"
    if "error" not in outcome:
        _save_state(conf, VIP_STATE, record, report["errors"])
        outcome["error"] = _vip_step(conf, step)
        outcome["released"] = outcome["error"] is None
        if "argv" in (step or {}):
            outcome["ran"] = step["argv"]
        if outcome["released"] and step.get("freeze"):
            outcome["frozen"] = _freeze(conf, step["freeze"], report)
            if outcome["frozen"]:
                _save_state(conf, VIP_STATE, dict(record, frozen=True), report["errors"])
    if outcome["error"]:
        report["errors"].append(f"cannot give up the VIP: {outcome['error']}")
    event = {"node_id": conf["node_id"], "carp": implementation, "reason": why,
             "released": outcome["released"], "error": outcome["error"]}
    if outcome["released"] and not again:
        _fire("vip/released", event)
    if not again:
        _fire("alert/vip_released", event)
    return outcome


def _release_step(conf, implementation, params):
    pid = _ucarp_pid(conf) if implementation == "ucarp" else None
    return _u("proxysql_ha_carp.release_step")(
        implementation, conf["interface"], conf["vhid"], params=params, pid=pid,
        track_file=conf["health"]["keepalived_track_file"])


def _ucarp_pid(conf):
    """ucarp's process id, from ``health:ucarp_pidfile``; CommandExecutionError naming it."""
    path = conf["health"]["ucarp_pidfile"]
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(64)
    except OSError as exc:
        raise CommandExecutionError(
            f"cannot read ucarp's pid file {path}: {exc.strerror or exc} "
            "(proxysql_ha:health:ucarp_pidfile)") from exc
    return _u("proxysql_ha_carp.parse_pid")(text, path)


UCARP_LEAVE_SECONDS = 3  # after SIGUSR2 ucarp sleeps 3 s as BACKUP before it listens again


def _freeze(conf, argv, report):
    """
    Freeze ucarp (``argv``: SIGSTOP) once the VIP has left this interface: a
    frozen BACKUP neither advertises nor preempts the peer back while ProxySQL
    is down (proxysql_ha_carp). Never while the VIP is still here (a frozen
    MASTER would keep it with nobody advertising): after min(``health:grace``,
    3 s) ucarp is left as it is and the next run signals it again. True when frozen.
    """
    deadline = time.monotonic() + min(conf["health"]["grace"], UCARP_LEAVE_SECONDS)
    while True:
        try:
            left = _read_role(conf) != "MASTER"
        except CommandExecutionError:
            left = False
        if left or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    if not left:
        report["errors"].append("ucarp still holds the VIP after SIGUSR2: not frozen, "
                                "signalled again on the next run")
        return False
    error = _vip_step(conf, {"argv": argv})
    if error:
        report["errors"].append(f"cannot keep ucarp from taking the VIP back: {error}")
    return error is None


def _reclaim_vip(conf, report, vip):
    """Undo the release: ProxySQL runs again and the hold-down is over. Fires ``vip/reclaimed``."""
    implementation = vip.get("carp")
    try:
        pid = None
        if implementation == "ucarp":
            try:
                pid = _ucarp_pid(conf)
            except CommandExecutionError:  # no ucarp runs: none frozen to wake
                pid = None
        step = _u("proxysql_ha_carp.reclaim_step")(
            implementation, conf["interface"], conf["vhid"], params=vip.get("params"),
            track_file=conf["health"]["keepalived_track_file"], pid=pid) if implementation else None
        error = _vip_step(conf, step)
    except CommandExecutionError as exc:
        error = str(exc)
    if error:
        report["errors"].append(f"cannot take the VIP back: {error}")
        return {"reclaimed": False, "error": error}
    _save_state(conf, VIP_STATE, {"released": False, "since": time.time(),
                                  "reclaimed_after": time.time() - (vip.get("since") or 0)},
                report["errors"])
    _fire("vip/reclaimed", {"node_id": conf["node_id"], "carp": implementation})
    return {"reclaimed": True, "carp": implementation}


def _ifconfig(conf):
    out = __salt__["cmd.run_all"](["ifconfig", conf["interface"]], python_shell=False,
                                  ignore_retcode=True, timeout=10)
    if out["retcode"] != 0:
        raise CommandExecutionError(
            f"ifconfig {conf['interface']} failed (exit {out['retcode']}): "
            f"{(out.get('stderr') or out.get('stdout') or '').strip()}"
        )
    return out["stdout"]


def _finish(what, report):
    _fire(what, report)
    if report["errors"]:
        _fire("alert/transition", {"transition": what, "errors": report["errors"]})
        _fail_retcode()




def _foreign_event(conf, what, vhid, interface):
    """
    A refusal report when a transition was asked for another vhid or
    interface than this node's, else None. Logged and alerted: a reactor or
    hook is misconfigured, or someone sends forged events.
    """
    if vhid is None and interface is None:
        return None
    if str(vhid) == str(conf["vhid"]) and interface == conf["interface"]:
        return None
    comment = (f"{what} refused: the event names vhid {vhid!r} on {interface!r}, "
               f"this node serves vhid {conf['vhid']} on {conf['interface']}")
    log.warning("proxysql_ha: %s", comment)
    _fire("alert/foreign_event", {"transition": what, "vhid": str(vhid),
                                  "interface": str(interface)})
    _fail_retcode()
    return {"acted": False, "comment": comment}


def _wanted_jobs(conf, role):
    """``{job: enabled}`` for a role: the MASTER ships, the others purge."""
    master = role == "MASTER"
    return {conf["schedule"]["ship_job"]: master, conf["schedule"]["purge_job"]: not master}


def _schedule_changes(conf, role):
    """
    ``{job: enabled}`` for the jobs of the minion's schedule that must change
    for ``role``. Jobs live in the minion daemon: without one, or without the
    jobs, there is nothing to change (and every job checks the role itself).
    """
    if not _minion_daemon_up():
        return {}
    try:
        jobs = __salt__["schedule.list"](show_all=True, return_yaml=False) or {}
    except Exception as exc:  # pylint: disable=broad-except
        log.warning("proxysql_ha: cannot list the minion's schedule: %s", exc)
        return {}
    return {job: want for job, want in _wanted_jobs(conf, role).items()
            if job in jobs and bool(jobs[job].get("enabled", True)) != want}


def _schedule(conf, role):
    """Enable or disable the ship and purge jobs for ``role``; report, never fail."""
    outcome = {}
    for job, want in _schedule_changes(conf, role).items():
        function = "schedule.enable_job" if want else "schedule.disable_job"
        try:
            result = __salt__[function](job)
        except Exception as exc:  # pylint: disable=broad-except
            result = {"result": False, "comment": str(exc)}
        outcome[job] = {"enabled": want, "result": bool(result.get("result")),
                        "comment": result.get("comment")}
    return outcome


def config():
    """
    This node's configuration: the ``proxysql_ha`` pillar checked and completed
    with the defaults (see ``pillar.example``). Secrets are shown as
    ``<hidden>``. The formula renders from it.

    CLI Example:

    .. code-block:: bash

        salt-call proxysql_ha.config
    """
    conf = _config()
    formula = conf["formula"]
    if formula["ssh_private_key"]:
        formula["ssh_private_key"] = "<hidden>"
    if formula["ucarp"]["password"]:
        formula["ucarp"]["password"] = "<hidden>"
    if conf["admin"]["password"] is not None:
        conf["admin"]["password"] = "<hidden>"
    return conf


def jobs():
    """
    The minion schedule jobs this node needs, as ``schedule.present``
    arguments: ship, purge, reconcile and check, with the intervals of the
    ``schedule`` pillar. The ship and purge jobs are enabled as the current role
    wants (both when the role cannot be read: every job checks the role itself),
    so a highstate agrees with what promote and demote set.

    CLI Example:

    .. code-block:: bash

        salt-call proxysql_ha.jobs
    """
    conf = _config()
    try:
        wanted = _wanted_jobs(conf, _read_role(conf))
    except CommandExecutionError:
        wanted = {}
    sched = conf["schedule"]

    # jid_include False: Salt 3008's maxrunning check leaves a refused job's
    # run flag False, and every later run_job request (the hook's, the engine's)
    # is then dropped silently. Overlapping runs are safe: each waits for the lock.
    def job(function, interval, name=None, run_on_start=True):
        return {"function": function, "seconds": sched[interval], "jid_include": False,
                "return_job": False, "enabled": wanted.get(name, True),
                "run_on_start": run_on_start}

    return {
        sched["ship_job"]: job("proxysql_ha.ship", "ship_interval", sched["ship_job"]),
        sched["purge_job"]: job("proxysql_ha.purge", "purge_interval", sched["purge_job"]),
        sched["reconcile_job"]: job("proxysql_ha.reconcile", "reconcile_interval"),
        # at a minion's start the CARP hook may not have run yet: no check before it
        sched["check_job"]: job("proxysql_ha.check", "check_interval", run_on_start=False),
    }


def reconcile(test=False):
    """
    Bring this node in line with its CARP role: what ``promote`` does on a
    MASTER, what ``demote`` does otherwise, but only when something is out of
    line (a node taking over as MASTER with a newer valid backup to restore,
    ProxySQL in the wrong state, a schedule job in the wrong state). Cheap when
    the node is in line; safe to run often, with or without the Salt master:
    it is the node's own safety net, and what the CARP hook asks for first.

    test
        Report what would be done (``actions``, ``would_run``); change nothing.

    CLI Example:

    .. code-block:: bash

        salt-call proxysql_ha.reconcile
        salt-call proxysql_ha.reconcile test=True
    """
    if test:
        conf = _config()
        current = _read_role(conf)
        actions = _plan(conf, current)["actions"]
        transition = "promote" if current == "MASTER" else "demote"
        return {"role": current, "actions": actions, "test": True,
                "would_run": transition if actions else None,
                "comment": f"would run {transition}" if actions else "converged"}
    report = _transition(None)
    transition = "promote" if report["role"] == "MASTER" else "demote"
    return {"role": report["role"], "actions": report.get("actions", []), "test": False,
            "would_run": transition if report["acted"] else None, "report": report,
            "comment": f"ran {transition}" if report["acted"] else "converged"}


def _facts(conf, role, schedule=True):
    """One snapshot of what the plan decides from (``proxysql_ha_plan``), each read once;
    without ``schedule`` the minion's schedule is not listed (taken as in line)."""
    journal = _state(conf, JOURNAL)
    live_state = _source_or_none(conf)
    running = _running(conf, role, _admin(conf))
    return {
        "role": role,
        "running": running,
        "recorded": _state(conf, ROLE_STATE) or {},
        "journal": journal,
        "live_state": live_state,
        "progress": _u("proxysql_ha_journal.takeover_progress")(journal, live_state)
        or _restored_since(conf, role, journal, live_state, running),
        "schedule": _schedule_changes(conf, role) if schedule else {},
        "stop_on_backup": conf["stop_on_backup"],
        "standby": conf["standby"],
        "received": _received(conf) if conf["standby"] == "warm" and role != "MASTER" else None,
        "vip": _state(conf, VIP_STATE) or {},
        "health": conf["health"],
        "now": time.time(),
    }


def _restored_since(conf, role, journal, live_state, running):
    """
    ``"installed"`` when, without a journal (the state dir could not take
    one), the datadir shows that this node restored a copy since it stepped
    down and ProxySQL serves it: a ``proxysql.db.pre-restore-<time>`` copy
    younger than role.json's ``since`` that is no longer the live file. A
    second restore would set aside what ProxySQL saved since. Else None.
    """
    recorded = _state(conf, ROLE_STATE) or {}
    if role != "MASTER" or journal or recorded.get("role") == "MASTER" or not live_state \
            or conf["standby"] == "warm":  # a warm BACKUP installs while BACKUP: no sign there
        return None
    since = recorded.get("since")
    prefix = DB_NAME + ".pre-restore-"
    try:
        names = [n for n in os.listdir(conf["datadir"])
                 if n.startswith(prefix) and not n.endswith(SIDE_FILES)]
    except OSError:
        return None
    for name in names:
        try:
            stamp = calendar.timegm(time.strptime(name[len(prefix):len(prefix) + 15],
                                                  "%Y%m%dT%H%M%S"))
            ino = os.lstat(os.path.join(conf["datadir"], name)).st_ino
        except (ValueError, OSError):
            continue
        if since is not None and stamp + 1 >= since and ino != live_state["ino"] and running:
            return "installed"
    return None


def _plan(conf, role, acting=False, schedule=True):
    """
    What promote (MASTER) or demote (otherwise) would change now: the pure
    plan over :func:`_facts` (``actions`` in words and what to do), with
    the ``pick`` of backup to restore when a takeover must restore, and
    whether ProxySQL is ``running``. ``acting`` (a transition that will act
    on the plan): a takeover does not wait for the minion's schedule to be
    listed (a bus round trip); its steps switch the jobs once ProxySQL runs.
    Without ``schedule`` the jobs are not listed at all (an apply switches none).
    """
    deferred = acting and role == "MASTER"
    facts = _facts(conf, role, schedule=schedule and not deferred)
    plan = _u("proxysql_ha_plan.plan")(facts)
    if deferred and not plan["takeover"]:  # in office: the jobs may be all that is out of line
        facts["schedule"] = _schedule_changes(conf, role)
        plan = _u("proxysql_ha_plan.plan")(facts)
    plan.update(facts=facts, running=facts["running"], pick=None)
    if plan["takeover"] == "restore":
        newest = (_state(conf, LIVE_STATE) or {}).get("generation", 0)
        plan["pick"] = _choose(conf, min_generation=newest + 1,
                               stepped_down=facts["recorded"].get("since"))
        if conf["standby"] == "warm" and plan["pick"][0] and \
                plan["pick"][0]["name"] == (_state(conf, LIVE_STATE) or {}).get("name"):
            plan["pick"] = (None, plan["pick"][1])  # applied already: the live db is that copy
        if plan["pick"][0]:
            plan["actions"].insert(1, f"restore {plan['pick'][0]['name']}")
    return plan


# ---- divergence ----------------------------------------------------------------------


def diff(a, b, limit=20):
    """
    The rows that differ from copy ``a`` to copy ``b``, table by table, matched
    by primary key (``added``, ``removed``, ``changed`` with the columns that
    changed; at most ``limit`` of each per table, plus the counts). Secrets are
    shown as ``<hidden>``; the uuid ProxySQL writes at start and the token an
    install writes (``global_settings``) are left out.

    a, b
        ``live`` (the live database), a backup's base name (outgoing dir or
        inbox), or a ``proxysql.db.pre-restore-*`` copy in the datadir (its
        name or its path). Nothing else is read.

    limit
        Rows shown per table and kind (1-1000).

    CLI Example:

    .. code-block:: bash

        salt-call proxysql_ha.diff live 000042-20261201T093000123Z-proxysql-a
        salt-call proxysql_ha.diff proxysql.db.pre-restore-20261201T093000123Z live
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise SaltInvocationError(f"limit must be a whole number from 1 to 1000, not {limit!r}")
    conf = _config()
    found = _u("proxysql_ha_diff.diff")(_contents(conf, a), _contents(conf, b), limit)
    return dict(found, a=str(a), b=str(b))


def _copy_path(conf, name):
    """Where copy ``name`` is (see :func:`diff`); anything else is refused."""
    text = str(name)
    datadir = os.path.normpath(conf["datadir"])
    base = os.path.basename(text)
    if text == "live":
        path, kind = _live(conf), "live"
    elif base.startswith(DB_NAME + ".pre-restore-") and not base.endswith(SIDE_FILES) \
            and os.path.normpath(os.path.dirname(text) or datadir) == datadir:
        path, kind = os.path.join(datadir, base), "live"
    elif "/" not in text and _u("proxysql_ha_store.parse_name")(text):
        path = next((os.path.join(d, text + ".db") for d in (conf["backup_dir"], conf["inbox_dir"])
                     if os.path.lexists(os.path.join(d, text + ".db"))), None)
        kind = "backup"
    else:
        raise SaltInvocationError(
            f"{text!r} is not a copy proxysql_ha.diff reads: give 'live', a backup's base name "
            f"(see proxysql_ha.list_backups) or a {DB_NAME}.pre-restore-* copy in {datadir}")
    try:
        regular = path is not None and stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        regular = False
    if not regular:
        raise SaltInvocationError(f"no copy {text!r}: {path or 'no such backup'} is not a regular file")
    return path, kind


def _contents(conf, name):
    """Every table of copy ``name``, read once (backups immutable, live copies read-only)."""
    path, kind = _copy_path(conf, name)
    sqlite = "proxysql_ha_sqlite."
    try:
        if kind == "live":
            return _u(sqlite + "read_live")(path, _u(sqlite + "contents"))
        conn = _u(sqlite + "open_backup")(path)
        try:
            return _u(sqlite + "contents")(conn)
        finally:
            conn.close()
    except (sqlite3.Error, OSError) as exc:
        raise CommandExecutionError(f"cannot read {name!r} ({path}): {exc}") from exc


def _divergence(conf, report, now):
    """
    On a node that is not MASTER: the changes its live database, or a backup of
    its own it never shipped, holds that the pair's MASTER does not have,
    compared with the peer's newest valid copy (the one shipped since this node
    stepped down, else the one it would restore). Only the rows changed since
    the copy each started from count, so the peer's newer changes are not taken
    for this node's. None when there is nothing to compare or nothing differs.
    """
    if report.get("role") not in ("BACKUP", "INIT"):
        return None
    since = (_state(conf, ROLE_STATE) or {}).get("since")
    expected = _expected_schema(conf)
    reference = next((v for v in _entries(conf["inbox_dir"], expected, now, arrived_after=since)
                      if v["valid"]), None) if since else None
    reference = reference or report.get("newest_valid_received")
    if not reference:
        return None
    for copy, base in _own_copies(conf, report):
        try:
            theirs = _contents(conf, reference["name"])
            found = _u("proxysql_ha_diff.own_changes")(
                base and _contents(conf, base), _contents(conf, copy), theirs)
        except (SaltInvocationError, CommandExecutionError) as exc:
            log.warning("proxysql_ha: cannot compare %s with %s: %s", copy, reference["name"], exc)
            continue
        if not found["identical"]:
            return {"copy": copy, "since": base, "against": reference["name"],
                    "tables": found["tables"]}
    return None


def _own_copies(conf, report):
    """
    ``(copy, base)`` pairs that may hold this node's own changes: its newest
    backup made after the last one it shipped (base: that one), and the live
    database when it changed since it was last backed up or restored (base: the
    copy it is, when still here). Only valid backups count: one cut short (a
    crash between its data and its manifest) is still in the live database.
    """
    pairs = []
    shipped = (report.get("last_ship") or {}).get("name")
    parse = _u("proxysql_ha_store.parse_name")
    expected, now = _expected_schema(conf), time.time()
    newest = next((v["name"] for v in _entries(conf["backup_dir"], expected, now)
                   if v["valid"] and parse(v["name"])[2] == conf["node_id"]), None)
    if newest and newest != shipped and (not shipped or parse(newest)[0] > parse(shipped)[0]):
        kept = shipped if shipped and os.path.isfile(
            os.path.join(conf["backup_dir"], shipped + ".db")) else None
        pairs.append((newest, kept))
    live = report.get("live")  # None: never backed up nor restored here, so never MASTER
    if os.path.isfile(_live(conf)) and live is not None and live["changed_since"]:
        origin = live and live["name"]
        present = origin and any(os.path.isfile(os.path.join(d, origin + ".db"))
                                 for d in (conf["backup_dir"], conf["inbox_dir"]))
        pairs.append(("live", origin if present else None))
    return pairs


# ---- status and check ----------------------------------------------------------------


def status():
    """
    This node at a glance: role, whether ProxySQL runs, which backup the live
    configuration is (``live``: name, generation, node; after a split brain
    this says whose copy won), the newest local backup (age, generation,
    valid), the last ship, the newest valid received backup, ``diverged`` (on
    a node back as BACKUP: the changes its live db or an unshipped backup holds
    that the pair's MASTER lacks, row by row; see :func:`diff`), ``admin``
    (with ``admin:enabled``: the admin interface's address, never its
    credentials) and ``admin_reachable``, and the problems found
    (``problems``, each with a ``kind``; on the MASTER with ``admin:enabled``
    also ``config_not_saved``/``config_not_loaded`` per module).

    CLI Example:

    .. code-block:: bash

        salt-call proxysql_ha.status

    The exit code is 1 when the role or ProxySQL's state could not be read.
    """
    return _status(_config())


def _status(conf):
    now = time.time()
    report = {"node_id": conf["node_id"], "problems": []}
    problems = report["problems"]
    try:
        report["role"] = _read_role(conf)
    except CommandExecutionError as exc:
        report["role"] = None
        problems.append({"kind": "role_unreadable", "message": str(exc)})
    admin = _admin(conf)
    try:
        report["proxysql_running"] = _running(conf, report["role"], admin)
    except CommandExecutionError as exc:
        report["proxysql_running"] = None
        problems.append({"kind": "proxysql_unknown", "message": str(exc)})
    try:  # runs and accepts on its traffic port: the configuration is loaded
        report["proxysql_serving"] = _serving(conf, report["proxysql_running"])
    except CommandExecutionError as exc:
        report["proxysql_serving"] = None
        problems.append({"kind": "proxysql_unknown", "message": str(exc)})
    unread = bool(problems)  # the role or ProxySQL's state: what status must read
    problems.extend(_setup_problems(conf))
    problems.extend(_admin_problems(conf, report, admin))
    report["admin"] = _admin_report(admin)
    report["admin_reachable"] = admin and admin["reachable"]
    report["live"] = _live_origin(conf)
    report["acting_as"] = (_state(conf, ROLE_STATE) or {}).get("role")
    report["vip"] = _state(conf, VIP_STATE) or {"released": False}
    report["unfinished_transition"] = _state(conf, JOURNAL)
    expected = _expected_schema(conf)
    report["expected_schema"] = {k: expected.get(k) for k in ("fingerprint", "source", "error")}
    with _facts_cache(conf) as cache:
        report["newest_backup"] = _newest(conf["backup_dir"], expected, now, False, cache)
        report["newest_valid_backup"] = _newest(conf["backup_dir"], expected, now, True, cache)
        report["last_ship"] = _state(conf, SHIP_STATE)
        report["newest_received"] = _newest(conf["inbox_dir"], expected, now, False, cache)
        report["newest_valid_received"] = _newest(conf["inbox_dir"], expected, now, True, cache)
    report["proxysql_versions"] = _versions(conf, report)
    report["diverged"] = _divergence(conf, report, now)
    problems.extend(_problems(conf, report, now))
    if unread:  # last: Salt's cmd.* set the retcode of every command they run
        _fail_retcode()
    return report


def _versions(conf, report):
    """This node's ProxySQL version (pillar) and the peer's, from the newest manifest it sent."""
    received = report["newest_received"] or {}
    return {"local": conf["proxysql_version"], "peer": received.get("proxysql_version")}


def _setup_problems(conf):
    """What a node needs before it can take part: ProxySQL installed, its datadir, the shipping key."""
    found = []
    if not conf["commands"]["start"] and "service.available" in __salt__ \
            and not __salt__["service.available"](conf["service"]["name"]):
        found.append({"kind": "proxysql_unknown",
                      "message": f"service {conf['service']['name']!r} is not known to this system: "
                                 "install ProxySQL (this extension does not), or set "
                                 "proxysql_ha:service:name or proxysql_ha:commands"})
    if not os.path.isdir(conf["datadir"]):
        found.append({"kind": "datadir_missing",
                      "message": f"ProxySQL's datadir {conf['datadir']} does not exist: install "
                                 "ProxySQL and start it once, or set proxysql_ha:datadir"})
    peer = conf["peer"]
    if peer["transport"] == "ssh" and not os.path.isfile(peer["identity_file"]):
        found.append({"kind": "ssh_key_missing",
                      "message": f"the shipping key {peer['identity_file']} is missing: set "
                                 "proxysql_ha:formula:ssh_private_key and apply the formula, or "
                                 "set proxysql_ha:peer:identity_file"})
    elif peer["transport"] == "ssh" and not os.path.isfile(peer["known_hosts"]):
        found.append({"kind": "ssh_key_missing",
                      "message": f"the peer's host key file {peer['known_hosts']} is missing: set "
                                 "proxysql_ha:formula:peer_host_key and apply the formula, or "
                                 "set proxysql_ha:peer:known_hosts"})
    return found


def _live_origin(conf):
    """Which backup the live configuration is: its name, generation and the node that made it."""
    state = _state(conf, LIVE_STATE) or {}
    parsed = _u("proxysql_ha_store.parse_name")(state.get("name") or "")
    if not parsed:
        return None
    return {"name": state["name"], "generation": parsed[0], "node": parsed[2],
            "changed_since": state.get("source") != _source_or_none(conf)}


def _newest(directory, expected, now, valid_only, cache=None):
    for verdict in _entries(directory, expected, now, cache=cache):
        if verdict["generation"] is None or (valid_only and not verdict["valid"]):
            continue
        stamp = _u("proxysql_ha_store.stamp_ts")(verdict["name"])
        return dict(verdict, age=round(now - stamp, 1))
    return None


def _problems(conf, report, now):
    """Pure rules over the status report: what an operator must look at."""
    found = []
    master = report["role"] == "MASTER"
    running = report["proxysql_running"]
    if master and running is False:
        found.append({"kind": "master_proxysql_down",
                      "message": "this node is MASTER but ProxySQL is not running"})
    if report["role"] in ("BACKUP", "INIT") and running and conf["stop_on_backup"]:
        found.append({"kind": "backup_proxysql_up",
                      "message": f"this node is {report['role']} but ProxySQL is running"})
    vip = report.get("vip") or {}
    if vip.get("released"):
        found.append({"kind": "vip_released",
                      "message": "this node gave up the VIP: ProxySQL did not run "
                                 f"({vip.get('reason')}); it takes it back once ProxySQL runs"})
    unfinished = report.get("unfinished_transition")
    if unfinished and now - (unfinished.get("since") or 0) > (
            conf["lock_timeout"] + 2 * conf["service"]["timeout"]):  # not one under way now
        found.append({"kind": "transition_unfinished",
                      "message": f"a {unfinished.get('transition')} begun at "
                                 f"{_u('proxysql_ha_store.utc_iso')(unfinished.get('since') or 0)}"
                                 " is not finished: the next reconcile finishes it"})
    newest = report["newest_backup"]
    if master and newest and not newest["valid"]:
        found.append({"kind": "backup_invalid",
                      "message": f"newest backup {newest['name']} is invalid: {newest['reason']}"})
    stale = _stale(conf, now)
    if master and stale:
        found.append({"kind": "backup_stale", "message": stale})
    last = report["last_ship"]
    if master and last and not last.get("ok"):
        found.append({"kind": "ship_failed", "message": f"last ship failed: {last.get('error')}"})
    if report["expected_schema"]["error"]:
        found.append({"kind": "schema_unknown",
                      "message": f"no backup can be judged: {report['expected_schema']['error']}"})
    versions = report["proxysql_versions"]
    if versions["local"] and versions["peer"] and versions["local"] != versions["peer"]:
        found.append({"kind": "version_skew",
                      "message": f"this node runs ProxySQL {versions['local']}, the peer "
                                 f"{versions['peer']}: finish the upgrade on both nodes"})
    received = report["newest_received"]
    if received and not received["valid"]:
        found.append({"kind": "received_invalid",
                      "message": f"newest received backup {received['name']} is invalid: "
                                 f"{received['reason']}"})
    found.extend(_warm_problems(conf, report))
    diverged = report.get("diverged")
    if diverged:
        found.append({"kind": "diverged", "copy": diverged["copy"], "tables": diverged["tables"],
                      "message": _diverged_message(conf, diverged)})
    return found


def _diverged_message(conf, diverged):
    counts = {t: d.get("counts", d) for t, d in diverged["tables"].items()}
    held = ("the live database " + _live(conf)) if diverged["copy"] == "live" \
        else f"backup {diverged['copy']} (never shipped)"
    return (f"{held} holds changes the pair's MASTER does not have ({diverged['against']}): "
            f"{counts}; a restore over it keeps it as {DB_NAME}.pre-restore-<time>; "
            f"see proxysql_ha.diff {diverged['against']} {diverged['copy']}")


def _stale(conf, now):
    """Why the newest backup is out of date, or None."""
    live = _live(conf)
    source = _source_or_none(conf)
    if source is None:
        return None
    reference = _state(conf, LIVE_STATE) or {}
    age = now - source["mtime_ns"] / 1e9
    if reference.get("source") != source and age > conf["stale_after"]:
        return (f"{live} changed {age:.0f} s ago and no backup has been taken since "
                f"(more than {conf['stale_after']:g} s)")
    return None


def check():
    """
    Run :func:`status` and fire ``proxysql_ha/alert/<kind>`` for every problem.
    Returns True when there is none, else False (exit code 1).

    CLI Example:

    .. code-block:: bash

        salt-call proxysql_ha.check
    """
    conf = _config()
    report = _status(conf)
    for problem in report["problems"]:
        log.warning("proxysql_ha check: %s: %s", problem["kind"], problem["message"])
        _fire(f"alert/{problem['kind']}", dict(problem, node_id=report["node_id"],
                                               role=report["role"]))
    if conf["metrics"]["textfile_dir"]:  # the check job also keeps the metrics file fresh
        try:
            _write_metrics(conf, report)
        except (OSError, CommandExecutionError) as exc:
            log.warning("proxysql_ha check: metrics not written: %s", exc)
    if report["problems"]:
        _fail_retcode()
        return False
    return True


# ---- metrics ----------------------------------------------------------------------------


def metrics(write=True):
    """
    This node's metrics in node_exporter's textfile format (``proxysql_ha_*``:
    role, ProxySQL running, newest valid backups' age and generation, last
    successful ship, ship failures, restores, failovers, VIP releases, each
    problem kind, the version). With ``metrics:textfile_dir`` set (and
    ``write`` True) the file is also written there atomically; the check job
    does that every ``schedule:check_interval`` seconds.

    CLI Example:

    .. code-block:: bash

        salt-call proxysql_ha.metrics
        salt-call proxysql_ha.metrics write=False
    """
    conf = _config()
    report = _status(conf)
    __context__.pop("retcode", None)  # an unreadable role is a metric here, not a failure
    text = _metrics_text(conf, report)
    path = None
    if write and conf["metrics"]["textfile_dir"]:
        path = _write_metrics(conf, report, text)
    return {"written": path, "metrics": text}


def _metrics_text(conf, report):
    data = _u("proxysql_ha_metrics.facts")(report, _state(conf, METRICS_STATE),
                                           _state(conf, ROLE_STATE),
                                           _u("proxysql_ha_metrics.version")(), time.time())
    return _u("proxysql_ha_metrics.render")(data)


def _write_metrics(conf, report, text=None):
    directory = conf["metrics"]["textfile_dir"]
    if not os.path.isdir(directory):
        raise CommandExecutionError(
            f"metrics directory {directory} does not exist: create it (node_exporter's "
            "--collector.textfile.directory) or change proxysql_ha:metrics:textfile_dir")
    return _u("proxysql_ha_metrics.write_textfile")(
        directory, conf["metrics"]["file_name"], text or _metrics_text(conf, report),
        _u("proxysql_ha_store.new_tmp"), _u("proxysql_ha_store.publish"))
