"""An admin-interface stand-in for tests, the lab and the demo: the MySQL protocol over SQLite.

It is a stand-in, not the real service. It imitates the admin interface of ProxySQL 3.0.1
(sysown/proxysql) closely enough for the admin client (``_utils/proxysql_ha_admin.py``) to be
tested against a real ``mariadb`` client: the protocol and authentication come from the
``mysql-mimic`` package, the storage from SQLite arranged as ProxySQL arranges it
(lib/ProxySQL_Admin.cpp, ``ProxySQL_Admin::init``): ``main`` is an in-memory database created
from the schema file's tables, ``proxysql.db`` is attached as ``disk``, and the runtime layer is
kept in ``runtime_<table>`` tables of ``main`` (ProxySQL keeps runtime inside its modules and
shows it as those tables). Each command below cites the ProxySQL function it follows.

Embedding: ``AdminServer(db_path, schema_path, host, port).start()`` serves from a thread of
its own; ``stop()`` ends it. On its own: ``python -m standin.proxysql_admin --db PATH
--schema PATH --port N`` (``--traffic-port N`` also accepts connections there, as the traffic
port of a serving node does).
"""

import argparse
import asyncio
import hashlib
import logging
import re
import signal
import sqlite3
import threading
import time

from mysql_mimic import MysqlServer
from mysql_mimic.auth import IdentityProvider, NativePasswordAuthPlugin, User
from mysql_mimic.errors import ErrorCode, MysqlError
from mysql_mimic.session import BaseSession
from mysql_mimic.variables import GlobalVariables, SessionVariables

from standin.proxysql_db import read_schema, table_name

log = logging.getLogger(__name__)

# Module name -> its tables and the row filter, as lib/ProxySQL_Admin.cpp's
# ``module_tablenames`` and ``flush_{mysql,admin}_variables__from_memory_to_disk`` have them.
MODULES = {
    "MYSQL USERS": (("mysql_users",), None),
    "MYSQL SERVERS": (("mysql_servers", "mysql_replication_hostgroups",
                       "mysql_group_replication_hostgroups", "mysql_galera_hostgroups",
                       "mysql_aws_aurora_hostgroups", "mysql_hostgroup_attributes",
                       "mysql_servers_ssl_params"), None),
    "MYSQL QUERY RULES": (("mysql_query_rules", "mysql_query_rules_fast_routing"), None),
    "MYSQL VARIABLES": (("global_variables",), "variable_name LIKE 'mysql-%'"),
    "ADMIN VARIABLES": (("global_variables",), "variable_name LIKE 'admin-%'"),
    "SCHEDULER": (("scheduler",), None),
    "PROXYSQL SERVERS": (("proxysql_servers",), None),
}
# runtime_checksums_values names (ProxySQL_Admin::dump_checksums_values_table).
CHECKSUM_NAMES = {
    "ADMIN VARIABLES": "admin_variables", "MYSQL QUERY RULES": "mysql_query_rules",
    "MYSQL SERVERS": "mysql_servers", "MYSQL USERS": "mysql_users",
    "MYSQL VARIABLES": "mysql_variables", "PROXYSQL SERVERS": "proxysql_servers",
}
# CHECKSUM DISK|MEMORY <module>: the query per module (lib/Admin_Handler.cpp,
# admin_session_handler, the ``CHECKSUM `` branch); DISK exists for fewer modules than MEMORY.
CHECKSUM_QUERIES = {
    "MYSQL SERVERS": "SELECT * FROM {db}.mysql_servers ORDER BY hostgroup_id, hostname, port",
    "MYSQL USERS": "SELECT * FROM {db}.mysql_users ORDER BY username",
    "MYSQL QUERY RULES": "SELECT * FROM {db}.mysql_query_rules ORDER BY rule_id",
    "MYSQL VARIABLES": "SELECT * FROM {db}.global_variables WHERE variable_name LIKE 'mysql-%' "
                       "ORDER BY variable_name",
    "MYSQL REPLICATION HOSTGROUPS": "SELECT * FROM {db}.mysql_replication_hostgroups "
                                    "ORDER BY writer_hostgroup",
}
CHECKSUM_DISK = set(CHECKSUM_QUERIES)
# include/ProxySQL_Admin_Tables_Definitions.h, ADMIN_SQLITE_RUNTIME_CHECKSUMS_VALUES.
RUNTIME_CHECKSUMS_DDL = ("CREATE TABLE runtime_checksums_values (name VARCHAR NOT NULL , version INT "
                         "NOT NULL , epoch INT NOT NULL , checksum VARCHAR NOT NULL , PRIMARY KEY (name))")

_MOD = "(" + "|".join(MODULES) + ")"
_COMMANDS = [
    # lib/ProxySQL_Admin.cpp, generate_load_save_disk_commands and the LOAD_*/SAVE_* lists.
    (re.compile(rf"LOAD {_MOD} (?:TO MEMORY|TO MEM|FROM DISK)", re.I), "load_from_disk"),
    (re.compile(rf"SAVE {_MOD} (?:FROM MEMORY|FROM MEM|TO DISK)", re.I), "save_to_disk"),
    (re.compile(rf"LOAD {_MOD} (?:FROM MEMORY|FROM MEM|TO RUNTIME|TO RUN)", re.I), "load_to_runtime"),
    (re.compile(rf"SAVE {_MOD} (?:TO MEMORY|TO MEM|FROM RUNTIME|FROM RUN)", re.I), "save_from_runtime"),
]
_CHECKSUM_RE = re.compile(r"CHECKSUM (?:(DISK|MEMORY|MEM) )?(.+)", re.I)


def checksum(rows):
    """
    The checksum string of a result, in ProxySQL's format (lib/sqlite3db.cpp,
    ``SQLite3_result::checksum``): a 64-bit hash fed every field's bytes in row order
    (NULL as empty), printed ``0x%X%X`` of its two 32-bit halves; ``0x00`` for no rows.
    Stand-in difference: ProxySQL's hash is SpookyHash (seeds 19, 3); this one is
    BLAKE2b-64 over the same bytes, so the values differ and only compare with each other.
    """
    if not rows:
        return "0x00"
    digest = hashlib.blake2b(digest_size=8)
    for row in rows:
        for field in row:
            if field is not None:
                digest.update(field if isinstance(field, bytes) else str(field).encode("utf-8"))
    value = int.from_bytes(digest.digest(), "little")
    return f"0x{value & 0xFFFFFFFF:X}{value >> 32:X}"


class AdminStore:
    """The three layers in one SQLite connection, serialised by a lock (ProxySQL's wrlock)."""

    def __init__(self, db_path, schema_path):
        self.db_path = str(db_path)
        self.lock = threading.Lock()
        self.errors = []
        self.unsummed = set()  # modules whose runtime checksum is yet to be computed
        self.conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self.statements = read_schema(schema_path)
        self.tables = [table_name(s) for s in self.statements]
        for statement in self.statements:
            self.conn.execute(statement)
        for statement, table in zip(self.statements, self.tables):
            # Each runtime_<t> has <t>'s DDL, its primary key included (lib/ProxySQL_Admin.cpp,
            # e.g. ADMIN_SQLITE_RUNTIME_MYSQL_USERS beside ADMIN_SQLITE_TABLE_MYSQL_USERS).
            self.conn.execute(statement.replace(f"CREATE TABLE {table} ",
                                                f"CREATE TABLE runtime_{table} ", 1))
        self.conn.execute(RUNTIME_CHECKSUMS_DDL)
        self._attach()
        # At start ProxySQL loads every module from disk to memory and on to runtime
        # (ProxySQL_Admin::init, then the load_*_to_runtime calls in src/main.cpp).
        for module in MODULES:
            if self._has(module):
                self.load_from_disk(module)
                self.load_to_runtime(module)

    def _has(self, module):
        return all(t in self.tables for t in MODULES[module][0])

    def _tables(self, module):
        if not self._has(module):
            raise MysqlError(f"no such table: {MODULES[module][0][0]}")
        return MODULES[module]

    def _attach(self):
        # ProxySQL_Admin::__attach_db: ATTACH DATABASE '<configdb url>' AS disk.
        self.conn.execute("ATTACH DATABASE ? AS disk", (self.db_path,))
        self.conn.execute("PRAGMA disk.synchronous=0")

    def _execute(self, sql):
        """
        SQLite3DB::execute (lib/sqlite3db.cpp): a failed statement is logged
        (``SQLITE error: <message> --- <statement>``) and otherwise ignored; the
        admin commands built on it answer OK all the same. ``self.errors`` is that log.
        """
        try:
            self.conn.execute(sql)
        except sqlite3.Error as exc:
            self.errors.append(f"SQLITE error: {exc} ({exc.sqlite_errorname}) --- {sql}")
            log.error("%s", self.errors[-1])

    def _copy(self, module, src, dst, delete=True, execute=None):
        execute = execute or self._execute
        tables, where = self._tables(module)
        filt = f" WHERE {where}" if where else ""
        for table in tables:
            if delete:
                execute(f"DELETE FROM {dst(table)}{filt}")
            execute(f"INSERT OR REPLACE INTO {dst(table)} SELECT * FROM {src(table)}{filt}")

    def flush_configdb(self):
        """ProxySQL_Admin::flush_configdb: DETACH disk, reopen proxysql.db, ATTACH it again."""
        self.conn.execute("DETACH DATABASE disk")
        self._attach()

    def save_to_disk(self, module):
        """
        flush_mysql_users__from_memory_to_disk / flush_GENERIC__from_to("memory_to_disk"):
        per table DELETE FROM disk.T, then INSERT INTO disk.T SELECT * FROM main.T, each
        statement committed on its own (autocommit). The variables modules only INSERT OR
        REPLACE (flush_{mysql,admin}_variables__from_memory_to_disk). A statement that fails
        (e.g. SQLITE_READONLY_DBMOVED once the file was renamed over) is only logged, and
        the client still gets OK (Admin_Handler.cpp sends OK after the flush whatever it did).
        """
        variables = module.endswith("VARIABLES")
        self._copy(module, lambda t: f"main.{t}", lambda t: f"disk.{t}", delete=not variables)

    def load_from_disk(self, module):
        """flush_mysql_users__from_disk_to_memory / flush_GENERIC__from_to("disk_to_memory")."""
        variables = module.endswith("VARIABLES")
        self._copy(module, lambda t: f"disk.{t}", lambda t: f"main.{t}", delete=not variables)

    def load_to_runtime(self, module):
        """
        The load_*_to_runtime functions: runtime takes memory's rows, and the module's
        entry in runtime_checksums_values gets a new checksum, version + 1 and epoch
        (ProxySQL_Admin::init_users / load_mysql_query_rules_to_runtime and the rest).
        """
        self.conn.execute("BEGIN")
        try:
            if module == "MYSQL USERS":
                self._users_to_runtime()
            else:
                self._copy(module, lambda t: f"main.{t}", lambda t: f"runtime_{t}",
                           execute=self.conn.execute)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self._stamp(module)

    def save_from_runtime(self, module):
        """The save_*_runtime_to_database(false) functions: memory takes runtime's rows."""
        if module == "MYSQL USERS":
            # save_mysql_users_runtime_to_database(false): every user inactive, then REPLACE
            # the runtime rows (one per frontend, one per backend) into main.
            self._execute("UPDATE mysql_users SET active=0")
            columns = ", ".join(self._user_columns())
            self._execute(f"REPLACE INTO main.mysql_users ({columns}) "
                          f"SELECT {columns} FROM runtime_mysql_users")
            return
        self._copy(module, lambda t: f"runtime_{t}", lambda t: f"main.{t}")

    def _user_columns(self):
        """The columns this version's mysql_users has (2.0.x has no ``attributes``)."""
        return [row[1] for row in self.conn.execute("PRAGMA main.table_info(mysql_users)")]

    def _users_to_runtime(self):
        """
        Runtime users live in MySQL_Authentication, one entry per active user and side
        (frontend, backend); save_mysql_users_runtime_to_database(true) shows them as one
        row each, active=1, with frontend=1,backend=0 or backend=1,frontend=0. The stand-in
        keeps them in that shape (it does not hash passwords as admin-hash_passwords would).
        """
        self.conn.execute("DELETE FROM runtime_mysql_users")
        columns = self._user_columns()
        for side, backend, frontend in (("frontend", 0, 1), ("backend", 1, 0)):
            shown = {"active": "1", "backend": str(backend), "frontend": str(frontend)}
            self.conn.execute(
                f"INSERT INTO runtime_mysql_users ({', '.join(columns)}) SELECT "
                + ", ".join(shown.get(c, c) for c in columns)
                + f" FROM main.mysql_users WHERE active = 1 AND {side} = 1"
            )

    def _stamp(self, module):
        """The module's entry: version + 1 and epoch now; its checksum when next read."""
        name = CHECKSUM_NAMES.get(module)
        if name is None:
            return
        old = self.conn.execute("SELECT version FROM runtime_checksums_values WHERE name = ?",
                                (name,)).fetchone()
        self.conn.execute("REPLACE INTO runtime_checksums_values VALUES (?, ?, ?, '')",
                          (name, (old[0] if old else 0) + 1, int(time.time())))
        self.unsummed.add(module)

    def _sum_runtime(self):
        """
        The checksums of the modules loaded to runtime since the last read, put in
        runtime_checksums_values before a query that names it reads it (ProxySQL computes
        them at the load; it refreshes the table from them when a query names it:
        lib/ProxySQL_Admin.cpp, GenericRefreshStatistics, dump_checksums_values_table).
        Runtime changes only at a load, so the values are those of the load's runtime.
        """
        for module in sorted(self.unsummed):
            tables, where = MODULES[module]
            rows = []
            for table in tables:
                rows += self._row_bytes(f"SELECT * FROM runtime_{table}"
                                        + (f" WHERE {where}" if where else ""))
            self.conn.execute("UPDATE runtime_checksums_values SET checksum = ? WHERE name = ?",
                              (checksum(rows), CHECKSUM_NAMES[module]))
        self.unsummed.clear()

    def checksum(self, layer, module):
        """CHECKSUM DISK|MEMORY <module>: one row, columns ``table`` and ``checksum``."""
        module = " ".join(module.upper().split())
        if module not in CHECKSUM_QUERIES or (layer == "disk" and module not in CHECKSUM_DISK):
            # Admin_Handler.cpp passes an unknown CHECKSUM on to SQLite, which refuses it.
            raise MysqlError('near "CHECKSUM": syntax error')
        sql = CHECKSUM_QUERIES[module].format(db="disk" if layer == "disk" else "main")
        return [(module, checksum(self._row_bytes(sql)))], ["table", "checksum"]

    def _row_bytes(self, sql):
        """
        The rows of ``sql`` as :func:`checksum` takes them, each as one field: its fields'
        bytes as text in a row, NULL as none, joined by SQLite (``hex``), which is faster than
        a field at a time in Python and gives numbers as ProxySQL reads them
        (sqlite3_column_text).
        """
        names = [d[0] for d in self.conn.execute(f"SELECT * FROM ({sql}) LIMIT 0").description]
        joined = " || ".join(f'hex("{n}")' for n in names) or "''"
        return [(bytes.fromhex(r[0]),) for r in self.conn.execute(f"SELECT {joined} FROM ({sql})")]

    def credentials(self):
        """admin-admin_credentials of the runtime admin variables: {user: password}."""
        row = self.conn.execute(
            "SELECT variable_value FROM runtime_global_variables "
            "WHERE variable_name = 'admin-admin_credentials'"
        ).fetchone()
        pairs = (p.partition(":") for p in (row[0] if row else "admin:admin").split(";"))
        return {user: password for user, _, password in pairs if user}

    def run(self, sql):
        """One statement as the admin session handler sees it; rows and names, or None."""
        # Commands are matched on the query with its whitespace folded (query_no_space in
        # admin_session_handler); anything else runs as sent.
        sql = sql.strip().rstrip(";").strip()
        with self.lock:
            try:
                return self._dispatch(" ".join(sql.split()), sql)
            except sqlite3.Error as exc:
                raise MysqlError(str(exc)) from exc

    def _dispatch(self, text, sql):
        if text.upper() == "PROXYSQL FLUSH CONFIGDB":
            self.flush_configdb()
            return None
        for regex, verb in _COMMANDS:
            match = regex.fullmatch(text)
            if match:
                getattr(self, verb)(match.group(1).upper())
                return None
        match = _CHECKSUM_RE.fullmatch(text)
        if match:
            layer = "disk" if (match.group(1) or "").upper() == "DISK" else "memory"
            return self.checksum(layer, match.group(2))
        if text.lower() == "select @@version_comment limit 1":
            # The client's greeting in interactive mode (Admin_Handler.cpp answers it too).
            return [("(ProxySQL Admin stand-in)",)], ["@@version_comment"]
        # Anything else runs on the admin database as it is (admin_session_handler, __run_query).
        if "runtime_checksums_values" in sql:
            self._sum_runtime()
        cursor = self.conn.execute(sql)
        if cursor.description is None:
            return None
        return cursor.fetchall(), [d[0] for d in cursor.description]

    def close(self):
        self.conn.close()


class _Identity(IdentityProvider):
    """mysql_native_password with the store's admin credentials."""

    def __init__(self, store):
        self.store = store

    def get_plugins(self):
        return [NativePasswordAuthPlugin()]

    async def get_user(self, username):
        with self.store.lock:
            password = self.store.credentials().get(username)
        if password is None:
            return None
        return User(name=username, auth_string=NativePasswordAuthPlugin.create_auth_string(password),
                    auth_plugin=NativePasswordAuthPlugin.name)


class _Session(BaseSession):
    def __init__(self, store):
        self.store = store
        self.variables = SessionVariables(GlobalVariables())
        self.username = None
        self.database = None

    async def handle_query(self, sql, attrs):
        return self.store.run(sql)

    async def init(self, connection):
        pass

    async def close(self):
        pass

    async def reset(self):
        pass

    async def use(self, database):
        if database not in ("main", "disk"):
            raise MysqlError(f"Unknown database '{database}'", ErrorCode.BAD_DB_ERROR)
        self.database = database


class AdminServer:
    """The admin interface on ``host:port`` (and optionally a traffic port), in its own thread."""

    def __init__(self, db_path, schema_path, host="127.0.0.1", port=6032, traffic_port=None):
        self.store = AdminStore(db_path, schema_path)
        self.host, self.port, self.traffic_port = host, port, traffic_port
        self._loop = None
        self._thread = None
        self._ready = threading.Event()
        self._error = None
        self._stop = None

    def start(self, timeout=10.0):
        """Start serving; returns once the ports listen (or raises what stopped them)."""
        self._thread = threading.Thread(target=self._serve, name="admin-standin", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"admin stand-in did not listen on {self.host}:{self.port} in {timeout} s")
        if self._error:
            raise self._error
        return self

    def _serve(self):
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as exc:  # pylint: disable=broad-except
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _main(self):
        self._stop = asyncio.Event()
        server = MysqlServer(session_factory=lambda: _Session(self.store),
                             identity_provider=_Identity(self.store))
        await server.start_server(host=self.host, port=self.port)
        traffic = None
        if self.traffic_port is not None:
            traffic = await asyncio.start_server(_accept_only, self.host, self.traffic_port)
        self._ready.set()
        await self._stop.wait()
        server.close()
        if traffic:
            traffic.close()
        await server.wait_closed()

    def stop(self, timeout=10.0):
        """Stop serving and close the databases (bounded by ``timeout``)."""
        if self._thread is not None and self._thread.is_alive() and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout)
        self.store.close()


async def _accept_only(reader, writer):
    writer.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description="Admin-interface stand-in (tests only)")
    parser.add_argument("--db", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--traffic-port", type=int)
    args = parser.parse_args(argv)
    server = AdminServer(args.db, args.schema, args.host, args.port, args.traffic_port).start()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    print(f"listening {args.host}:{args.port}", flush=True)
    done.wait()
    server.stop()


if __name__ == "__main__":
    main()
