"""Build, change and read ProxySQL configuration databases (``proxysql.db``) for tests and the lab.

The table DDL comes from the shared schema files (``<shared>/proxysql/schema-<version>.sql``),
whose ``CREATE TABLE`` lines are ProxySQL's built-in strings: executed unchanged, they leave
``sqlite_master.sql`` byte-identical to what ProxySQL compares against at start-up.

Standard library only, and no pytest: ``proxysql_standin.py`` imports it too.
"""

import hashlib
import json
import random
import sqlite3
import uuid as uuidlib
from pathlib import Path

# Every shared schema file, oldest first (see <shared>/proxysql/SCHEMAS.md).
SCHEMA_VERSIONS = ("2.0.18", "2.4.8", "2.5.5", "2.6.6", "2.7.2", "3.0.1")

# A few of the global variables a real installation carries.
GLOBAL_VARIABLES = (
    ("admin-admin_credentials", "admin:admin"),
    ("admin-mysql_ifaces", "0.0.0.0:6032"),
    ("admin-cluster_check_interval_ms", "1000"),
    ("mysql-threads", "4"),
    ("mysql-interfaces", "0.0.0.0:6033"),
    ("mysql-monitor_username", "monitor"),
    ("mysql-monitor_password", "monitor"),
    ("mysql-server_version", "8.0.36"),
)

# Patterns of the kind operators route on; the rule id keeps each rule distinct.
RULE_DIGESTS = (
    "^SELECT .* FOR UPDATE",
    "^SELECT .* FROM orders_{}",
    "^UPDATE customers_{} SET",
    "^SELECT COUNT\\(\\*\\) FROM items_{}",
)


def parse_schema(text):
    """Return the ``CREATE TABLE`` statements of a schema file's text, without the trailing ``;``."""
    return [
        line.rstrip().removesuffix(";") for line in text.splitlines() if line.startswith("CREATE TABLE")
    ]


def read_schema(path):
    """Return the ``CREATE TABLE`` statements of the schema file at ``path``."""
    return parse_schema(Path(path).read_text(encoding="utf-8"))


def schema_path(shared_dir, version):
    """Path of the shared schema file for ProxySQL ``version`` (one of ``SCHEMA_VERSIONS``)."""
    if version not in SCHEMA_VERSIONS:
        raise ValueError(f"unknown ProxySQL schema version {version!r}; known: {', '.join(SCHEMA_VERSIONS)}")
    return Path(shared_dir) / "proxysql" / f"schema-{version}.sql"


def load_schema(shared_dir, version):
    """Return ProxySQL ``version``'s ``CREATE TABLE`` statements from the shared directory."""
    return read_schema(schema_path(shared_dir, version))


def table_name(statement):
    """Name of the table a ``CREATE TABLE name (...)`` statement creates."""
    return statement.split(None, 3)[2]


def connect(path):
    """Open ``path`` the way ProxySQL does: default rollback journal (no WAL), ``synchronous=0``.

    Transactions are explicit (autocommit mode); busy waits last up to 30 s, as ProxySQL
    itself keeps retrying a locked database.
    """
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("PRAGMA synchronous=0")
    return conn


def mysql_native_hash(password):
    """MySQL ``mysql_native_password`` hash: ``*`` and 40 upper-case hex digits."""
    return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()


def server_rows(servers, hostgroups):
    """``mysql_servers`` rows ``(hostgroup_id, hostname, port)``: ``db1.example.test``, ... over the hostgroups."""
    return [(i % hostgroups, f"db{i + 1}.example.test", 3306) for i in range(servers)]


def replication_rows(hostgroups):
    """``mysql_replication_hostgroups`` rows pairing writer hostgroup 0 with reader 1, 2 with 3, ..."""
    return [(w, w + 1, "read_only", f"cluster {w // 2 + 1}") for w in range(0, hostgroups - 1, 2)]


def user_rows(users, hostgroups, rng):
    """``mysql_users`` rows ``(username, password, default_hostgroup)`` with mysql_native hashes."""
    return [
        (f"app{i:06d}", mysql_native_hash(f"secret-{rng.random()}"), rng.randrange(hostgroups))
        for i in range(users)
    ]


def rule_rows(rules, hostgroups):
    """``mysql_query_rules`` rows ``(rule_id, active, match_digest, destination_hostgroup, apply)``."""
    return [
        (i + 1, 1, RULE_DIGESTS[i % len(RULE_DIGESTS)].format(i), i % hostgroups, 1) for i in range(rules)
    ]


def proxysql_server_rows():
    """The two ``proxysql_servers`` rows of an HA pair."""
    return [
        ("proxysql1.example.test", 6032, 0, "node a"),
        ("proxysql2.example.test", 6032, 0, "node b"),
    ]


def build_db(path, statements, *, users=3, rules=2, servers=2, hostgroups=2, uuid=None, seed=0):
    """Create a ProxySQL configuration database at ``path`` and return its ``global_settings`` uuid.

    All tables of ``statements`` are created; ``mysql_servers``, ``mysql_replication_hostgroups``,
    ``mysql_users``, ``mysql_query_rules``, ``global_variables``, ``global_settings`` and
    ``proxysql_servers`` get rows (``scheduler`` and the rest stay empty), all in one transaction;
    a table the version does not have (2.0.18's missing ``global_settings``) is skipped.
    ``seed`` makes passwords and default hostgroups reproducible. ``path`` must not exist yet.
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} already exists; build_db only creates new databases")
    uuid = uuid or str(uuidlib.uuid4())
    rng = random.Random(seed)
    conn = connect(path)
    try:
        conn.execute("BEGIN")
        create_tables(conn, statements)
        inserts = (
            ("mysql_servers", ("hostgroup_id", "hostname", "port"), server_rows(servers, hostgroups)),
            (
                "mysql_replication_hostgroups",
                ("writer_hostgroup", "reader_hostgroup", "check_type", "comment"),
                replication_rows(hostgroups),
            ),
            ("mysql_users", ("username", "password", "default_hostgroup"), user_rows(users, hostgroups, rng)),
            (
                "mysql_query_rules",
                ("rule_id", "active", "match_digest", "destination_hostgroup", "apply"),
                rule_rows(rules, hostgroups),
            ),
            ("global_variables", ("variable_name", "variable_value"), GLOBAL_VARIABLES),
            ("global_settings", ("variable_name", "variable_value"), [("uuid", uuid)]),
            ("proxysql_servers", ("hostname", "port", "weight", "comment"), proxysql_server_rows()),
        )
        present = {table_name(s) for s in statements}
        for table, columns, rows in inserts:
            if table not in present:
                continue  # e.g. 2.0.18 has no global_settings
            conn.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({_marks(len(columns))})", rows
            )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return uuid


def create_tables(conn, statements):
    """Execute each ``CREATE TABLE`` statement unchanged."""
    for statement in statements:
        conn.execute(statement)


UPGRADES_FILE = "upgrades.json"

# Where ProxySQL's copy (lib/ProxySQL_Admin_Disk_Upgrade.cpp, tag 3.0.1) is not "the common
# columns by name", keyed by the renamed table: old columns it copies into a new name, old
# columns it leaves out, and the table it (wrongly) copies from.
COPY_RENAMES = {"restapi_routes_v2015": {"interval_ms": "timeout_ms"}}  # disk_upgrade_rest_api_routes()
COPY_LEAVES_OUT = {  # disk_upgrade_mysql_query_rules(): the column lists of its INSERT ... SELECT
    "mysql_query_rules_v140b": ("next_query_flagIN",),
    "mysql_query_rules_v141": ("next_query_flagIN", "OK_msg"),
    "mysql_query_rules_v200e": ("cache_timeout",),
}
COPY_FROM = {"mysql_query_rules_v40a": "mysql_query_rules_v140a"}  # its V1_4_0a bug: that table is gone


def upgrades_path(schema_file):
    """``upgrades.json`` beside a shared ``schema-<version>.sql`` file."""
    return Path(schema_file).with_name(UPGRADES_FILE)


def load_upgrades(path):
    """The ``tables`` mapping of an ``upgrades.json`` file: ``{table: [{"ddl", "renamed_to", "note"}, ...]}``."""
    return json.loads(Path(path).read_text(encoding="utf-8"))["tables"]


def _columns(conn, table):
    """Column names of ``table`` in order."""
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def copy_statement(conn, table, renamed):
    """ProxySQL's ``INSERT INTO table(...) SELECT ... FROM renamed`` for one migration.

    upgrades.json gives each old layout and its ``renamed_to`` but not the copy statement, so
    the column list is derived: every column of the new ``table`` that the old one also has, by
    name, in the new table's order. ProxySQL writes each list by hand; where that list differs
    from "common by name" the difference is written above (``COPY_RENAMES``, ``COPY_LEAVES_OUT``,
    ``COPY_FROM``). Still different: ProxySQL's copies that transform a value (the
    ``COALESCE(comment,'')`` of ``mysql_replication_hostgroups_v122``) copy it unchanged here, so a
    NULL there fails the copy, and a ``SELECT *`` whose widths differ, which fails in ProxySQL,
    succeeds here.
    """
    renames = COPY_RENAMES.get(renamed, {})
    left_out = COPY_LEAVES_OUT.get(renamed, ())
    old = [c for c in _columns(conn, renamed) if c not in left_out]
    pairs = [(renames.get(c, c), c) for c in old]
    new = set(_columns(conn, table))
    pairs = [(target, source) for target, source in pairs if target in new]
    targets = ",".join(target for target, _ in pairs)
    sources = ",".join(source for _, source in pairs)
    return f"INSERT INTO {table}({targets}) SELECT {sources} FROM {COPY_FROM.get(renamed, renamed)}"


def _stored_sql(conn, name):
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone()
    return None if row is None else row[0]


def _logged(conn, table, statement):
    """Run ``statement()``'s SQL; log a failure and go on, as ProxySQL's ``SQLite3DB::execute`` does."""
    try:
        conn.execute(statement())
    except sqlite3.Error as exc:
        print(f"proxysql-standin: upgrading {table}: {exc}", flush=True)


def migrate(conn, statements, upgrades):
    """ProxySQL's ``disk_upgrade_*()`` (lib/ProxySQL_Admin_Disk_Upgrade.cpp); return the migrated tables.

    For each table of ``statements`` whose ``sqlite_master.sql`` equals exactly one of its older
    layouts in ``upgrades``: ``DROP TABLE IF EXISTS <renamed_to>``, ``ALTER TABLE ... RENAME TO
    <renamed_to>``, the current ``CREATE TABLE``, and the ``INSERT ... SELECT`` copy, each its own
    statement. As in ProxySQL a failing statement is only logged (``SQLite3DB::execute`` returns
    false) and the next one runs; the renamed table stays in the file.
    """
    current = {table_name(s): s for s in statements}
    migrated = []
    for name, layouts in (upgrades or {}).items():
        if name not in current:
            continue
        stored = _stored_sql(conn, name)
        if stored == current[name]:
            continue  # this version's own layout: upgrades.json is 3.0.1's list, and an older
            # ProxySQL (2.0.18's mysql_users is 3.0.1's V2_0_0) does not migrate what it serves
        for layout in layouts:
            if stored != layout["ddl"]:
                continue
            renamed = layout["renamed_to"]
            _logged(conn, name, lambda: f"DROP TABLE IF EXISTS {renamed}")
            _logged(conn, name, lambda: f"ALTER TABLE {name} RENAME TO {renamed}")
            _logged(conn, name, lambda: current[name])
            _logged(conn, name, lambda: copy_statement(conn, name, renamed))
            migrated.append(name)
            break
    return migrated


def apply_startup_rule(conn, statements, upgrades=None):
    """Do what ProxySQL does to its disk tables at start-up; return ``{"migrated", "created", "recreated"}``.

    ``ProxySQL_Admin::init()`` (lib/Admin_Bootstrap.cpp in 3.0.1) first runs the ``disk_upgrade_*()``
    migrations (``migrate``; ``upgrades`` is ``load_upgrades()``'s mapping, None for none), then
    ``check_and_build_standard_tables()``: a missing table is created; a table whose
    ``sqlite_master.sql`` differs from the built-in statement is dropped and created empty
    (``check_and_build_table``, lib/sqlite3db.cpp); a table not in ``statements`` is left alone.
    Statement by statement in autocommit, as ProxySQL runs them: no wrapping transaction, so a
    crash between two statements leaves the file half done, as it would with ProxySQL.
    """
    if conn.in_transaction:
        raise ValueError("apply_startup_rule runs statement by statement; commit the open transaction first")
    done = {"migrated": migrate(conn, statements, upgrades), "created": [], "recreated": []}
    for statement in statements:
        name = table_name(statement)
        stored = _stored_sql(conn, name)
        if stored is None:
            done["created"].append(name)
        elif stored != statement:
            conn.execute(f"DROP TABLE IF EXISTS {name}")
            done["recreated"].append(name)
        else:
            continue
        conn.execute(statement)
    return done


def _save(conn, table, rows, marks):
    """One non-atomic save: commit ``DELETE FROM table``, then commit the ``INSERT`` of ``rows``."""
    conn.execute(f"DELETE FROM {table}")  # autocommit: its own transaction, as in SAVE ... TO DISK
    conn.execute("BEGIN")
    conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    conn.execute("COMMIT")


def _marks(count):
    """``?, ?, ...`` with ``count`` parameter marks."""
    return ", ".join("?" * count)


def _width(conn, table):
    """Number of columns of ``table``."""
    return len(conn.execute(f"SELECT * FROM {table} LIMIT 0").description)


def save_table(path, table, rows):
    """Rewrite ``table`` with full ``rows`` the way ``SAVE ... TO DISK`` does, once."""
    conn = connect(path)
    try:
        _save(conn, table, rows, _marks(_width(conn, table)))
    finally:
        conn.close()


def save_loop(path, table, rows, stop_event, pause=0.0):
    """Repeat ``SAVE ... TO DISK`` on ``table`` until ``stop_event`` is set; return the number of saves.

    Each save commits ``DELETE FROM table`` and then commits the ``INSERT`` of ``rows``, so a
    reader between the two sees the table empty. ``pause`` seconds pass between saves.
    """
    conn = connect(path)
    saves = 0
    try:
        marks = _marks(_width(conn, table))
        while not stop_event.is_set():
            _save(conn, table, rows, marks)
            saves += 1
            if pause:
                stop_event.wait(pause)
    finally:
        conn.close()
    return saves


def dump_config(path):
    """Every table's rows, ordered by all columns: ``{table: [row, ...]}`` to compare configurations.

    Opens ``path`` read-only; SQLite's own tables (``sqlite_sequence``) are left out.
    """
    conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, timeout=30)
    try:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
                " ORDER BY name"
            )
        ]
        config = {}
        for name in tables:
            order = ", ".join(str(i) for i in range(1, _width(conn, name) + 1))
            config[name] = conn.execute(f"SELECT * FROM {name} ORDER BY {order}").fetchall()
        return config
    finally:
        conn.close()


# The tables ProxySQL's start writes into: its default variables and its uuid.
STARTUP_TABLES = ("global_settings", "global_variables")


def startup_variables():
    """The ``global_variables`` rows ProxySQL's start inserts (the stand-in's ``DEFAULT_VARIABLES``)."""
    try:
        from . import proxysql_standin  # imported as standin.proxysql_db
    except ImportError:
        import proxysql_standin  # as a script, beside it
    return proxysql_standin.DEFAULT_VARIABLES


def without_startup_writes(config):
    """``config`` (a ``dump_config`` result) without what ProxySQL itself writes at every start.

    That is ``global_settings`` (each node's own Cluster uuid) and every ``global_variables`` row
    equal to a default that the start ``INSERT OR IGNORE``s (``startup_variables()``). Compare two
    configurations through this on both sides: a row the operator saved with another value stays
    and is compared; a default present on one side only (inserted by one node's start) is not a
    difference, since the other node's start would insert it too.
    """
    defaults = set(startup_variables())
    kept = {table: rows for table, rows in config.items() if table != "global_settings"}
    if "global_variables" in kept:
        kept["global_variables"] = [row for row in kept["global_variables"] if tuple(row) not in defaults]
    return kept


def comparable_config(path):
    """``without_startup_writes(dump_config(path))``: the configuration to compare across a start."""
    return without_startup_writes(dump_config(path))

