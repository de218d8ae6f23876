"""
ProxySQL's admin interface, through the system MySQL client (``mariadb`` or ``mysql``).

One job: run a statement on the admin interface and hand back its rows, within a
bound. The client is run with an argument list, its options (address and
credentials) in a 0600 option file inside a 0700 private directory that is
removed after the call, so no secret is ever in an argv or an environment. Its
``--batch`` output (tab-separated, a header line, ``NULL``, backslash escapes)
is parsed strictly: anything that does not parse is an error, never a guess.

The command grammar follows sysown/proxysql 3.0.1: ``LOAD|SAVE <module> ...``
(lib/ProxySQL_Admin.cpp, the ``LOAD_*``/``SAVE_*`` command lists built in
``ProxySQL_Admin::init``), ``CHECKSUM DISK|MEMORY <module>`` and ``PROXYSQL
FLUSH CONFIGDB`` (lib/Admin_Handler.cpp, ``admin_session_handler``).

Connection parameters (``params``) are a dict: ``host`` (an address, or an
absolute unix socket path), ``port``, ``user``, ``password``,
``connect_timeout``, ``query_timeout`` and ``client`` (None: ``mariadb`` or
``mysql`` from PATH). :func:`params_from_db` reads the defaults where ProxySQL
takes them; :func:`resolve` lays the pillar's ``admin`` keys over them.
"""

import hashlib
import logging
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
import urllib.parse

from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "proxysql_ha_admin"

CLIENTS = ("mariadb", "mysql")

# Modules of the admin commands, with their tables in memory/disk (lib/ProxySQL_Admin.cpp,
# ``module_tablenames``), the runtime
# tables ProxySQL exposes for them and a row filter (the variables modules share
# global_variables). CHECKSUM exists for the first four only: Admin_Handler.cpp
# answers ``CHECKSUM DISK|MEMORY`` for MYSQL SERVERS, USERS, QUERY RULES,
# VARIABLES and a few hostgroup tables, and passes any other CHECKSUM on to
# SQLite, which refuses it.
MODULES = {
    "MYSQL USERS": {"tables": ("mysql_users",), "where": None, "checksum": True},
    "MYSQL SERVERS": {
        "tables": ("mysql_servers", "mysql_replication_hostgroups",
                   "mysql_group_replication_hostgroups", "mysql_galera_hostgroups",
                   "mysql_aws_aurora_hostgroups", "mysql_hostgroup_attributes",
                   "mysql_servers_ssl_params"),
        "where": None, "checksum": True,
    },
    "MYSQL QUERY RULES": {
        "tables": ("mysql_query_rules", "mysql_query_rules_fast_routing"),
        "where": None, "checksum": True,
    },
    "MYSQL VARIABLES": {
        "tables": ("global_variables",), "where": "variable_name LIKE 'mysql-%'", "checksum": True,
    },
    "ADMIN VARIABLES": {
        "tables": ("global_variables",), "where": "variable_name LIKE 'admin-%'", "checksum": False,
    },
    "SCHEDULER": {"tables": ("scheduler",), "where": None, "checksum": False},
    "PROXYSQL SERVERS": {"tables": ("proxysql_servers",), "where": None, "checksum": False},
}

_ESCAPES = {"t": "\t", "n": "\n", "\\": "\\", "0": "\0"}
_ERROR_RE = re.compile(r"ERROR (\d+)(?: \(([0-9A-Z]{5})\))?(?: at line \d+)?: (.*)", re.S)
# Client error numbers (include/errmsg.h) and the server's access-denied error.
_UNREACHABLE = {"2002", "2003", "2005", "2006"}
_LOST = {"2013"}
_DENIED = {"1045", "1044", "1698"}


class AdminDenied(CommandExecutionError):
    """The admin interface answered and refused the credentials: ProxySQL is alive there."""


def __virtual__():
    return __virtualname__


# --- defaults: where ProxySQL takes its admin address and credentials ---------------------

# Wildcard hosts of a listener, and the loopback address a local client reaches them at.
WILDCARDS = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "*": "127.0.0.1", "::": "::1"}


def parse_ifaces(value, tcp=False, default=None):
    """
    The address a local client reaches from a ProxySQL ``*_ifaces`` list
    (``admin-mysql_ifaces``, ``mysql-interfaces``): ``;``-separated entries,
    empty ones skipped, as ProxySQL tokenizes them. The first entry (``tcp``:
    the first TCP entry, socket paths skipped) as ``(host, port)``, a wildcard
    host as the loopback address of its family and IPv6 in brackets, or
    ``(socket_path, None)``. An empty list gives ``default`` parsed, or is an
    error. Pure; ValueError naming the value.
    """
    entries = [e.strip() for e in value.split(";") if e.strip()] if isinstance(value, str) else []
    if tcp and entries:
        entries = [e for e in entries if not e.startswith("/")]
        if not entries:
            raise ValueError(f"{value!r} has only unix socket paths, no host:port")
    if not entries:
        if default is None:
            raise ValueError(f"{value!r} is empty")
        entries = [default]
    first = entries[0]
    if first.startswith("/"):
        return first, None
    host, sep, port = first.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{first!r} is not host:port (write an IPv6 host in brackets)")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or "[" in host or "]" in host:
        raise ValueError(f"{first!r} is not host:port or a unix socket path")
    return WILDCARDS.get(host, host), int(port)


def parse_credentials(value):
    """The first ``user:password`` pair of ``admin-admin_credentials`` (``;``-separated)."""
    first = value.split(";")[0] if isinstance(value, str) else ""
    user, sep, password = first.partition(":")
    if not sep or not user:
        raise SaltInvocationError(
            "admin-admin_credentials: first entry is not user:password; "
            "set pillar admin:user and admin:password"
        )
    return user, password


def params_from_db(path):
    """
    The admin address and credentials from the live db's ``global_variables``
    (read only, one short read).
    """
    try:
        conn = sqlite3.connect(f"file:{urllib.parse.quote(str(path))}?mode=ro", uri=True, timeout=2)
        try:
            rows = dict(conn.execute(
                "SELECT variable_name, variable_value FROM global_variables WHERE variable_name "
                "IN ('admin-mysql_ifaces', 'admin-admin_credentials')"
            ).fetchall())
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise CommandExecutionError(
            f"cannot read the admin address and credentials from {path}: {exc}; "
            "set pillar admin:host, port, user and password"
        ) from exc
    try:
        host, port = parse_ifaces(rows.get("admin-mysql_ifaces", "0.0.0.0:6032"))
    except ValueError as exc:
        raise SaltInvocationError(f"admin-mysql_ifaces of {path}: {exc}; set pillar admin:host "
                                  "and admin:port") from exc
    user, password = parse_credentials(rows.get("admin-admin_credentials", "admin:admin"))
    return {"host": host, "port": port, "user": user, "password": password}


def resolve(admin_conf, db_path=None):
    """
    Connection parameters: the pillar's ``admin`` keys where set, the live db's
    values (``db_path``) for the rest. Pure but for that one read.
    """
    params = {"connect_timeout": 3, "query_timeout": 10.0, "client": None, **admin_conf}
    missing = [k for k in ("host", "port", "user", "password") if params.get(k) is None]
    if missing and db_path is not None:
        found = params_from_db(db_path)
        for key in missing:
            params[key] = found[key]
        if params["host"].startswith("/"):
            params["port"] = None
    elif missing:
        raise SaltInvocationError(f"admin client: {', '.join(missing)} not set and no live db given")
    return params


def where(params):
    """The address for messages: ``host:port`` or the socket path."""
    if str(params["host"]).startswith("/"):
        return params["host"]
    return f"{params['host']}:{params['port']}"


# --- the client's argv and option file ------------------------------------------------------

def find_client(client=None):
    """Absolute path of the MySQL client: ``client`` if given, else mariadb or mysql on PATH."""
    if client:
        if os.path.isabs(client) and os.access(client, os.X_OK):
            return client
        raise CommandExecutionError(
            f"admin client {client!r} is not an executable file: install mariadb-client "
            "(Debian) or the mysql/mariadb client package (FreeBSD), or fix pillar admin:client"
        )
    for name in CLIENTS:
        found = shutil.which(name)
        if found:
            return found
    raise CommandExecutionError(
        "no MySQL client (mariadb or mysql) on PATH: install mariadb-client (Debian) or the "
        "mysql/mariadb client package (FreeBSD), or set pillar admin:client"
    )


def _option_value(value):
    """A value for a MySQL option file: double-quoted, with the escapes the client reads."""
    text = str(value)
    if "\0" in text:
        raise SaltInvocationError("admin credentials must not contain a NUL character")
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{text}"'


def option_file_text(params):
    """The ``[client]`` section holding the address and credentials."""
    lines = ["[client]", f"user={_option_value(params['user'])}",
             f"password={_option_value(params['password'])}"]
    if str(params["host"]).startswith("/"):
        lines += [f"socket={_option_value(params['host'])}", "protocol=SOCKET"]
    else:
        lines += [f"host={_option_value(params['host'])}", f"port={int(params['port'])}",
                  "protocol=TCP"]
    return "\n".join(lines) + "\n"


def argv(client, option_file, params):
    """
    The client's argument list: the option file first (the client requires it
    there; ``--defaults-file`` so that no other option file is read), batch
    output with column names. The statements go to its stdin, never into argv,
    where any local user could read them (they may hold passwords).
    """
    return [
        client, f"--defaults-file={option_file}", "--batch", "--column-names",
        "--no-auto-rehash", f"--connect-timeout={int(params['connect_timeout'])}",
    ]


def _write_option_file(params):
    """A 0700 private directory holding a 0600 option file; returns both paths."""
    private = tempfile.mkdtemp(prefix="proxysql-ha-admin-")
    path = os.path.join(private, "client.cnf")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(option_file_text(params))
    return private, path


# --- running a statement ------------------------------------------------------------------

def _run(params, sql):
    """Run ``sql`` with the client within ``query_timeout``; returns its stdout text."""
    if not isinstance(sql, str) or not sql.strip().rstrip(";").strip():
        raise SaltInvocationError(f"admin client: no statement to run (got {sql!r})")
    client = find_client(params.get("client"))
    bound = float(params["query_timeout"])
    private, path = _write_option_file(params)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            argv(client, path, params), input=sql.strip().rstrip(";").encode("utf-8") + b";\n",
            capture_output=True,
            timeout=bound, check=False, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                              "LC_ALL": "C"},
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandExecutionError(
            f"ProxySQL admin at {where(params)}: no answer within {bound:g} s "
            f"(query_timeout); the client was killed"
        ) from exc
    except OSError as exc:
        raise CommandExecutionError(f"cannot run the MySQL client {client}: {exc}") from exc
    finally:
        shutil.rmtree(private, ignore_errors=True)
    log.debug("admin at %s: %.3f s, rc %s", where(params), time.monotonic() - started,
              proc.returncode)
    if proc.returncode != 0:
        stderr = proc.stderr.decode("utf-8", "replace")
        denied = (_error_code(stderr) or (None,))[0] in _DENIED
        raise (AdminDenied if denied else CommandExecutionError)(classify_error(params, stderr))
    try:
        return proc.stdout.decode("utf-8", "strict")
    except UnicodeDecodeError as exc:
        raise CommandExecutionError(
            f"ProxySQL admin at {where(params)}: the client's output is not UTF-8 ({exc})"
        ) from exc


def _error_code(stderr):
    """``(error number, message)`` of the client's ``ERROR ...`` line, or None."""
    match = _ERROR_RE.search(stderr.strip())
    return (match.group(1), match.group(3).strip()) if match else None


def classify_error(params, stderr):
    """A message naming the address and what failed, from the client's stderr."""
    place = f"ProxySQL admin at {where(params)}"
    found = _error_code(stderr)
    if not found:
        return f"{place}: the client failed: {stderr.strip() or 'no message'}"
    code, message = found
    if code in _UNREACHABLE:
        return f"{place} is unreachable (error {code}: {message}); is ProxySQL running there?"
    if code in _LOST:
        return f"{place}: connection lost or timed out (error {code}: {message})"
    if code in _DENIED:
        return (f"{place}: access denied for user {params['user']!r} (error {code}); check "
                "admin-admin_credentials or pillar admin:user/password")
    return f"{place}: statement failed (error {code}: {message})"


def unescape(field):
    """One ``--batch`` field: ``NULL`` is None, ``\\t \\n \\\\ \\0`` are decoded, others refused."""
    if field == "NULL":
        return None
    out, i = [], 0
    while i < len(field):
        char = field[i]
        if char == "\\":
            if i + 1 == len(field):
                raise ValueError("field ends in a lone backslash")
            if field[i + 1] not in _ESCAPES:
                raise ValueError(f"unknown escape \\{field[i + 1]}")
            char = _ESCAPES[field[i + 1]]
            i += 1
        out.append(char)
        i += 1
    return "".join(out)


def parse_batch(text):
    """
    Rows of the client's ``--batch --column-names`` output as a list of dicts.
    Refuses a ragged row, duplicate or empty column names and bad escapes (column
    names are printed unescaped, so a name holding a tab shows as a ragged row).
    A string field holding exactly ``NULL`` reads as None (the client prints both alike).
    """
    if text == "":
        return []
    if not text.endswith("\n"):
        raise ValueError("output does not end with a newline (truncated?)")
    lines = text[:-1].split("\n")
    header = lines[0].split("\t")
    if len(set(header)) != len(header) or "" in header:
        raise ValueError(f"bad header line {lines[0]!r}")
    names = header  # the client prints column names as they are, unescaped
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != len(names):
            raise ValueError(f"line {number} has {len(fields)} fields, the header {len(names)}")
        rows.append(dict(zip(names, (unescape(f) for f in fields))))
    return rows


def query(params, sql):
    """
    Rows (dicts by column name) of ONE statement; [] when it returns none. The
    client prints several results back to back, so give several statements to
    :func:`query_many`, which can tell them apart.
    """
    text = _run(params, sql)
    try:
        return parse_batch(text)
    except ValueError as exc:
        raise CommandExecutionError(
            f"ProxySQL admin at {where(params)}: output of {sql.split()[0]!r} does not parse: {exc}"
        ) from exc


def query_many(params, statements):
    """
    Rows of several statements in one client run: each result is preceded by a
    one-row marker result whose column name holds a random nonce, so results can
    be told apart even when some are empty (the client prints nothing for those).
    """
    nonce = os.urandom(8).hex()
    marker = f"proxysql_ha_section_{nonce}"
    sql = "; ".join(f"SELECT {i} AS {marker}; {stmt}" for i, stmt in enumerate(statements))
    text = _run(params, sql)
    try:
        return split_sections(text, marker, len(statements))
    except ValueError as exc:
        raise CommandExecutionError(
            f"ProxySQL admin at {where(params)}: output of {len(statements)} statements "
            f"does not parse: {exc}"
        ) from exc


def split_sections(text, marker, count):
    """Split ``query_many`` output at its markers and parse each section."""
    if text and not text.endswith("\n"):
        raise ValueError("output does not end with a newline (truncated?)")
    lines = text.split("\n")[:-1] if text else []
    sections, current = [], None
    index = 0
    while index < len(lines):
        if lines[index] == marker:
            if index + 1 >= len(lines) or lines[index + 1] != str(len(sections)):
                raise ValueError(f"marker {len(sections)} missing or out of order")
            sections.append([])
            current = sections[-1]
            index += 2
            continue
        if current is None:
            raise ValueError("output before the first marker")
        current.append(lines[index])
        index += 1
    if len(sections) != count:
        raise ValueError(f"{len(sections)} results for {count} statements")
    return [parse_batch("".join(line + "\n" for line in body)) for body in sections]


def execute(params, sql):
    """Run statements that return no rows (``;``-separated, the client splits them)."""
    text = _run(params, sql)
    if text:
        raise CommandExecutionError(
            f"ProxySQL admin at {where(params)}: {sql.split()[0]!r} returned rows; use query()"
        )


# --- the layer commands --------------------------------------------------------------------

def module_name(module):
    """The canonical module name (``mysql users`` -> ``MYSQL USERS``) or SaltInvocationError."""
    name = " ".join(str(module).upper().replace("_", " ").split())
    if name not in MODULES:
        raise SaltInvocationError(
            f"unknown ProxySQL admin module {module!r}; known: {', '.join(MODULES)}"
        )
    return name


def denied(exc):
    """Whether ``exc`` is the admin interface refusing the credentials (it answered)."""
    return isinstance(exc, AdminDenied)


def ping(params):
    """True when the admin interface answers ``SELECT 1``; raises otherwise."""
    rows = query(params, "SELECT 1")
    if len(rows) != 1 or list(rows[0].values()) != ["1"]:
        raise CommandExecutionError(f"ProxySQL admin at {where(params)}: SELECT 1 gave {rows!r}")
    return True


def _checksum(params, layer, module):
    name = module_name(module)
    if not MODULES[name]["checksum"]:
        raise SaltInvocationError(f"ProxySQL has no CHECKSUM {layer} for {name}; use layer_digests()")
    rows = query(params, f"CHECKSUM {layer} {name}")
    if len(rows) != 1 or set(rows[0]) != {"table", "checksum"}:
        raise CommandExecutionError(
            f"ProxySQL admin at {where(params)}: CHECKSUM {layer} {name} gave {rows!r}"
        )
    return rows[0]["checksum"]


def checksum_disk(params, module):
    """``CHECKSUM DISK <module>``: the checksum string (``0x...``) of the module's disk table."""
    return _checksum(params, "DISK", module)


def checksum_memory(params, module):
    """``CHECKSUM MEMORY <module>``: the checksum string of the module's memory table."""
    return _checksum(params, "MEMORY", module)


def runtime_checksums(params):
    """``runtime_checksums_values`` as ``{name: checksum}`` (e.g. ``mysql_users``)."""
    rows = query(params, "SELECT name, checksum FROM runtime_checksums_values ORDER BY name")
    return {row["name"]: row["checksum"] for row in rows}


def flush_configdb(params):
    """``PROXYSQL FLUSH CONFIGDB``: reopen ``proxysql.db`` (after it was replaced by rename)."""
    execute(params, "PROXYSQL FLUSH CONFIGDB")


def load_from_disk(params, module):
    """``LOAD <module> FROM DISK``: disk -> memory."""
    execute(params, f"LOAD {module_name(module)} FROM DISK")


def load_to_runtime(params, module):
    """``LOAD <module> TO RUNTIME``: memory -> runtime."""
    execute(params, f"LOAD {module_name(module)} TO RUNTIME")


def _layer_sql(layer, table, filt):
    source = {"disk": f"disk.{table}", "memory": f"main.{table}", "runtime": f"runtime_{table}"}
    sql = f"SELECT * FROM {source[layer]}"
    return sql + (f" WHERE {filt}" if filt else "")


def digest_rows(rows):
    """A digest of rows independent of their order (sha256 over the sorted rows' repr)."""
    items = sorted(repr(sorted(row.items())) for row in rows)
    return hashlib.sha256("\n".join(items).encode("utf-8")).hexdigest()


# How runtime shows a table's rows, the one source of these rules for the Python comparison
# (:func:`as_runtime`) and the SQL one (:func:`runtime_diff_sql`). ``rows``: each source row
# gives one row per ``(when, set)`` whose ``when`` it matches, with ``set`` laid over it (none
# given: the row as it is); ``values``: per column, values runtime shows as others.
# mysql_users: active users only, one row per side, frontend=1,backend=0 and backend=1,frontend=0,
# active=1 (lib/ProxySQL_Admin.cpp, save_mysql_users_runtime_to_database); mysql_servers:
# SHUNNED, a state ProxySQL gives an ONLINE server by itself, counts as ONLINE.
RUNTIME_SHAPES = {
    "mysql_users": {"rows": (
        ({"active": "1", "frontend": "1"}, {"active": "1", "backend": "0", "frontend": "1"}),
        ({"active": "1", "backend": "1"}, {"active": "1", "backend": "1", "frontend": "0"}),
    )},
    "mysql_servers": {"values": {"status": {"SHUNNED": "ONLINE"}}},
}
_AS_IS = (({}, {}),)


def as_runtime(table, rows):
    """
    Rows of ``table`` (values as the client prints them) as ProxySQL's runtime
    tables show them (:data:`RUNTIME_SHAPES`), so that memory or disk compares
    with runtime. Pure; idempotent, so runtime rows pass through.
    """
    shape = RUNTIME_SHAPES.get(table, {})
    values = shape.get("values", {})
    out = []
    for row in rows:
        for when, sets in shape.get("rows", _AS_IS):
            if all(row.get(col) == value for col, value in when.items()):
                shown = {**row, **sets}
                for col, mapping in values.items():
                    if col in shown and str(shown[col]).upper() in mapping:
                        shown[col] = mapping[str(shown[col]).upper()]
                out.append(shown)
    return out


def layer_digests(params, modules=None):
    """
    ``{module: {"disk", "memory", "runtime", "disk_runtime", "memory_runtime"}}``:
    digests of each layer's rows of each module, computed the same way for all
    layers so that they compare; ``*_runtime`` are disk's and memory's rows as
    runtime shows them (:func:`as_runtime`), for comparing with ``runtime``.
    (ProxySQL's ``runtime_checksums_values`` cannot be compared with ``CHECKSUM``:
    lib/ProxySQL_Admin.cpp computes them over other queries, e.g. query rules plus
    fast routing.) One client run for all of them.
    """
    plan = []
    for module in modules or MODULES:
        name = module_name(module)
        spec = MODULES[name]
        for layer in ("disk", "memory", "runtime"):
            for table in spec["tables"]:
                plan.append((name, layer, table, _layer_sql(layer, table, spec["where"])))
    results = query_many(params, [sql for *_, sql in plan])
    rows = {}
    for (name, layer, table, _), result in zip(plan, results):
        tagged = [{"~table": table, **r} for r in result]
        lays = rows.setdefault(name, {})
        if layer == "runtime":
            lays.setdefault("runtime", []).extend(as_runtime(table, tagged))
        else:
            lays.setdefault(layer, []).extend(tagged)
            lays.setdefault(f"{layer}_runtime", []).extend(as_runtime(table, tagged))
    return {name: {layer: digest_rows(got) for layer, got in lays.items()}
            for name, lays in rows.items()}


# --- applying and verifying an installed file (a warm standby, a verified restore) --------

# The ``global_settings`` row an install writes into the file (proxysql_ha_sqlite.INSTALL_STAMP,
# where the source that says it is harmless to ProxySQL is cited): a token no other file holds.
INSTALL_STAMP = "proxysql_ha_install"


def installed_facts(path):
    """
    What the verification needs of the file at ``path``, in one read-only
    open: ``{"modules": [...], "tables": {table: {"columns", "keys", "rows"}},
    "stamp": token or None}``, the modules whose tables it all holds and, for
    their tables, the columns, the primary key's columns in key order and the
    row count; and the install's token (:data:`INSTALL_STAMP`), if it has one.
    """
    conn = sqlite3.connect(f"file:{urllib.parse.quote(str(path))}?mode=ro", uri=True, timeout=2)
    try:
        held = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        stamp = conn.execute("SELECT variable_value FROM global_settings WHERE variable_name = ?",
                             (INSTALL_STAMP,)).fetchone() if "global_settings" in held else None
        modules = [name for name, spec in MODULES.items() if set(spec["tables"]) <= held]
        tables = {}
        for table in (t for name in modules for t in MODULES[name]["tables"]):
            info = conn.execute(f"PRAGMA table_info({_ident(table)})").fetchall()
            tables[table] = {
                "columns": [r[1] for r in info],
                "keys": [r[1] for r in sorted(info, key=lambda r: r[5]) if r[5]],
                "rows": conn.execute(f"SELECT COUNT(*) FROM {_ident(table)}").fetchone()[0],
            }
    finally:
        conn.close()
    return {"modules": modules, "tables": tables, "stamp": stamp and stamp[0]}


def file_modules(path):
    """The modules whose tables the file at ``path`` all holds (read-only, with SQLite)."""
    return installed_facts(path)["modules"]


def apply_statements(modules):
    """
    What makes a running ProxySQL take the file just renamed over ``proxysql.db``:
    ``PROXYSQL FLUSH CONFIGDB`` (reopen it), then ``LOAD <module> FROM DISK`` and
    ``LOAD <module> TO RUNTIME`` for each of ``modules``.
    """
    statements = ["PROXYSQL FLUSH CONFIGDB"]
    for module in modules:
        name = module_name(module)
        statements += [f"LOAD {name} FROM DISK", f"LOAD {name} TO RUNTIME"]
    return statements


def _field(value):
    """A SQLite value as the client's ``--batch`` output shows it (text, or None for NULL)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _file_rows(path, modules):
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        out = {}
        for module in modules:
            spec = MODULES[module_name(module)]
            rows = out.setdefault(module_name(module), [])
            for table in spec["tables"]:
                cursor = conn.execute(_layer_sql("memory", table, spec["where"]))
                names = [d[0] for d in cursor.description]
                rows.extend(as_runtime(table, [{"~table": table, **dict(zip(names, map(_field, r)))}
                                               for r in cursor.fetchall()]))
        return out
    finally:
        conn.close()


def installed_and_runtime(params, path, modules):
    """
    ``(installed, runtime)``, each ``{module: digest}``: the rows of ``modules``
    in the file at ``path`` (read with SQLite) and in ProxySQL's runtime (one
    client run), both in runtime's shape (:func:`as_runtime`). A variables
    module is compared on the variables the file holds: ProxySQL keeps its
    defaults for the others (they are not the file's to set). Every row
    crosses the wire: the reference the tests hold :func:`verify_installed`
    (what the module runs) against, not for the failover path.
    """
    installed = _file_rows(path, modules)
    plan = [(name, table, _layer_sql("runtime", table, MODULES[name]["where"]))
            for name in installed for table in MODULES[name]["tables"]]
    results = query_many(params, [sql for *_, sql in plan])
    runtime = {name: [] for name in installed}
    for (name, table, _), result in zip(plan, results):
        runtime[name].extend(as_runtime(table, [{"~table": table, **r} for r in result]))
    for name, rows in runtime.items():
        if name.endswith("VARIABLES"):
            held = {row["variable_name"] for row in installed[name]}
            runtime[name] = [row for row in rows if row.get("variable_name") in held]
    return ({name: digest_rows(rows) for name, rows in installed.items()},
            {name: digest_rows(rows) for name, rows in runtime.items()})


# --- the verification on the admin interface: SQL over disk and runtime, counts back --------

def _ident(name):
    return '"' + str(name).replace('"', '""') + '"'


def _literal(value):
    return "'" + str(value).replace("'", "''") + "'"


def _shown(column, values, alias):
    """``alias.column`` as runtime shows it (``values`` of :data:`RUNTIME_SHAPES`), in SQL."""
    ref = f"{alias}.{_ident(column)}"
    mapping = values.get(column)
    if not mapping:
        return ref
    whens = " ".join(f"WHEN {_literal(k)} THEN {_literal(v)}" for k, v in mapping.items())
    return f"CASE UPPER(CAST({ref} AS TEXT)) {whens} ELSE {ref} END"


def _projections(table, columns, filt):
    """
    :func:`as_runtime` in SQL, one ``(where, {column: expression})`` per
    ``(when, set)`` of :data:`RUNTIME_SHAPES`: the rows of ``disk.<table> AS s``
    that match ``where``, with each column as runtime shows it (matched as text,
    as the client prints the values).
    """
    shape = RUNTIME_SHAPES.get(table, {})
    values = shape.get("values", {})
    out = []
    for when, sets in shape.get("rows", _AS_IS):
        shown = {c: _literal(sets[c]) if c in sets else _shown(c, values, "s") for c in columns}
        conds = ([filt] if filt else []) + [f"CAST(s.{_ident(c)} AS TEXT) = {_literal(v)}"
                                            for c, v in when.items()]
        out.append((" AND ".join(conds) or "1", shown))
    return out


def runtime_diff_sql(facts, source="disk"):
    """
    One SELECT (one row of counts) comparing each table of ``facts["modules"]``
    on disk, in runtime's shape, with its runtime table. Per table ``<i>`` and
    shape ``<j>`` of its rows: ``<i>_<j>_shaped``, the file's rows in that shape,
    and ``<i>_<j>_missing``, those with no identical runtime row (looked up by
    the primary key: runtime tables have the disk tables' DDL); per table:
    ``<i>_runtime``, its runtime rows (a variables module: only the variables
    the file holds, ProxySQL keeps its defaults for the others), and
    ``<i>_disk``, the rows of ``disk``, held against the file's own count. One
    statement, so that ProxySQL refreshes each runtime table it names once
    (lib/ProxySQL_Admin.cpp, ProxySQL_Admin::GenericRefreshStatistics: a query
    naming ``runtime_<t>`` first rebuilds that table from what runs, one naming
    ``global_variables`` the runtime variables). A file with an install token
    (``facts["stamp"]``) adds ``disk_stamp``, that row of ``disk.global_settings``:
    rows can change and their counts stay, the token names one install.
    Returns ``(sql, plan)``, ``plan`` a list of ``(module, table, shapes)`` in
    ``<i>`` order. ``source`` ``main``: memory instead of disk (the names then
    begin ``main_``).
    """
    parts, plan = _runtime_diff_parts(facts, source)
    return "SELECT " + ", ".join(parts), plan


def _runtime_diff_parts(facts, source):
    """The columns of :func:`runtime_diff_sql`, scalar subqueries (SQLite joins at most 64
    tables; a select list has no such bound): ``(columns, plan)``."""
    tag = "" if source == "disk" else f"{source}_"
    plan, parts = [], []
    if source == "disk" and facts.get("stamp") is not None:
        parts.append(f"(SELECT variable_value FROM disk.global_settings WHERE variable_name = "
                     f"{_literal(INSTALL_STAMP)}) AS {_ident('disk_stamp')}")
    for module in facts["modules"]:
        spec = MODULES[module_name(module)]
        for table in spec["tables"]:
            meta = facts["tables"][table]
            values = RUNTIME_SHAPES.get(table, {}).get("values", {})
            keys = meta["keys"] or meta["columns"]
            filt = spec["where"]
            disk, runtime, i = (f"{source}.{_ident(table)}", _ident(f"runtime_{table}"),
                                f"{tag}{len(plan)}")
            projections = _projections(table, meta["columns"], filt)
            for j, (cond, shown) in enumerate(projections):
                same = " AND ".join(
                    f"{'r.' + _ident(c) if c in keys else _shown(c, values, 'r')} IS {shown[c]}"
                    for c in meta["columns"])
                parts += [
                    f"(SELECT COUNT(*) FROM {disk} AS s WHERE {cond}) AS {_ident(f'{i}_{j}_shaped')}",
                    f"(SELECT TOTAL(NOT EXISTS (SELECT 1 FROM {runtime} AS r WHERE {same})) "
                    f"FROM {disk} AS s WHERE {cond}) AS {_ident(f'{i}_{j}_missing')}"]
            held = ""
            if module_name(module).endswith("VARIABLES"):
                held = (f" AND EXISTS (SELECT 1 FROM {disk} AS f WHERE "
                        + " AND ".join(f"f.{_ident(c)} IS r.{_ident(c)}" for c in keys) + ")")
            parts += [f"(SELECT COUNT(*) FROM {runtime} AS r WHERE {filt or '1'}{held}) "
                      f"AS {_ident(f'{i}_runtime')}",
                      f"(SELECT COUNT(*) FROM {disk}) AS {_ident(f'{i}_disk')}"]
            plan.append((module_name(module), table, len(projections)))
    return parts, plan


def runtime_differences(row, plan, facts, source="disk"):
    """
    ``{module: {"missing", "extra", "disk_unlike_file"}}`` from the one row
    :func:`runtime_diff_sql` returned: rows of the file runtime lacks (or holds
    otherwise), runtime rows the file lacks, and the tables whose ``disk`` is
    not the installed file's (ProxySQL did not reopen it, or opens another
    file): their count differs, or, for every table, ``disk`` holds another
    install token than the file, or none. Pure.
    """
    tag = "" if source == "disk" else f"{source}_"
    other_file = source == "disk" and facts.get("stamp") is not None \
        and row["disk_stamp"] != facts["stamp"]
    out = {}
    for n, (module, table, shapes) in enumerate(plan):
        i = f"{tag}{n}"
        count = lambda name: int(float(row[name]))  # noqa: E731  # TOTAL() prints a real
        missing = sum(count(f"{i}_{j}_missing") for j in range(shapes))
        shaped = sum(count(f"{i}_{j}_shaped") for j in range(shapes))
        found = out.setdefault(module, {"missing": 0, "extra": 0, "disk_unlike_file": []})
        found["missing"] += missing
        found["extra"] += max(0, count(f"{i}_runtime") - (shaped - missing))
        recounted = count(f"{i}_disk") != facts["tables"][table]["rows"]
        if source == "disk" and (other_file or recounted):
            found["disk_unlike_file"].append(table)
    return out


def check_layers(params, db_path, statement=None):
    """The layer check (:func:`layer_statement`) of the live db at ``db_path`` (its tables
    read once, read-only); a db that cannot be read is a CommandExecutionError naming it.
    ``statement``: the :func:`layer_statement` of that db made earlier (a caller that
    knows the file has not changed since keeps it: building it reads the whole schema)."""
    return check_layers_loaded(params, db_path, statement)[0]


def check_layers_loaded(params, db_path, statement=None):
    """:func:`check_layers` and, from the same statement, which loads runtime has had:
    ``(flags, loads)``, ``loads`` the ``name=version`` list of ``runtime_checksums_values``
    (ProxySQL adds one to a module's version at every ``LOAD ... TO RUNTIME``:
    lib/ProxySQL_Admin.cpp, the load_*_to_runtime functions), None where it is empty."""
    sql, read = statement or layer_statement_of(db_path)
    return _counted(params, sql, lambda row: (read(row), row.get(RUNTIME_LOADS)),
                    "the layer check")


def layer_statement_of(db_path):
    """:func:`layer_statement` of the live db at ``db_path``; CommandExecutionError when it
    cannot be read."""
    try:
        facts = installed_facts(db_path)
    except (OSError, sqlite3.Error) as exc:
        raise CommandExecutionError(f"cannot read the tables of {db_path}: {exc}") from exc
    return layer_statement(facts)


RUNTIME_LOADS = "runtime_loads"  # the layer statement's column of runtime_checksums_values versions


def layer_statement(facts):
    """
    The layer check's one SELECT and the reader of its row, ``(sql, read)``: what
    differs between ProxySQL's three layers, per module of ``facts``
    (:func:`installed_facts` of the live db: its tables' columns and keys),
    ``read(row)`` giving ``{module: {"runtime_unlike_disk", "memory_unlike_disk",
    "memory_unlike_runtime"}}``, each True or False. Computed as SQL on the
    admin interface, where ``main``, ``disk`` and the runtime tables sit side
    by side; only counts come back (one statement, one client run: the runtime
    tables are rebuilt once), so its cost does not grow with what it sends.
    Memory and disk are compared as they are (same DDL, ``EXCEPT`` both ways),
    either with runtime in runtime's shape (:func:`runtime_diff_sql`). Pure:
    the same ``facts`` give the same statement.
    """
    disk_parts, plan = _runtime_diff_parts(facts, "disk")
    main_parts, _ = _runtime_diff_parts(facts, "main")
    pairs = []
    for n, (module, table, _) in enumerate(plan):
        filt = MODULES[module]["where"]
        where_ = f" WHERE {filt}" if filt else ""
        for name, left, right in ((f"md_{n}", "main", "disk"), (f"dm_{n}", "disk", "main")):
            pairs.append(f"(SELECT COUNT(*) FROM (SELECT * FROM {left}.{_ident(table)}{where_} "
                         f"EXCEPT SELECT * FROM {right}.{_ident(table)}{where_})) AS {_ident(name)}")
    def read(row):
        on_disk = runtime_differences(row, plan, facts)
        in_memory = runtime_differences(row, plan, facts, "main")
        out = {module: {"runtime_unlike_disk": bool(on_disk[module]["missing"]
                                                    or on_disk[module]["extra"]),
                        "memory_unlike_disk": False,
                        "memory_unlike_runtime": bool(in_memory[module]["missing"]
                                                      or in_memory[module]["extra"])}
               for module in on_disk}
        for n, (module, _, _) in enumerate(plan):
            out[module]["memory_unlike_disk"] |= int(row[f"md_{n}"]) + int(row[f"dm_{n}"]) > 0
        return out

    loads = (f"(SELECT group_concat(name || '=' || version, ',') FROM (SELECT name, version "
             f"FROM runtime_checksums_values ORDER BY name)) AS {_ident(RUNTIME_LOADS)}")
    return "SELECT " + ", ".join(disk_parts + main_parts + pairs + [loads]), read


def _counted(params, sql, read, what):
    """``read(row)`` of the one row of counts ``sql`` returns; anything else, or counts that
    do not parse, is a CommandExecutionError naming ``what`` and the address."""
    rows = query(params, sql)
    if len(rows) != 1:
        raise CommandExecutionError(
            f"ProxySQL admin at {where(params)}: {what} gave {len(rows)} rows, not 1")
    try:
        return read(rows[0])
    except (KeyError, TypeError, ValueError) as exc:
        raise CommandExecutionError(
            f"ProxySQL admin at {where(params)}: {what}'s counts do not parse: {exc}"
        ) from exc


def verify_installed(params, facts):
    """
    Whether ProxySQL runs the installed file described by ``facts``
    (:func:`installed_facts`): the comparison runs as SQL on the admin
    interface, where disk and runtime sit side by side, and only counts come
    back (:func:`runtime_diff_sql`, one client run). Returns
    :func:`runtime_differences`.
    """
    sql, plan = runtime_diff_sql(facts)
    return _counted(params, sql, lambda row: runtime_differences(row, plan, facts),
                    "the verification")
