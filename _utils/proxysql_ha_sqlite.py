"""
What this extension reads from and does to SQLite files: online snapshots of
ProxySQL's live database, and the facts that say whether a copy can be trusted
(DDL fingerprint, integrity, row counts, a content digest).

Only the standard library's ``sqlite3``. Backup files are opened read-only and
``immutable`` (they never change once written); the live database is opened
read-only with normal locking, so ProxySQL's own writes are never disturbed.
"""

import hashlib
import os
import shutil
import stat
import sqlite3
import tempfile
import time

from salt.exceptions import CommandExecutionError

__virtualname__ = "proxysql_ha_sqlite"

# Tables every ProxySQL configuration database since 2.0 has (2.0.x has no global_settings).
REQUIRED_TABLES = (
    "global_variables",
    "mysql_query_rules",
    "mysql_servers",
    "mysql_users",
    "proxysql_servers",
    "scheduler",
)
_BUSY_TIMEOUT = 2.0
_POLL = 0.02
# The ``global_settings`` row naming one install (:func:`write_for_restore`), by which the
# admin check (``proxysql_ha_admin.verify_installed``) tells whether ProxySQL's ``disk`` is the
# file installed. Harmless to ProxySQL (sysown/proxysql 3.0.1 and 2.7.2): the table is never
# copied to memory or runtime (lib/ProxySQL_Admin.cpp,
# ``__insert_or_replace_maintable_select_disktable`` leaves it out) nor synced by Cluster
# (lib/ProxySQL_Cluster.cpp sends ``GloVars.uuid``, never the table); at start
# ``load_or_update_global_settings`` reads every row but acts on the one named ``uuid`` only
# (``strcasecmp``) and writes only that one (``INSERT OR REPLACE ... "uuid"``); ``PROXYSQL
# FLUSH CONFIGDB`` does not read it; the start's DDL check compares the table's text, not rows.
INSTALL_STAMP = "proxysql_ha_install"


class InvalidDatabase(ValueError):
    """A file is not a usable ProxySQL configuration database."""


def __virtual__():
    return __virtualname__


def open_backup(path):
    """Open a backup file read-only; it is never written while we read it."""
    uri = "file:" + _quote_uri(path) + "?mode=ro&immutable=1"
    return sqlite3.connect(uri, uri=True, timeout=_BUSY_TIMEOUT)


def open_live(path):
    """Open ProxySQL's live database read-only with normal locking."""
    uri = "file:" + _quote_uri(path) + "?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=_BUSY_TIMEOUT)


def _quote_uri(path):
    return path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")


def tables(conn):
    """``{name: sql}`` of the user tables, as stored in ``sqlite_master``."""
    rows = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' "
        "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
    ).fetchall()
    return dict(rows)


def fingerprint(table_sql):
    """sha256 of the tables' DDL text, which ProxySQL compares byte for byte."""
    digest = hashlib.sha256()
    for name in sorted(table_sql):
        digest.update(name.encode() + b"\0" + (table_sql[name] or "").encode() + b"\0")
    return digest.hexdigest()


def row_counts(conn, names):
    return {name: conn.execute(f'SELECT COUNT(*) FROM "{_ident(name)}"').fetchone()[0]
            for name in names}


def content_digest(path):
    """
    sha256 of a database file with the header fields SQLite bumps on every
    write transaction or backup zeroed (change counter, schema cookie,
    version-valid-for, library version): the same pages give the same digest,
    so a rewrite of identical data (ProxySQL re-saving at start) or another
    snapshot of it is recognised as unchanged. Reading the file costs a few
    milliseconds; hashing every row would cost hundreds.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        header = bytearray(handle.read(100))
        for start, end in ((24, 28), (40, 44), (92, 100)):
            header[start:end] = bytes(end - start)
        digest.update(header)
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def uuid(conn):
    """The node's ProxySQL Cluster uuid, or None."""
    try:
        row = conn.execute(
            "SELECT variable_value FROM global_settings WHERE variable_name = 'uuid'"
        ).fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    return row[0] if row else None


def describe(conn, check="integrity_check"):
    """
    Everything the manifest records about an open database, after an integrity
    check. Raises ``InvalidDatabase`` with the reason.
    """
    try:
        result = conn.execute(f"PRAGMA {check}").fetchall()
        if result != [("ok",)]:
            raise InvalidDatabase(f"{check} failed: {_first(result)}")
        table_sql = tables(conn)
        missing = [t for t in REQUIRED_TABLES if t not in table_sql]
        if missing:
            raise InvalidDatabase(
                "not a ProxySQL configuration database: missing tables " + ", ".join(missing)
            )
        return {
            "ddl_fingerprint": fingerprint(table_sql),
            "row_counts": row_counts(conn, table_sql),
            "tables": sorted(table_sql),
        }
    except sqlite3.DatabaseError as exc:
        raise InvalidDatabase(f"unreadable as SQLite: {exc}") from exc


def _first(result):
    return "; ".join(str(row[0]) for row in result[:3]) or "no result"


def describe_file(path, check="integrity_check"):
    """
    :func:`describe` of a backup file (opened read-only, immutable), with its
    :func:`content_digest`.
    """
    conn = open_backup(path)
    try:
        facts = describe(conn, check)
    except sqlite3.DatabaseError as exc:
        raise InvalidDatabase(f"unreadable as SQLite: {exc}") from exc
    finally:
        conn.close()
    facts["content_sha256"] = content_digest(path)
    return facts


def read_live(path, reader):
    """
    ``reader(conn)`` on ProxySQL's live database, opened read-only.

    A hot rollback journal beside it (a writer died mid-transaction) makes a
    read-only open fail: SQLite must roll it back first. Then the file and its
    journal are copied to a private temporary directory and read there, where
    SQLite may roll back the copy; the live files are not touched.
    """
    try:
        conn = open_live(path)
        try:
            return reader(conn)
        finally:
            conn.close()
    except sqlite3.OperationalError:
        if not os.path.exists(path + "-journal"):
            raise
    with tempfile.TemporaryDirectory(prefix="proxysql-ha-") as scratch:
        copy = os.path.join(scratch, "proxysql.db")
        shutil.copyfile(path, copy)
        shutil.copyfile(path + "-journal", copy + "-journal")
        conn = sqlite3.connect(copy, timeout=_BUSY_TIMEOUT)
        try:
            return reader(conn)
        finally:
            conn.close()


def live_tables(path):
    """``{name: sql}`` of the live database's tables."""
    return read_live(path, tables)


def live_fingerprint(path):
    """The DDL fingerprint of ProxySQL's live database (its own version's schema)."""
    return fingerprint(live_tables(path))


def live_uuid(path):
    """The uuid in the live database, or None when it has none or cannot be read."""
    try:
        return read_live(path, uuid)
    except (sqlite3.Error, OSError):
        return None


def source_state(path):
    """
    What says whether ProxySQL's database changed: its stat, and whether a
    rollback journal (a write transaction) is present. Raises OSError.
    """
    st = os.stat(path)
    journal = os.path.lexists(path + "-journal")
    return {"ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "journal": journal}


def wait_quiet(path, settle, timeout, clock=time.monotonic, sleep=time.sleep):
    """
    Wait until ``path`` has not changed for ``settle`` seconds and no write
    transaction is open. ProxySQL's ``SAVE ... TO DISK`` commits a DELETE and an
    INSERT separately, so a database that is still changing may be half saved.
    The time since the file's last modification counts: a database saved long
    ago is quiet at once. Returns the quiet state; raises
    ``CommandExecutionError`` after ``timeout``.
    """
    deadline = clock() + timeout
    state = source_state(path)
    untouched_for = max(0.0, time.time() - state["mtime_ns"] / 1e9)
    quiet_since = clock() - untouched_for
    while True:
        if not state["journal"] and clock() - quiet_since >= settle:
            return state
        if clock() >= deadline:
            raise CommandExecutionError(
                f"{path} kept changing for {timeout:g} s (a save in progress?); "
                f"no backup taken: it needs {settle:g} s without writes"
            )
        sleep(_POLL)
        current = source_state(path)
        if current != state or current["journal"]:
            state, quiet_since = current, clock()


def snapshot(source, target, settle, timeout):
    """
    Copy ``source`` to the (empty, already created) file ``target`` with the
    SQLite online backup API, after the source was quiet for ``settle``
    seconds, and check that it did not change while copying.

    Returns the source's state at the snapshot. Raises ``CommandExecutionError``
    when the source would not settle or changed, ``sqlite3.Error`` when SQLite
    fails (a full disk among others: the caller says which).
    """
    before = wait_quiet(source, settle, timeout)
    src = open_live(source)
    try:
        version = src.execute("PRAGMA data_version").fetchone()[0]
        dst = sqlite3.connect(target)
        try:
            src.backup(dst, pages=-1)
            dst.commit()
        finally:
            dst.close()
        changed = src.execute("PRAGMA data_version").fetchone()[0] != version
    finally:
        src.close()
    after = source_state(source)
    if changed or after != before:
        raise CommandExecutionError(
            f"{source} changed while it was copied; the copy was discarded"
        )
    return before


def write_for_restore(backup_path, sha256, target, node_uuid, settings_ddl=None, stamp=None):
    """
    Write the backup's bytes, read once and held against the ``sha256`` it was
    judged by, into the (empty, already created) file ``target``; set it to
    ProxySQL's rollback journal (``journal_mode=DELETE``), put this node's own
    ``global_settings.uuid`` back (or drop the peer's, so ProxySQL makes a new
    one) and, in the same transaction, this install's ``stamp`` (None: a
    random one) as the :data:`INSTALL_STAMP` row, and return the :func:`inspect`
    facts of the result. A file without ``global_settings`` (2.0.x) gets it
    from ``settings_ddl``, the local ProxySQL's DDL, when given: else ProxySQL
    creates it and a new uuid, and the file has no stamp.
    """
    data, _st = read_regular(backup_path)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise InvalidDatabase("its sha256 changed since it was judged")
    with open(target, "r+b") as handle:
        handle.truncate(0)
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    del data
    dst = sqlite3.connect(target, isolation_level=None)
    try:
        mode = dst.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
        if mode != "delete":
            raise InvalidDatabase(f"journal mode stays {mode!r}, not delete")
        dst.execute("BEGIN IMMEDIATE")
        has_settings = dst.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'global_settings'").fetchone()
        if not has_settings and settings_ddl:
            dst.execute(settings_ddl)
            has_settings = True
        if has_settings and node_uuid:
            dst.execute(
                "INSERT OR REPLACE INTO global_settings (variable_name, variable_value) "
                "VALUES ('uuid', ?)",
                (node_uuid,),
            )
        elif has_settings:
            dst.execute("DELETE FROM global_settings WHERE variable_name = 'uuid'")
        if has_settings:
            dst.execute("INSERT OR REPLACE INTO global_settings (variable_name, variable_value) "
                        "VALUES (?, ?)", (INSTALL_STAMP, stamp or os.urandom(16).hex()))
        dst.execute("COMMIT")
    finally:
        dst.close()
    for suffix in ("-wal", "-shm"):
        if os.path.lexists(target + suffix):
            raise InvalidDatabase(f"SQLite left {os.path.basename(target)}{suffix} beside it")
    # Its bytes passed integrity_check when judged and their sha256 was verified just above;
    # the only pages written since are those of the table the uuid went into (and page 1's
    # header): the check covers those (a whole-file quick_check costs ~0.5 s on 13.5 MB).
    changed = "global_settings" if has_settings else "sqlite_master"
    return inspect(target, check=f"quick_check({changed})")


# ---- one-pass inspection of a candidate ------------------------------------------

MAX_INSPECT = 1 << 30  # bytes: a candidate larger than this is refused unread
_HEADER_VOLATILE = ((24, 28), (40, 44), (92, 100))


def read_regular(path, limit=MAX_INSPECT):
    """
    ``(data, stat)`` of a regular file read in one go, never following a
    symlink nor opening anything else (a FIFO, a device). Raises OSError or
    ``InvalidDatabase`` when it is larger than ``limit``.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidDatabase("not a regular file")
        if st.st_size > limit:
            raise InvalidDatabase(f"{st.st_size} bytes: larger than {limit}")
        chunks, left = [], st.st_size + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
    finally:
        os.close(fd)
    if len(data) > st.st_size:
        raise InvalidDatabase("the file grew while it was read")
    return data, st


def digests(data):
    """``(sha256, content digest)`` of a file's bytes (see :func:`content_digest`)."""
    header = bytearray(data[:100])
    for start, end in _HEADER_VOLATILE:
        header[start:end] = bytes(max(0, min(end, len(header)) - start))
    content = hashlib.sha256(bytes(header))
    content.update(memoryview(data)[100:])
    return hashlib.sha256(data).hexdigest(), content.hexdigest()


def inspect(path, value_columns=None, check="integrity_check"):
    """
    Every fact the judge needs about one candidate, from one read of the file
    and one open of its bytes in memory (writable there, so ``integrity_check``
    verifies CHECK and NOT NULL constraints too, which it skips on a read-only
    file). ``value_columns``: ``{table: [column]}`` whose non-NULL values are
    counted (``value_counts``). ``sqlite_error`` says why the bytes are no SQLite database (the
    judge weighs it after size and sha256). Raises OSError or ``InvalidDatabase``
    when the file itself cannot be read.
    """
    data, st = read_regular(path)
    sha256, content = digests(data)
    facts = {"size": len(data), "sha256": sha256, "content_sha256": content,
             "key": cache_key(st), "journal_mode": "wal" if data[18:20] == b"\x02\x02" else "delete"}
    image = bytearray(data)
    del data
    if len(image) >= 100:
        image[18:20] = b"\x01\x01"  # a WAL-mode file without its -wal is read as a rollback one
    facts["sqlite_error"] = None
    if len(image) < 512 or image[:16] != b"SQLite format 3\x00":
        facts["sqlite_error"] = "file is not a database (no SQLite header)"
        return facts
    conn = sqlite3.connect(":memory:")
    try:
        conn.deserialize(bytes(image))
        del image
        facts.update(_sqlite_facts(conn, value_columns or {}, check))
    except (sqlite3.Error, MemoryError, OverflowError) as exc:
        facts["sqlite_error"] = f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()
    return facts


def cache_key(st):
    """What says a file is unchanged since it was inspected: device, inode, size, mtime."""
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def _sqlite_facts(conn, value_columns, check):
    result = conn.execute(f"PRAGMA {check}").fetchall()
    objects = [
        {"type": t, "name": n, "table": tn, "sql": s}
        for t, n, tn, s in conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")
    ]
    table_sql = {o["name"]: o["sql"] for o in objects
                 if o["type"] == "table" and not o["name"].startswith("sqlite_")}
    served = {n: s for n, s in table_sql.items() if not is_leftover(n, table_sql)}
    return {
        "integrity": "ok" if result == [("ok",)] else _first(result),
        "objects": objects,
        "tables": table_sql,
        "served_tables": sorted(served),
        "missing_tables": [t for t in REQUIRED_TABLES if t not in table_sql],
        "ddl_fingerprint": fingerprint(table_sql),
        "served_fingerprint": fingerprint(served),
        "row_counts": row_counts(conn, table_sql),
        "value_counts": {name: _value_counts(conn, name, value_columns[name])
                         for name in table_sql if value_columns.get(name)},
        "global_settings": _settings(conn, table_sql),
    }


def is_leftover(name, table_sql):
    """A ``<table>_v<N>`` copy an earlier ProxySQL migration left beside ``<table>``."""
    base, sep, suffix = name.rpartition("_v")
    return bool(sep) and base in table_sql and suffix[:1].isdigit() and suffix.isalnum()


def _value_counts(conn, table, wanted):
    present = [row[1] for row in conn.execute(f'PRAGMA table_info("{_ident(table)}")')]
    columns = [c for c in present if c in wanted]
    if not columns:
        return {}
    counts = conn.execute(
        "SELECT " + ", ".join(f'COUNT("{_ident(c)}")' for c in columns)
        + f' FROM "{_ident(table)}"').fetchone()
    return dict(zip(columns, counts))


def _ident(name):
    return name.replace('"', '""')


def _settings(conn, table_sql):
    if "global_settings" not in table_sql:
        return {}
    rows = conn.execute("SELECT variable_name, variable_value FROM global_settings").fetchall()
    return {str(k): v for k, v in rows[:100]}


def served_fingerprint(table_sql):
    """The fingerprint of the tables a ProxySQL serves (earlier migrations' leftovers left out)."""
    return fingerprint({n: s for n, s in table_sql.items() if not is_leftover(n, table_sql)})


def contents(conn):
    """
    Every user table's ``{"columns", "key", "rows"}`` (key: the primary key's
    columns from ``PRAGMA table_info``), for ``proxysql_ha_diff``.
    """
    found = {}
    for name in tables(conn):
        info = conn.execute(f'PRAGMA table_info("{name}")').fetchall()
        keyed = sorted((row[5], row[1]) for row in info if row[5])
        found[name] = {"columns": [row[1] for row in info], "key": [c for _, c in keyed],
                       "rows": conn.execute(f'SELECT * FROM "{name}"').fetchall()}
    return found
