"""
The ``proxysql_ha`` pillar: defaults and validation.

Pure logic: :func:`build` takes the raw pillar value and a few facts about the
minion and returns a complete, checked configuration, or raises
``SaltInvocationError`` naming the key, the value and what is wrong. Nothing in
this module touches the system, so every rule here is tested on data alone.
"""

import copy
import ipaddress
import os
import re

from salt.exceptions import SaltInvocationError

__virtualname__ = "proxysql_ha_config"

ROLE_SOURCES = ("freebsd_carp", "vip")
CARP_WIRINGS = ("auto", "devd", "ucarp", "keepalived", "none")
TRANSPORTS = ("ssh", "local")
# How a MASTER whose ProxySQL cannot run gives up the VIP (proxysql_ha_carp).
HEALTH_CARPS = ("auto", "freebsd", "ucarp", "keepalived", "none")
# FreeBSD and Linux interface names: letters, digits and . _ - (Linux caps at 15).
_IFACE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,14}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,253}$")
_NODE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# Paths end up in sshd's forced command and devd's action (both run by a shell):
# no spaces, quotes or other characters a shell would read.
_PATH_RE = re.compile(r"/[A-Za-z0-9_./+-]{0,4095}")
_KEY_RE = re.compile(r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]{16,}( [^\n]*)?")
# Directories this extension must never own (it creates and chmods its dirs 0700).
SYSTEM_DIRS = frozenset((
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt", "/proc", "/root",
    "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/usr/bin", "/usr/lib", "/usr/local",
    "/usr/local/etc", "/usr/local/bin", "/usr/sbin", "/var", "/var/db", "/var/lib", "/var/log",
    "/var/run", "/var/tmp",
))


def __virtual__():
    return __virtualname__


def defaults(os_family, root_dir="/"):
    """
    The documented defaults for a minion of ``os_family`` (the grain).

    ``root_dir`` is Salt's (``__opts__["root_dir"]``): as Salt does for its own
    cache and keys, this extension's own directories (its state, backups, inbox
    and ``formula:etc_dir``) move under it when it is not ``/``. ProxySQL's
    datadir and ``formula:libexec_dir`` (system locations) do not.
    ``peer:identity_file`` and ``peer:known_hosts`` default to files in
    ``formula:etc_dir`` (``None`` here: :func:`build` derives them).
    """
    if os_family == "FreeBSD":
        datadir, base, role_source = "/var/db/proxysql", "/var/db/proxysql-ha", "freebsd_carp"
        etc, run = "/usr/local/etc/proxysql-ha", "/var/run"
        mysql_client = "mariadb1011-client"
    else:
        datadir, base, role_source = "/var/lib/proxysql", "/var/lib/proxysql-ha", "vip"
        etc, run = "/etc/proxysql-ha", "/run"
        mysql_client = "mariadb-client"
    base, etc = _rooted(root_dir, base), _rooted(root_dir, etc)
    return {
        "vhid": None,
        "interface": None,
        "role_source": role_source,
        "vip": None,
        "node_id": None,
        "datadir": datadir,
        "user": "proxysql",
        "group": "proxysql",
        "backup_dir": os.path.join(base, "outgoing"),
        "inbox_dir": os.path.join(base, "incoming"),
        "state_dir": os.path.join(base, "state"),
        "retention": {"keep": 10, "max_age": 86400, "keep_pre_restore": 3},
        "inbox_quota": {"files": 100, "bytes": 4 << 30},
        "settle": 0.5,
        "settle_timeout": 10.0,
        "lock_timeout": 30.0,
        "stale_after": 120.0,
        "stop_on_backup": True,
        # cold: the BACKUP's ProxySQL is stopped and a takeover restores and starts it;
        # warm: it runs with every received backup applied, a takeover only moves the VIP.
        "standby": "cold",
        "pidfile": None,
        "service": {"name": "proxysql", "timeout": 30.0},
        "proxysql": {"traffic_address": "auto"},
        "commands": {"start": None, "stop": None, "status": None},
        "schema_fingerprint": None,
        "proxysql_version": None,
        "schedule": {
            "ship_job": "proxysql_ha_ship",
            "purge_job": "proxysql_ha_purge",
            "reconcile_job": "proxysql_ha_reconcile",
            "check_job": "proxysql_ha_check",
            # the engine asks for ship and reconcile the moment they are needed: these
            # schedules are the last resort (a dead engine), each run a fork of the minion
            "ship_interval": 900,
            "purge_interval": 3600,
            "reconcile_interval": 600,
            "check_interval": 300,
            "watch_interval": 0.25,
            "engine_check_interval": 1.0,
        },
        "health": {
            "enabled": True,
            "carp": "auto",
            "grace": 5.0,
            "hold_down": 30.0,
            "ucarp_pidfile": os.path.join(run, "proxysql-ha-ucarp.pid"),
            "keepalived_track_file": os.path.join(base, "proxysql-down"),
        },
        "formula": {
            "carp": "auto",
            "libexec_dir": "/usr/local/libexec",
            "etc_dir": etc,
            "receive_user": "proxysql-ha",
            "ssh_private_key": None,
            "peer_public_key": None,
            "peer_host_key": None,
            "restart_minion": True,
            # The MySQL client the admin client runs (admin:enabled); null: not installed.
            "mysql_client_package": mysql_client,
            "ucarp": {"src_ip": None, "password": None, "advbase": 1, "advskew": 0,
                      "preempt": True, "prefix": 32},
        },
        # The admin interface; None: taken from the live db (admin-mysql_ifaces,
        # admin-admin_credentials), as ProxySQL takes them.
        "admin": {
            # Use the admin interface: the layer checks (config_not_saved/_not_loaded) and
            # the health rule (SELECT 1 there, beside the traffic port's accept).
            "enabled": False,
            "layer_check_interval": 30,  # s, the engine's layer check on the MASTER; 0: off
            "host": None,
            "port": None,
            "user": None,
            "password": None,
            "connect_timeout": 3,
            "query_timeout": 10.0,
            "client": None,
        },
        "peer": {
            "transport": "ssh",
            "host": None,
            "port": 22,
            "user": "proxysql-ha",
            "identity_file": None,  # default: <formula:etc_dir>/id_ed25519
            "known_hosts": None,  # default: <formula:etc_dir>/known_hosts
            "connect_timeout": 3,
            "timeout": 60,
            "receive_command": "proxysql-ha-receive",
            "path": None,
        },
        "metrics": {
            # node_exporter's textfile collector directory; None: no metrics file
            "textfile_dir": None,
            "file_name": "proxysql_ha.prom",
        },
    }


def _rooted(root_dir, path):
    """``path`` under Salt's ``root_dir``, as Salt prefixes its own paths (nothing when it is /)."""
    if not root_dir or _normalise(root_dir) == "/":
        return path
    return os.path.join(_normalise(root_dir), path.lstrip("/"))


def build(raw, os_family, minion_id, root_dir="/"):
    """
    Merge the pillar value ``raw`` over the defaults and validate the result.

    Raises ``SaltInvocationError`` on the first problem found, naming the key.
    """
    if raw is None or raw == {}:
        raise SaltInvocationError(
            "pillar key 'proxysql_ha' is missing or empty: at least "
            "'proxysql_ha:vhid' and 'proxysql_ha:interface' are required "
            "(see pillar.example)"
        )
    if not isinstance(raw, dict):
        raise SaltInvocationError(
            f"pillar key 'proxysql_ha' must be a mapping, got {type(raw).__name__}"
        )
    conf = _merge(defaults(os_family, root_dir), _plain(raw), "proxysql_ha")
    if conf["standby"] == "warm":  # a warm standby's ProxySQL runs on the BACKUP
        if raw.get("stop_on_backup") is True:
            _fail("stop_on_backup", True, "contradicts 'standby: warm' (ProxySQL runs on a warm "
                  "BACKUP): leave it out, or set standby: cold")
        conf["stop_on_backup"] = False
        # it is applied through the admin interface, so warm means the admin client is used
        given = raw.get("admin")
        if isinstance(given, dict) and given.get("enabled") is False:
            _fail("admin:enabled", False, "contradicts 'standby: warm' (received backups are "
                  "applied through the admin interface): leave it out, or set standby: cold")
        conf["admin"]["enabled"] = True
    if conf["node_id"] is None:
        conf["node_id"] = minion_id
    etc = conf["formula"]["etc_dir"]
    for key, name in (("identity_file", "id_ed25519"), ("known_hosts", "known_hosts")):
        if conf["peer"][key] is None and isinstance(etc, str):
            conf["peer"][key] = etc.rstrip("/") + "/" + name
    _check(conf)
    if conf["pidfile"] is None:
        conf["pidfile"] = os.path.join(conf["datadir"], "proxysql.pid")
    return conf


def _plain(value):
    """
    Plain dicts and lists of the pillar's value. Salt hands pillar data over
    as ``salt.utils.secret`` MaskedDict/MaskedList, whose text is
    ``'**********'``: a message built from them would not say which command
    failed. Secrets are kept out of messages by naming them, not by this.
    """
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _merge(base, override, path):
    """Deep-merge ``override`` into a copy of ``base``; unknown keys are errors."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        where = f"{path}:{key}"
        if key not in base:
            known = ", ".join(sorted(base))
            raise SaltInvocationError(f"unknown pillar key '{where}' (known keys: {known})")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise SaltInvocationError(
                    f"pillar key '{where}' must be a mapping, got {value!r}"
                )
            out[key] = _merge(base[key], value, where)
        else:
            out[key] = value
    return out


def _fail(key, value, problem):
    raise SaltInvocationError(f"pillar key 'proxysql_ha:{key}' = {value!r}: {problem}")


def _int(conf, key, low, high):
    value = _get(conf, key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        _fail(key, value, f"must be a whole number from {low} to {high}")


def _number(conf, key, low, high):
    value = _get(conf, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        _fail(key, value, f"must be a number from {low} to {high}")


def _abspath(conf, key, required=True):
    value = _get(conf, key)
    if value is None and not required:
        return
    if not isinstance(value, str) or not _PATH_RE.fullmatch(value):
        _fail(key, value, "must be an absolute path of letters, digits and / . _ + - only")
    if _normalise(value) in SYSTEM_DIRS:
        _fail(key, value, "must be a directory of its own, not a system directory")


def _normalise(path):
    """normpath, with POSIX's special leading ``//`` folded too."""
    return os.path.normpath("/" + path.lstrip("/"))


def _match(conf, key, regex, what):
    value = _get(conf, key)
    if not isinstance(value, str) or not regex.fullmatch(value):
        _fail(key, value, f"must be {what}")


def _bool(conf, key):
    value = _get(conf, key)
    if not isinstance(value, bool):
        _fail(key, value, "must be true or false")


def _get(conf, key):
    value = conf
    for part in key.split(":"):
        value = value[part]
    return value


def _argv(conf, key):
    value = _get(conf, key)
    if value is None:
        return
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(arg, str) and arg and "\0" not in arg for arg in value)
        or not os.path.isabs(value[0])
    ):
        _fail(key, value, "must be a list of arguments whose first item is an absolute path "
              "(it is run without a shell)")


def _check(conf):
    _int(conf, "vhid", 1, 255)
    _match(conf, "interface", _IFACE_RE, "a network interface name such as em0 or eth0")
    if conf["role_source"] not in ROLE_SOURCES:
        _fail("role_source", conf["role_source"], f"must be one of {', '.join(ROLE_SOURCES)}")
    if conf["role_source"] == "vip":
        try:
            if not isinstance(conf["vip"], str):
                raise ValueError(conf["vip"])
            ipaddress.ip_address(conf["vip"])
        except ValueError:
            _fail("vip", conf["vip"], "must be the virtual IP address when role_source is vip")
    _match(conf, "node_id", _NODE_RE, "a node name of letters, digits, '.', '_' or '-'")
    for key in ("datadir", "backup_dir", "inbox_dir", "state_dir"):
        _abspath(conf, key)
    dirs = [_normalise(conf[k]) for k in ("datadir", "backup_dir", "inbox_dir", "state_dir")]
    if len(set(dirs)) != len(dirs):
        _fail("backup_dir", conf["backup_dir"],
              "datadir, backup_dir, inbox_dir and state_dir must be four different directories")
    _match(conf, "user", _NAME_RE, "a user name")
    _match(conf, "group", _NAME_RE, "a group name")
    _int(conf, "retention:keep", 1, 10000)
    _number(conf, "retention:max_age", 0, 10 * 365 * 86400)
    _int(conf, "retention:keep_pre_restore", 0, 1000)
    _int(conf, "inbox_quota:files", 2, 100000)
    _int(conf, "inbox_quota:bytes", 1 << 20, 1 << 50)
    _number(conf, "settle", 0, 60)
    _number(conf, "settle_timeout", 0.1, 600)
    if conf["settle_timeout"] <= conf["settle"]:
        _fail("settle_timeout", conf["settle_timeout"], "must be longer than 'settle'")
    _number(conf, "lock_timeout", 0, 3600)
    _number(conf, "stale_after", 1, 10 * 86400)
    _bool(conf, "stop_on_backup")
    _standby(conf)
    if conf["pidfile"] is not False:
        _abspath(conf, "pidfile", required=False)
    _match(conf, "service:name", _NAME_RE, "a service name")
    _number(conf, "service:timeout", 1, 600)
    _traffic_address(conf)
    for verb in ("start", "stop", "status"):
        _argv(conf, f"commands:{verb}")
    given = [v for v in ("start", "stop", "status") if conf["commands"][v] is not None]
    if given and len(given) != 3:
        _fail("commands", conf["commands"], "give all three of start, stop and status, or none")
    if conf["schema_fingerprint"] is not None:
        _match(conf, "schema_fingerprint", re.compile(r"^[0-9a-f]{64}$"), "a sha256 hex digest")
    for key in ("ship_job", "purge_job", "reconcile_job", "check_job"):
        _match(conf, f"schedule:{key}", _NAME_RE, "a schedule job name")
    for key in ("ship_interval", "purge_interval", "reconcile_interval", "check_interval"):
        _int(conf, f"schedule:{key}", 1, 86400)
    _number(conf, "schedule:watch_interval", 0.05, 60)
    if conf["schedule"]["engine_check_interval"] != 0:
        _number(conf, "schedule:engine_check_interval", 0.1, 60)
    _check_peer(conf)
    _check_admin(conf)
    _check_formula(conf)
    _check_metrics(conf)
    _check_health(conf)


def _standby(conf):
    if conf["standby"] not in ("cold", "warm"):
        _fail("standby", conf["standby"], "must be cold or warm")


def _check_metrics(conf):
    if conf["metrics"]["textfile_dir"] is not None:
        _abspath(conf, "metrics:textfile_dir")
    _match(conf, "metrics:file_name", re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\.prom$"),
           "a file name ending in .prom (node_exporter's textfile collector reads only those)")


# host:port, an IPv6 host in brackets; the port is checked for its range below.
_ADDRESS_RE = re.compile(r"^(?:[A-Za-z0-9_.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):([0-9]{1,5})$")


def _traffic_address(conf):
    """``proxysql:traffic_address``: auto, none, or host:port (IPv6 as [addr]:port)."""
    value = conf["proxysql"]["traffic_address"]
    if value in ("auto", "none"):
        return
    match = _ADDRESS_RE.fullmatch(value) if isinstance(value, str) else None
    if not match or not 1 <= int(match.group(1)) <= 65535:
        _fail("proxysql:traffic_address", value,
              "must be auto (the first mysql-interfaces entry of the live db), none (wait for "
              "the process only) or host:port with a port from 1 to 65535 ([::1]:6033 for IPv6)")


def _check_peer(conf):
    peer = conf["peer"]
    if peer["transport"] not in TRANSPORTS:
        _fail("peer:transport", peer["transport"], f"must be one of {', '.join(TRANSPORTS)}")
    if peer["transport"] == "local":
        _abspath(conf, "peer:path")
        return
    _match(conf, "peer:host", _HOST_RE, "the peer's host name or address")
    if peer["host"].startswith("-"):
        _fail("peer:host", peer["host"], "must not start with '-'")
    _int(conf, "peer:port", 1, 65535)
    _match(conf, "peer:user", _NAME_RE, "a user name")
    _abspath(conf, "peer:identity_file")
    _abspath(conf, "peer:known_hosts")
    _int(conf, "peer:connect_timeout", 1, 120)
    _int(conf, "peer:timeout", 1, 3600)
    _match(conf, "peer:receive_command", re.compile(r"^[A-Za-z0-9_./-]{1,255}$"),
           "a command name or path without spaces")


def _check_admin(conf):
    admin = conf["admin"]
    host = admin["host"]
    if host is not None:
        if isinstance(host, str) and host.startswith("/"):
            _abspath(conf, "admin:host")
        elif not isinstance(host, str) or not _HOST_RE.fullmatch(host) or host.startswith("-"):
            _fail("admin:host", host, "must be an address, a host name or a unix socket's absolute path")
    if admin["port"] is not None:
        _int(conf, "admin:port", 1, 65535)
    # admin-admin_credentials is "user:password;user:password": neither may hold ':' or ';'.
    for key in ("user", "password"):
        value = admin[key]
        if value is not None and (
            not isinstance(value, str) or not value or any(c in value for c in ":;\0\n")
        ):
            _fail(f"admin:{key}", "<hidden>" if key == "password" else value,
                  "must be non-empty text without ':', ';', NUL or newline")
    _bool(conf, "admin:enabled")
    _number(conf, "admin:layer_check_interval", 0, 86400)
    _int(conf, "admin:connect_timeout", 1, 60)
    _number(conf, "admin:query_timeout", 0.5, 600)
    if admin["query_timeout"] < admin["connect_timeout"]:
        _fail("admin:query_timeout", admin["query_timeout"],
              "must be at least 'admin:connect_timeout' (it bounds the whole call)")
    _abspath(conf, "admin:client", required=False)


def _check_formula(conf):
    formula = conf["formula"]
    if formula["carp"] not in CARP_WIRINGS:
        _fail("formula:carp", formula["carp"], f"must be one of {', '.join(CARP_WIRINGS)}")
    _abspath(conf, "formula:libexec_dir")
    _abspath(conf, "formula:etc_dir")
    _match(conf, "formula:receive_user", _NAME_RE, "a user name")
    if formula["receive_user"] in ("root", "toor", conf["user"]):
        _fail("formula:receive_user", formula["receive_user"],
              "must be an account of its own: the formula sets its home and shell, and the "
              "peer's key logs in as it")
    for key in ("ssh_private_key", "peer_public_key", "peer_host_key"):
        value = formula[key]
        if value is not None and (not isinstance(value, str) or "\0" in value):
            _fail(f"formula:{key}", "<hidden>" if key == "ssh_private_key" else value,
                  "must be text")
    for key in ("peer_public_key", "peer_host_key"):
        if formula[key] is not None and not _KEY_RE.fullmatch(formula[key].strip()):
            _fail(f"formula:{key}", formula[key],
                  "must be one OpenSSH public key: '<type> <base64> [comment]'")
    _bool(conf, "formula:restart_minion")
    if formula["mysql_client_package"] is not None:
        _match(conf, "formula:mysql_client_package", _NAME_RE, "a package name")
    ucarp = formula["ucarp"]
    if ucarp["src_ip"] is not None:
        try:
            ipaddress.ip_address(str(ucarp["src_ip"]))
        except ValueError:
            _fail("formula:ucarp:src_ip", ucarp["src_ip"], "must be this node's own IP address")
    if ucarp["password"] is not None and not isinstance(ucarp["password"], str):
        _fail("formula:ucarp:password", "<hidden>", "must be text")
    _int(conf, "formula:ucarp:advbase", 1, 255)
    _int(conf, "formula:ucarp:advskew", 0, 254)
    _bool(conf, "formula:ucarp:preempt")
    _int(conf, "formula:ucarp:prefix", 0, 128)


def _check_health(conf):
    health = conf["health"]
    _bool(conf, "health:enabled")
    if health["carp"] not in HEALTH_CARPS:
        _fail("health:carp", health["carp"], f"must be one of {', '.join(HEALTH_CARPS)}")
    _number(conf, "health:grace", 0.5, 600)
    _number(conf, "health:hold_down", 0, 86400)
    _abspath(conf, "health:ucarp_pidfile")
    _abspath(conf, "health:keepalived_track_file")


def health_carp(conf, os_family):
    """
    The implementation that gives up the VIP (``freebsd``, ``ucarp``,
    ``keepalived``) or None (``health:carp: none``, or a wiring without one):
    ``auto`` follows the role source and the formula's CARP wiring.
    """
    chosen = conf["health"]["carp"]
    if chosen == "none":
        return None
    if chosen != "auto":
        return chosen
    if conf["role_source"] == "freebsd_carp":
        return "freebsd"
    wiring = conf["formula"]["carp"]
    if wiring == "auto":
        wiring = "devd" if os_family == "FreeBSD" else "ucarp"
    return wiring if wiring in ("ucarp", "keepalived") else None
