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

import contextlib
import fcntl
import grp
import importlib
import logging
import os
import pwd
import shutil
import sqlite3
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


def __virtual__():
    if salt.utils.platform.is_windows():
        return (False, "proxysql_ha: ProxySQL failover runs on FreeBSD and Linux only")
    return __virtualname__


# ---- plumbing ----------------------------------------------------------------


def _u(name):
    """
    A function of this extension's ``_utils`` modules: through the loader when
    they were synced (``saltutil.sync_all``), else from the installed package
    (Salt's utils loader does not look into ``salt.loader`` entry points).
    """
    try:
        return __utils__[name]
    except KeyError:
        pass
    module, function = name.split(".", 1)
    try:
        return getattr(importlib.import_module(f"saltext.proxysql_ha.utils.{module}"), function)
    except ImportError as exc:
        raise CommandExecutionError(
            f"proxysql_ha's helper {module} is not loaded: run saltutil.sync_all, "
            "or install the saltext.proxysql-ha package"
        ) from exc


def _config():
    raw = __salt__["config.get"]("proxysql_ha", {})
    return _u("proxysql_ha_config.build")(raw, __grains__.get("os_family"), __opts__.get("id"))


def _live(conf):
    return os.path.join(conf["datadir"], DB_NAME)


def _ms(start):
    return round((time.monotonic() - start) * 1000, 1)


@contextlib.contextmanager
def _lock(conf):
    """Serialise every change on this node; give up after ``lock_timeout``."""
    path = os.path.join(_u("proxysql_ha_store.ensure_dir")(conf["state_dir"]), "lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
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


def _fire(tag, data):
    """
    Fire ``proxysql_ha/<tag>`` on the minion's event bus and on to the master.
    Best effort and bounded (0.5 s per send): an event never blocks a failover.
    """
    tag = f"proxysql_ha/{tag}"
    if not _minion_daemon_up():
        log.info("no salt-minion daemon on this node: event %s not sent", tag)
        return False
    try:
        with salt.utils.event.MinionEvent(__opts__, listen=False) as bus:
            if not bus.fire_event(data, tag, timeout=500):
                log.warning("event %s could not be sent to the minion's event bus", tag)
                return False
            if not __opts__.get("local") and __opts__.get("file_client") != "local":
                bus.fire_master(data, tag, timeout=500)
        return True
    except Exception as exc:  # pylint: disable=broad-except
        log.warning("could not fire event %s: %s", tag, exc)
        return False


def _state(conf, name):
    return _u("proxysql_ha_store.read_json")(os.path.join(conf["state_dir"], name))


def _save_state(conf, name, data):
    _u("proxysql_ha_store.write_json")(conf["state_dir"], name, data)


def _fail_retcode():
    __context__["retcode"] = 1


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


# ---- ProxySQL's service -------------------------------------------------------


def _service(conf, verb):
    """Run ``verb`` (start, stop, status) through pillar commands or ``service.*``."""
    commands = conf["commands"]
    if commands["start"]:
        out = __salt__["cmd.run_all"](
            commands[verb],
            python_shell=False,
            ignore_retcode=True,
            timeout=conf["service"]["timeout"],
        )
        if verb == "status":
            return out["retcode"] == 0
        if out["retcode"] != 0:
            raise CommandExecutionError(
                f"ProxySQL {verb} command {commands[verb]} failed (exit {out['retcode']}): "
                f"{(out.get('stderr') or out.get('stdout') or '').strip()}"
            )
        return True
    function = f"service.{verb}"
    if function not in __salt__:
        raise CommandExecutionError(
            f"{function} is not available on this minion (on FreeBSD with Salt 3008, install "
            "saltext-freebsd), or set proxysql_ha:commands"
        )
    result = __salt__[function](conf["service"]["name"])
    if verb != "status" and not result:
        raise CommandExecutionError(f"{function} {conf['service']['name']} failed")
    return bool(result)


def _running(conf):
    return _service(conf, "status")


def _wait_for(conf, running):
    deadline = time.monotonic() + conf["service"]["timeout"]
    while _running(conf) != running:
        if time.monotonic() >= deadline:
            state = "start" if running else "stop"
            raise CommandExecutionError(
                f"ProxySQL did not {state} within {conf['service']['timeout']:g} s"
            )
        time.sleep(0.1)


def _start(conf, running=None):
    """Start ProxySQL unless it runs (``running``: already known); True when started now."""
    if running if running is not None else _running(conf):
        return False
    _service(conf, "start")
    _wait_for(conf, True)
    return True


def _stop(conf, running=None):
    """Stop ProxySQL if it runs (``running``: already known); True when stopped now."""
    if not (running if running is not None else _running(conf)):
        return False
    _service(conf, "stop")
    _wait_for(conf, False)
    return True


# ---- judging backups -------------------------------------------------------------


def _expected_schema(conf):
    """
    ``(fingerprint, source)`` of the schema the local ProxySQL expects: the
    pillar's ``schema_fingerprint``, else the live database's (ProxySQL rebuilt
    it to its own DDL at its last start). ``(None, reason)`` when neither exists.
    """
    if conf["schema_fingerprint"]:
        return conf["schema_fingerprint"], "pillar"
    live = _live(conf)
    if not os.path.isfile(live):
        return None, f"{live} does not exist and proxysql_ha:schema_fingerprint is not set"
    try:
        table_sql = _u("proxysql_ha_sqlite.live_tables")(live)
    except (sqlite3.Error, OSError) as exc:
        return None, f"{live} is unreadable ({exc}) and proxysql_ha:schema_fingerprint is not set"
    if "mysql_users" not in table_sql:
        return None, f"{live} has no ProxySQL tables and proxysql_ha:schema_fingerprint is not set"
    return _u("proxysql_ha_sqlite.fingerprint")(table_sql), "live database"


def _judge(directory, base, files, expected, now):
    """The verdict on one backup: ``valid`` and, when not, the ``reason``."""
    verdict = {
        "name": base,
        "dir": directory,
        "generation": _u("proxysql_ha_store.parse_name")(base)[0],
        "created": _u("proxysql_ha_store.utc_iso")(_u("proxysql_ha_store.stamp_ts")(base)),
        "valid": False,
        "reason": None,
    }
    verdict["reason"] = _problem(directory, base, files, expected, now, verdict)
    verdict["valid"] = verdict["reason"] is None
    return verdict


def _problem(directory, base, files, expected, now, verdict):
    """The first reason not to trust a backup, or None."""
    if not files["db"]:
        return "database file missing (manifest without data)"
    db_path = os.path.join(directory, base + ".db")
    try:
        manifest = _u("proxysql_ha_store.read_manifest")(os.path.join(directory, base + ".json"))
    except ValueError as exc:
        return str(exc)
    problems = _u("proxysql_ha_store.check_manifest")(manifest, base, now)
    if problems:
        return problems[0]
    verdict.update(size=manifest["size"], node_id=manifest["node_id"], created=manifest["created"])
    digest, size = _u("proxysql_ha_store.sha256_file")(db_path)
    if size != manifest["size"]:
        return f"size {size} differs from the manifest's {manifest['size']} (truncated?)"
    if digest != manifest["sha256"]:
        return "sha256 differs from the manifest's: the file changed or is corrupt"
    try:
        facts = _u("proxysql_ha_sqlite.describe_file")(db_path)
    except ValueError as exc:
        return str(exc)
    if facts["ddl_fingerprint"] != manifest["ddl_fingerprint"]:
        return "the schema differs from the manifest's"
    if expected[0] is None:
        return f"cannot check the schema: {expected[1]}"
    if facts["ddl_fingerprint"] != expected[0]:
        return (
            f"its schema differs from the one the local ProxySQL expects ({expected[1]}): "
            "a backup from another ProxySQL version would lose tables at start"
        )
    if facts["row_counts"] != manifest["row_counts"]:
        return "row counts differ from the manifest's (torn or swapped copy)"
    return None


def _entries(directory, expected, now, min_generation=0, arrived_after=None):
    """
    Every backup in ``directory`` newest first, judged lazily: yields verdicts,
    symlinks and incomplete pairs included. Stops below ``min_generation``;
    with ``arrived_after`` (a time), yields only the backups written here
    after it, whatever their generation.
    """
    found = _u("proxysql_ha_store.scan")(directory)
    for name in sorted(found["symlinks"]):
        yield {"name": name, "dir": directory, "generation": None, "valid": False,
               "reason": "symlink: never followed"}
    for base in _u("proxysql_ha_store.newest_first")(found["backups"]):
        if arrived_after is not None:
            if _arrival(directory, base) <= arrived_after:
                continue
        elif _u("proxysql_ha_store.parse_name")(base)[0] < min_generation:
            return
        yield _judge(directory, base, found["backups"][base], expected, now)


def _arrival(directory, base):
    """When a backup was written into ``directory`` (its file's mtime), or 0."""
    try:
        return os.lstat(os.path.join(directory, base + ".db")).st_mtime
    except OSError:
        return 0


def _choose(conf, name=None, min_generation=0, stepped_down=None):
    """
    The backup to restore (or the one called ``name``): the newest valid one
    in the inbox, else the newest valid one in the outgoing dir, with the
    invalid ones met on the way. The peer's copies come first: a node's own
    outgoing copies can be stale, e.g. made while a split brain cut it off.

    ``stepped_down``: when this node stopped being MASTER. Copies the peer
    shipped since then are the pair's configuration, newer than this node's
    whatever their generation: after a split brain both sides numbered their
    own copies, so numbers collide. Without such copies, ``min_generation``
    applies.
    """
    expected = _expected_schema(conf)
    now = time.time()
    rejected = []
    arrived = stepped_down if stepped_down is not None and any(
        _arrival(conf["inbox_dir"], base) > stepped_down
        for base in _u("proxysql_ha_store.scan")(conf["inbox_dir"])["backups"]) else None
    for directory in (conf["inbox_dir"], conf["backup_dir"]):
        since = arrived if directory == conf["inbox_dir"] else None
        if arrived is not None and directory == conf["backup_dir"]:
            break  # the peer's newer copies are all invalid: not one of our own instead
        for verdict in _entries(directory, expected, now, min_generation, since):
            if name is not None and verdict["name"] != name:
                continue
            if verdict["valid"]:
                return verdict, rejected
            rejected.append(verdict)
    if name is not None and not rejected:
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
        protect = next((b for b in ordered
                        if _judge(directory, b, found["backups"][b], expected, now)["valid"]), None)
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
    return {
        "expected_schema": {"fingerprint": expected[0], "source": expected[1]},
        "outgoing": list(_entries(conf["backup_dir"], expected, now)),
        "incoming": list(_entries(conf["inbox_dir"], expected, now)),
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


def restore(name=None, test=False, start=True):
    """
    Restore the newest valid backup (inbox and backup dir) into ProxySQL's
    datadir, keeping this node's ProxySQL Cluster uuid, and start ProxySQL.

    ProxySQL is stopped first; a leftover ``proxysql.db-journal`` is moved
    aside with the old database, which is kept as
    ``proxysql.db.pre-restore-<UTC time>``; the new file replaces the old one by
    an atomic rename. With no valid backup the current database is left
    untouched, ProxySQL is started on it, and every rejected backup is listed
    with its reason.

    name
        Restore this backup instead of the newest valid one (it must be valid).
    test
        Report what would happen; change nothing.
    start
        Start ProxySQL afterwards (default True).

    CLI Example:

    .. code-block:: bash

        salt-call proxysql_ha.restore
        salt-call proxysql_ha.restore test=True
    """
    conf = _config()
    with _lock(conf):
        return _restore(conf, name=name, test=test, start=start)


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
        report["pre_restore_copy"] = _install(conf, chosen, owner)
    except CommandExecutionError as exc:
        started = _start(conf) if start else False
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


def _install(conf, chosen, owner):
    """Put a verified backup in place of the live database, atomically."""
    store = "proxysql_ha_store."
    datadir, live = conf["datadir"], _live(conf)
    if not os.path.isdir(datadir):
        raise CommandExecutionError(f"datadir {datadir} does not exist")
    node_uuid = _u("proxysql_ha_sqlite.live_uuid")(live) if os.path.isfile(live) else None
    tmp = _u(store + "new_tmp")(datadir, ".restore")
    try:
        _u("proxysql_ha_sqlite.copy_for_restore")(
            os.path.join(chosen["dir"], chosen["name"] + ".db"), tmp, node_uuid)
        digest = _u("proxysql_ha_sqlite.content_digest")(tmp)
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
        _u(store + "remove_quietly")(tmp)
    _save_state(conf, LIVE_STATE, {
        "name": chosen["name"], "generation": chosen["generation"],
        "content_sha256": digest,
        "source": _u("proxysql_ha_sqlite.source_state")(live),
    })
    _prune_pre_restore(conf)
    return pre


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
    with _lock(conf):
        current = _read_role(conf)
        wanted = "promote" if current == "MASTER" else "demote"
        if what not in (None, wanted):
            return {"acted": False, "role": current,
                    "comment": f"not {what}d: this node is {current}"}
        plan = _plan(conf, current)
        if not plan["actions"]:
            return {"acted": False, "role": current, "actions": [],
                    "comment": f"already in line with {current}: nothing to do"}
        report = {"acted": True, "role": current, "actions": plan["actions"], "errors": []}
        (_promote_steps if wanted == "promote" else _demote_steps)(conf, report, plan)
        report["ms"] = _ms(begin)
    _finish(f"{wanted}d", report)
    return report


def _promote_steps(conf, report, plan):
    if plan["pick"] is not None:
        try:
            report["restore"] = _restore(conf, start=False, pick=plan["pick"],
                                         running=plan["running"])
        except CommandExecutionError as exc:
            report["errors"].append(str(exc))
    mark = time.monotonic()
    restored = (report.get("restore") or {}).get("restored")
    try:  # a restore that went through left ProxySQL stopped; otherwise ask
        report["started"] = _start(conf, running=False if restored else None)
    except CommandExecutionError as exc:
        report["errors"].append(str(exc))
    report["start_ms"] = _ms(mark)
    report["schedule"] = _schedule(conf, "MASTER")
    if not report["errors"]:  # a failed restore is tried again by the next promote
        _save_state(conf, ROLE_STATE, {"role": "MASTER", "since": time.time()})


def _demote_steps(conf, report, plan):
    report["schedule"] = _schedule(conf, report["role"])
    report["stopped"] = False
    if conf["stop_on_backup"] and plan["running"]:
        try:
            report["stopped"] = _stop(conf, running=True)
        except CommandExecutionError as exc:
            report["errors"].append(str(exc))
    previous = _state(conf, ROLE_STATE) or {}
    stepped_down = previous.get("since") if previous.get("role") not in (None, "MASTER") \
        else time.time()  # BACKUP to INIT is not a new step down
    _save_state(conf, ROLE_STATE, {"role": report["role"], "since": stepped_down})


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


def _plan(conf, role):
    """
    What promote (MASTER) or demote (otherwise) would change now: ``actions``
    in words, the ``pick`` of backup to restore (a node taking over only), and
    whether ProxySQL is ``running``.
    """
    running = _running(conf)
    recorded = (_state(conf, ROLE_STATE) or {}).get("role")  # the role it last acted on
    plan = {"actions": [], "pick": None, "running": running}
    actions = plan["actions"]
    if role == "MASTER":
        if recorded != "MASTER":
            actions.append("take over as MASTER")
            newest = (_state(conf, LIVE_STATE) or {}).get("generation", 0)
            plan["pick"] = _choose(conf, min_generation=newest + 1,
                                   stepped_down=(_state(conf, ROLE_STATE) or {}).get("since"))
            if plan["pick"][0]:
                actions.append(f"restore {plan['pick'][0]['name']}")
        if not running:
            actions.append("start ProxySQL")
    else:
        if recorded == "MASTER":
            actions.append(f"hand over as {role}")
        if running and conf["stop_on_backup"]:
            actions.append("stop ProxySQL")
    actions += [f"{'enable' if want else 'disable'} schedule job {job}"
                for job, want in _schedule_changes(conf, role).items()]
    return plan


# ---- status and check ----------------------------------------------------------------


def status():
    """
    This node at a glance: role, whether ProxySQL runs, which backup the live
    configuration is (``live``: name, generation, node; after a split brain
    this says whose copy won), the newest local backup (age, generation,
    valid), the last ship, the newest valid received backup, and the problems
    found (``problems``, each with a ``kind``).

    CLI Example:

    .. code-block:: bash

        salt-call proxysql_ha.status
    """
    conf = _config()
    now = time.time()
    report = {"node_id": conf["node_id"], "problems": []}
    problems = report["problems"]
    try:
        report["role"] = _read_role(conf)
    except CommandExecutionError as exc:
        report["role"] = None
        problems.append({"kind": "role_unreadable", "message": str(exc)})
    try:
        report["proxysql_running"] = _running(conf)
    except CommandExecutionError as exc:
        report["proxysql_running"] = None
        problems.append({"kind": "proxysql_unknown", "message": str(exc)})
    report["live"] = _live_origin(conf)
    report["acting_as"] = (_state(conf, ROLE_STATE) or {}).get("role")
    expected = _expected_schema(conf)
    report["newest_backup"] = _newest(conf["backup_dir"], expected, now, valid_only=False)
    report["last_ship"] = _state(conf, SHIP_STATE)
    report["newest_received"] = _newest(conf["inbox_dir"], expected, now, valid_only=False)
    report["newest_valid_received"] = _newest(conf["inbox_dir"], expected, now, valid_only=True)
    problems.extend(_problems(conf, report, now))
    return report


def _live_origin(conf):
    """Which backup the live configuration is: its name, generation and the node that made it."""
    state = _state(conf, LIVE_STATE) or {}
    parsed = _u("proxysql_ha_store.parse_name")(state.get("name") or "")
    if not parsed:
        return None
    return {"name": state["name"], "generation": parsed[0], "node": parsed[2],
            "changed_since": state.get("source") != _source_or_none(conf)}


def _newest(directory, expected, now, valid_only):
    for verdict in _entries(directory, expected, now):
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
    received = report["newest_received"]
    if received and not received["valid"]:
        found.append({"kind": "received_invalid",
                      "message": f"newest received backup {received['name']} is invalid: "
                                 f"{received['reason']}"})
    return found


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
    report = status()
    for problem in report["problems"]:
        log.warning("proxysql_ha check: %s: %s", problem["kind"], problem["message"])
        _fire(f"alert/{problem['kind']}", dict(problem, node_id=report["node_id"],
                                               role=report["role"]))
    if report["problems"]:
        _fail_retcode()
        return False
    return True
