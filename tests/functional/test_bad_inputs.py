"""What restore does with bad files in the inbox, and what every function does with a bad pillar.

Each bad candidate is built from A's generation 2 (a good backup A has not shipped) and placed
in B's inbox, where it is the newest thing B could restore.
"""

import contextlib
import hashlib
import json
import os
import re
import shutil
import sqlite3
import time

import pytest
from salt.exceptions import SaltInvocationError



class Candidate:
    """Generation 2 of A's backups, to be written (spoiled) into B's inbox under its own name."""

    def __init__(self, pair, scratch, shared_dir):
        a, b = pair.a, pair.b
        a.save_users(9)
        self.name = a.ha.backup()["name"]
        self.good_db = a.backup_dir / f"{self.name}.db"
        self.good_manifest = a.manifest(self.name)
        self.describe = b.loaders.utils["proxysql_ha_sqlite.describe_file"]
        self.scratch = scratch
        self.shared_dir = shared_dir
        self.db = b.inbox_dir / f"{self.name}.db"
        self.manifest = b.inbox_dir / f"{self.name}.json"
        b.inbox_dir.mkdir(parents=True, exist_ok=True)

    def write(self, db=None, manifest=None):
        """Write the db's bytes and the manifest (a dict, or raw bytes); None leaves a file out."""
        if db is not None:
            self.db.write_bytes(db)
        if manifest is not None:
            self.manifest.write_bytes(manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode())

    def seal(self, db, **changes):
        """Write ``db`` with the good manifest, its sha256 and size made to match ``db``, and ``changes``."""
        manifest = dict(self.good_manifest, sha256=hashlib.sha256(db).hexdigest(), size=len(db), **changes)
        self.write(db, manifest)


def truncated(c):
    good = c.good_db.read_bytes()
    c.write(good[: len(good) // 2], c.good_manifest)


def zero_bytes(c):
    c.write(b"", c.good_manifest)


def random_bytes(c):
    c.seal(os.urandom(c.good_db.stat().st_size))  # its digest matches: only reading it can tell


def foreign_sqlite(c):
    path = c.scratch / "foreign.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        conn.execute("INSERT INTO notes (text) VALUES ('not ProxySQL')")
        conn.commit()
    c.seal(path.read_bytes())


def resealed(c, path):
    """Seal the (changed) db at ``path`` with a manifest that tells its facts truly."""
    facts = c.describe(str(path))
    c.seal(path.read_bytes(), ddl_fingerprint=facts["ddl_fingerprint"], row_counts=facts["row_counts"],
           content_sha256=facts["content_sha256"])


def changed(c, *statements, name="changed.db"):
    """A copy of the good backup with ``statements`` run on it, sealed truly."""
    path = c.scratch / name
    shutil.copyfile(c.good_db, path)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        for statement in statements:
            conn.execute(statement)
        conn.commit()
    resealed(c, path)


def newer_layout(c):
    """mysql_users in a layout the local ProxySQL does not migrate (a newer version's): dropped at start."""
    changed(c, "ALTER TABLE mysql_users ADD COLUMN future_column VARCHAR")


def trigger(c):
    changed(c, "CREATE TRIGGER wipe AFTER UPDATE ON global_settings BEGIN DELETE FROM mysql_users; END")


def view(c):
    changed(c, "CREATE VIEW every_user AS SELECT * FROM mysql_users")


def index(c):
    changed(c, "CREATE INDEX users_by_name ON mysql_users (username)")


def check_violation(c):
    changed(c, "PRAGMA ignore_check_constraints=ON", "UPDATE mysql_servers SET weight = -1")


def deep_manifest(c):
    c.write(c.good_db.read_bytes(), b'{"format": 1, "x": ' + b"[" * 1000 + b"]" * 1000 + b"}")


def nan_manifest(c):
    raw = json.dumps(dict(c.good_manifest, created_ts=float("nan")), allow_nan=True).encode()
    c.write(c.good_db.read_bytes(), raw)


def node_mismatch(c):
    c.write(c.good_db.read_bytes(), dict(c.good_manifest, node_id="node-b"))


def sha256_mismatch(c):
    db = bytearray(c.good_db.read_bytes())
    db[len(db) // 2] ^= 0xFF
    c.write(bytes(db), c.good_manifest)


def missing_manifest(c):
    c.write(c.good_db.read_bytes())


def garbled_manifest(c):
    c.write(c.good_db.read_bytes(), b'{"format": 1, "name": "proxysql-ha-g')


def torn_snapshot(c):
    path = c.scratch / "torn.db"
    shutil.copyfile(c.good_db, path)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("DELETE FROM mysql_users")  # SAVE MYSQL USERS TO DISK's first commit; no INSERT yet
        conn.commit()
    c.seal(path.read_bytes())  # sha256 and size match; row counts and content say 9 users


def future_manifest(c):
    future = time.time() + 3600
    c.write(c.good_db.read_bytes(), dict(c.good_manifest, created_ts=future))


def symlinks(c):
    for target, link in ((c.good_db, c.db), (c.good_db.with_suffix(".json"), c.manifest)):
        shutil.copyfile(target, c.scratch / target.name)
        link.symlink_to(c.scratch / target.name)


BAD_CANDIDATES = [
    pytest.param(truncated, r"size \d+ differs from the manifest's \d+ \(truncated\?\)", id="truncated"),
    pytest.param(zero_bytes, r"size 0 differs", id="zero-bytes"),
    pytest.param(random_bytes, r"unreadable as SQLite|not a database", id="random-bytes"),
    pytest.param(foreign_sqlite, r"not a ProxySQL configuration database", id="sqlite-not-proxysql"),
    pytest.param(newer_layout, r"start-up would drop rows of mysql_users", id="newer-layout"),
    pytest.param(trigger, r"objects ProxySQL never creates \(trigger wipe\)", id="trigger"),
    pytest.param(view, r"objects ProxySQL never creates \(view every_user\)", id="view"),
    pytest.param(index, r"objects ProxySQL never creates \(index users_by_name\)", id="index"),
    pytest.param(check_violation, r"CHECK constraint failed in mysql_servers", id="check-violation"),
    pytest.param(deep_manifest, r"manifest nested \d+ levels deep", id="deep-manifest"),
    pytest.param(nan_manifest, r"manifest is not valid JSON: NaN", id="nan-manifest"),
    pytest.param(node_mismatch, r"manifest node node-b differs from the name's node-a", id="node-mismatch"),
    pytest.param(sha256_mismatch, r"sha256 differs", id="sha256-mismatch"),
    pytest.param(missing_manifest, r"manifest missing", id="missing-manifest"),
    pytest.param(garbled_manifest, r"manifest is not valid JSON", id="garbled-manifest"),
    pytest.param(torn_snapshot, r"row counts differ", id="torn-snapshot"),
    pytest.param(future_manifest, r"manifest time differs from the name's stamp", id="future-manifest"),
    pytest.param(symlinks, r"symlink: never followed", id="symlink"),
]


def rejection(report, name):
    """The reasons ``report`` gives for rejecting the files of backup ``name``."""
    return [v["reason"] for v in report["rejected"] if v["name"].startswith(name)]


@pytest.mark.parametrize("spoil, reason", BAD_CANDIDATES)
def test_restore_passes_over_a_bad_candidate_to_an_older_valid_backup(pair, spoil, reason, tmp_path, shared_dir):
    older = pair.a.ha.ship()["name"]
    bad = Candidate(pair, tmp_path, shared_dir)
    spoil(bad)

    report = pair.b.ha.restore(start=True)

    assert (report["restored"], report["chosen"]) == (True, older), report["rejected"]
    reasons = rejection(report, bad.name)
    assert reasons and all(re.search(reason, r) for r in reasons), reasons
    assert pair.b.running()


@pytest.mark.parametrize("spoil, reason", BAD_CANDIDATES)
def test_restore_with_only_a_bad_candidate_keeps_the_live_db_and_starts_proxysql(
    pair, spoil, reason, tmp_path, shared_dir
):
    pair.a.ha.backup()  # generation 1 stays on A
    bad = Candidate(pair, tmp_path, shared_dir)
    spoil(bad)
    live, uuid = pair.b.shared_config(), pair.b.live_uuid()

    report = pair.b.ha.restore(start=True)

    assert (report["restored"], report["chosen"]) == (False, None)
    reasons = rejection(report, bad.name)
    assert reasons and all(re.search(reason, r) for r in reasons), reasons
    # the same db, but for what ProxySQL's start writes into it (default variables)
    assert (pair.b.shared_config(), pair.b.live_uuid()) == (live, uuid)
    assert pair.b.running()


def half_written(candidate):
    """A copy in progress in B's inbox: half of the db under the store's temporary naming."""
    partial = candidate.db.with_name(".proxysql-ha-tmp-k3x9q1")
    good = candidate.good_db.read_bytes()
    partial.write_bytes(good[: len(good) // 2])
    return partial


def test_restore_passes_over_a_half_written_file_to_an_older_valid_backup(pair, tmp_path, shared_dir):
    older = pair.a.ha.ship()["name"]
    partial = half_written(Candidate(pair, tmp_path, shared_dir))
    content = partial.read_bytes()

    report = pair.b.ha.restore(start=True)

    assert (report["restored"], report["chosen"], report["rejected"]) == (True, older, [])
    assert partial.read_bytes() == content


def test_restore_with_only_a_half_written_file_keeps_the_live_db_and_starts_proxysql(pair, tmp_path, shared_dir):
    pair.a.ha.backup()  # generation 1 stays on A
    partial = half_written(Candidate(pair, tmp_path, shared_dir))
    live = (pair.b.shared_config(), pair.b.live_uuid())

    report = pair.b.ha.restore(start=True)

    assert (report["restored"], report["chosen"], report["rejected"]) == (False, None, [])
    assert partial.exists()
    assert (pair.b.shared_config(), pair.b.live_uuid()) == live  # but for the start's default variables
    assert pair.b.running()


# ---- a bad pillar -----------------------------------------------------------------------

BAD_PILLARS = [
    pytest.param(lambda p: p.clear(), "'proxysql_ha' is missing", id="no-pillar"),
    pytest.param(lambda p: p.pop("vhid"), "'proxysql_ha:vhid'", id="missing-vhid"),
    pytest.param(lambda p: p.pop("interface"), "'proxysql_ha:interface'", id="missing-interface"),
    pytest.param(lambda p: p.update(vhid="nine"), "'proxysql_ha:vhid'", id="vhid-not-a-number"),
    pytest.param(lambda p: p.update(retension={"keep": 3}), "'proxysql_ha:retension'", id="unknown-key"),
    pytest.param(lambda p: p.update(backup_dir="outgoing"), "'proxysql_ha:backup_dir'", id="relative-backup-dir"),
    pytest.param(lambda p: p.update(inbox_dir=p["backup_dir"]), "'proxysql_ha:backup_dir'", id="shared-dirs"),
    pytest.param(lambda p: p["peer"].update(path="inbox"), "'proxysql_ha:peer:path'", id="relative-peer-path"),
    pytest.param(lambda p: p["commands"].update(start=["proxysql"]), "'proxysql_ha:commands:start'", id="command"),
    pytest.param(lambda p: p.update(settle_timeout=0.1), "'proxysql_ha:settle_timeout'", id="settle-timeout"),
]
PUBLIC_FUNCTIONS = ("role", "backup", "ship", "purge", "list_backups", "verify", "restore", "promote", "demote",
                    "status", "check", "metrics")


@pytest.mark.parametrize("spoil, key", BAD_PILLARS)
def test_a_bad_pillar_is_refused_naming_the_key_and_nothing_is_touched(pair, spoil, key):
    a = pair.a
    pillar = a.pillar()
    spoil(pillar)
    a.configure(pillar=pillar)
    files = pair.files()

    for function in PUBLIC_FUNCTIONS:
        with pytest.raises(SaltInvocationError, match=re.escape(key)):
            getattr(a.ha, function)()

    assert pair.files() == files
    assert not any(path.exists() for path in (a.backup_dir, a.inbox_dir, a.state_dir, pair.b.inbox_dir))
    assert not a.running()
