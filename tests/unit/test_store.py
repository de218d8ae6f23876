"""The backup store: names, listing, manifests, atomic 0600 files in 0700 directories, the purge plan."""

import datetime
import errno
import hashlib
import json
import os
import random
import sqlite3
import stat
import time

import proxysql_ha_store as store
import pytest
from salt.exceptions import CommandExecutionError

NOW = 1_795_000_000.0  # a fixed "now" in 2026 for the pure functions


def name_at(generation, seconds_before_now, node="node-a"):
    return store.make_name(generation, NOW - seconds_before_now, node)


def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def valid_manifest(base, created_ts=NOW - 60):
    """A manifest that ``read_manifest`` accepts for ``base``."""
    generation, _stamp, node = store.parse_name(base)
    return {
        "format": store.FORMAT,
        "name": base,
        "node_id": node,
        "generation": generation,
        "created": store.utc_iso(created_ts),
        "created_ts": created_ts,
        "sha256": "0" * 64,
        "size": 4096,
        "ddl_fingerprint": "1" * 64,
        "content_sha256": "2" * 64,
        "row_counts": {"mysql_users": 3},
    }


@pytest.fixture
def backup_dir(tmp_path):
    path = tmp_path / "outgoing"
    path.mkdir(mode=0o700)
    return path


# ---- names -----------------------------------------------------------------------


def test_make_name_encodes_generation_utc_time_to_the_millisecond_and_node():
    created = datetime.datetime(2026, 11, 25, 18, 48, 16, 123456, tzinfo=datetime.timezone.utc)
    assert store.make_name(42, created.timestamp(), "node-a") == "proxysql-ha-g0000000042-20261125T184816123Z-node-a"


@pytest.mark.parametrize("created_ts", [0.0, 1.5, NOW, NOW + 0.999, 4_102_444_799.001])
@pytest.mark.parametrize(("generation", "node"), [(1, "a"), (9_999_999_999, "proxysql1.example.test"), (7, "N" * 64)])
def test_a_name_parses_back_to_what_made_it(generation, node, created_ts):
    base = store.make_name(generation, created_ts, node)
    parsed_generation, stamp, parsed_node = store.parse_name(base)
    assert (parsed_generation, parsed_node) == (generation, node)
    assert stamp in base
    assert abs(store.stamp_ts(base) - created_ts) < 0.002


def test_generations_grow_past_ten_digits_and_still_sort_as_integers():
    bases = [store.make_name(g, NOW, "a") for g in (9_999_999_999, 10_000_000_000, 99_999_999_999)]
    assert [store.parse_name(b)[0] for b in bases] == [9_999_999_999, 10_000_000_000, 99_999_999_999]
    assert store.newest_first(bases) == bases[::-1]


def test_a_generation_beyond_the_pattern_is_refused_when_named():
    with pytest.raises(CommandExecutionError, match="out of range"):
        store.make_name(store.MAX_GENERATION + 1, NOW, "a")


def test_a_deep_huge_or_non_finite_manifest_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="nested 1001 levels deep"):
        store.parse_manifest(b"[" * 1001 + b"]" * 1001)
    with pytest.raises(ValueError, match="larger than"):
        store.parse_manifest(b" " * (store.MAX_MANIFEST + 1))
    for constant in (b"NaN", b"Infinity", b"-Infinity"):
        with pytest.raises(ValueError, match="not a number a manifest may hold"):
            store.parse_manifest(b'{"created_ts": ' + constant + b"}")


def test_nesting_skips_brackets_inside_strings():
    assert store.nesting(b'{"a": "[[[[\\"[[", "b": [1]}') == 2


def test_stamp_ts_reads_the_utc_time_of_the_name():
    assert store.stamp_ts("proxysql-ha-g0000000001-19700101T000001500Z-x") == 1.5
    assert store.stamp_ts("proxysql-ha-g0000000001-20000101T000000000Z-x") == 946684800.0


@pytest.mark.parametrize(
    "name",
    [
        "proxysql-ha-g42-20261125T184816123Z-node-a",
        "proxysql-ha-g0000000042-20261125T184816Z-node-a",
        "proxysql-ha-g0000000042-20261125T184816123-node-a",
        "proxysql-ha-g0000000042-20261125T184816123Z-",
        "proxysql-ha-g0000000042-20261125T184816123Z-node/a",
        "proxysql-ha-g0000000042-20261125T184816123Z-node a",
        "proxysql-ha-g0000000042-20261125T184816123Z-" + "n" * 65,
        "proxysql-ha-g0000000042-20261125T184816123Z-node-a\n",
        " proxysql-ha-g0000000042-20261125T184816123Z-node-a",
        "other-g0000000042-20261125T184816123Z-node-a",
        ".proxysql-ha-tmp-abc123",
        "proxysql.db",
        "",
        "proxysql-ha-g0000000042-20261399T999999999Z-node-a",  # no such date
        "proxysql-ha-g0000000042-20260230T120000000Z-node-a",  # February 30th
        "proxysql-ha-g\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669\u0660-20261125T184816123Z-node-a",
        "proxysql-ha-g0000000042-2026112\u0665T184816123Z-node-a",  # a non-ASCII digit
        "proxysql-ha-g" + "9" * 19 + "-20261125T184816123Z-node-a",  # wider than any name this store writes
    ],
    ids=repr,
)
def test_parse_name_rejects_a_foreign_name(name):
    assert store.parse_name(name) is None


def test_newest_first_orders_by_generation_then_by_time():
    expected = [
        name_at(3, 500, "node-b"),
        name_at(2, 10),
        name_at(2, 20),
        name_at(2, 30, "node-b"),
        name_at(1, 0),
    ]
    shuffled = list(expected)
    random.Random(7).shuffle(shuffled)
    assert store.newest_first(shuffled) == expected


def test_utc_iso_is_iso_8601_in_utc_with_milliseconds():
    assert store.utc_iso(1.5) == "1970-01-01T00:00:01.500+00:00"


def test_json_line_is_one_compact_line_that_reads_back():
    data = {"name": "a\nb", "size": 3, "manifest": {"z": 1, "a": [1, 2]}}
    line = store.json_line(data)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == data


# ---- listing -------------------------------------------------------------------


def test_scan_sorts_out_pairs_incomplete_pairs_tmp_files_and_symlinks(tmp_path, backup_dir):
    pair, db_only, json_only, linked, linked_dir = (name_at(g, 100 * g) for g in range(1, 6))
    for name in (pair + ".db", pair + ".json", db_only + ".db", json_only + ".json", ".proxysql-ha-tmp-abc"):
        (backup_dir / name).write_bytes(b"x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "file").write_bytes(b"x")
    (backup_dir / (linked + ".db")).symlink_to(outside / "file")
    (backup_dir / (linked_dir + ".json")).symlink_to(outside)
    (backup_dir / ".proxysql-ha-tmp-link").symlink_to(outside / "file")
    (backup_dir / ".proxysql-ha-tmp-dir").mkdir()
    (backup_dir / (name_at(6, 0) + ".db")).mkdir()
    for foreign in ("notes.txt", "proxysql.db", pair, pair + ".db.bak", "proxysql-ha-g1-x.db"):
        (backup_dir / foreign).write_bytes(b"x")

    found = store.scan(str(backup_dir))

    assert found["backups"] == {
        pair: {"db": True, "json": True},
        db_only: {"db": True, "json": False},
        json_only: {"db": False, "json": True},
    }
    assert found["tmp"] == [".proxysql-ha-tmp-abc"]
    assert sorted(found["symlinks"]) == sorted([linked + ".db", linked_dir + ".json"])


def test_scan_of_a_missing_directory_finds_nothing(tmp_path):
    assert store.scan(str(tmp_path / "absent")) == {"backups": {}, "tmp": [], "symlinks": []}


def test_max_generation_is_the_highest_over_the_directories(tmp_path, backup_dir):
    inbox = tmp_path / "incoming"
    inbox.mkdir()
    (backup_dir / (name_at(4, 0) + ".db")).write_bytes(b"x")
    (inbox / (name_at(11, 50, "node-b") + ".json")).write_bytes(b"x")
    (inbox / (name_at(2, 10, "node-b") + ".db")).write_bytes(b"x")
    assert store.max_generation(str(backup_dir), str(inbox), str(tmp_path / "absent")) == 11
    assert store.max_generation(str(tmp_path / "absent")) == 0


# ---- manifests ---------------------------------------------------------------


def test_read_manifest_returns_a_valid_manifest(backup_dir):
    base = name_at(1, 60)
    manifest = dict(valid_manifest(base), created_ts=int(NOW))
    path = backup_dir / (base + ".json")
    path.write_text(json.dumps(manifest), encoding="utf-8")
    assert store.read_manifest(str(path)) == manifest


def write_raw(path, content):
    path.write_bytes(content)


def write_with(changes, drop=()):
    def write(path):
        manifest = dict(valid_manifest(path.name[: -len(".json")]), **changes)
        for key in drop:
            del manifest[key]
        path.write_text(json.dumps(manifest), encoding="utf-8")

    return write


def write_symlink(path):
    target = path.parent / "real" / path.name
    target.parent.mkdir()
    write_with({})(target)
    path.symlink_to(target)


@pytest.mark.parametrize(
    ("write", "reason"),
    [
        pytest.param(lambda path: None, "manifest missing", id="missing"),
        pytest.param(lambda path: write_raw(path, b"not json"), "not valid JSON", id="not-json"),
        pytest.param(lambda path: write_raw(path, b"\xff\xfe{}"), "not valid JSON", id="not-utf8"),
        pytest.param(lambda path: write_raw(path, b""), "not valid JSON", id="empty"),
        pytest.param(lambda path: write_raw(path, b"[1, 2]"), "not a JSON object", id="list"),
        pytest.param(write_with({}, drop=["sha256"]), "'sha256' is missing", id="no-sha256"),
        pytest.param(write_with({}, drop=["row_counts"]), "'row_counts' is missing", id="no-row-counts"),
        pytest.param(write_with({"generation": "1"}), "'generation'", id="generation-string"),
        pytest.param(write_with({"generation": True}), "'generation'", id="generation-bool"),
        pytest.param(write_with({"size": 4096.0}), "'size'", id="size-float"),
        pytest.param(write_with({"created_ts": True}), "'created_ts'", id="created-ts-bool"),
        pytest.param(write_with({"created_ts": "2026-01-01"}), "'created_ts'", id="created-ts-string"),
        pytest.param(write_with({"row_counts": [3]}), "'row_counts'", id="row-counts-list"),
        pytest.param(write_with({"name": None}), "'name'", id="name-null"),
        pytest.param(write_with({"format": 2}), "format 2 is not supported", id="format-2"),
        pytest.param(write_with({"format": False}), "'format'", id="format-bool"),
        pytest.param(write_symlink, "manifest unreadable", id="symlink"),
        pytest.param(lambda path: path.mkdir(), "manifest", id="directory"),
    ],
)
def test_read_manifest_refuses_a_bad_manifest_with_the_reason(backup_dir, write, reason):
    path = backup_dir / (name_at(1, 60) + ".json")
    write(path)
    with pytest.raises(ValueError, match=reason):
        store.read_manifest(str(path))


# ---- purging -------------------------------------------------------------------


@pytest.fixture
def aged():
    """Five backups, newest first, 10 s, 1 min, 1 h, 1 day and 1 week old: ``(bases, ages)``."""
    seconds = [10, 60, 3600, 86400, 7 * 86400]
    bases = [name_at(5 - i, age) for i, age in enumerate(seconds)]
    return bases, dict(zip(bases, seconds))


def test_purge_plan_keeps_the_newest_n(aged):
    bases, ages = aged
    assert store.purge_plan(bases, 2, 0, None, ages) == bases[2:]


def test_purge_plan_keeps_all_younger_than_max_age(aged):
    bases, ages = aged
    assert store.purge_plan(bases, 1, 7200, None, ages) == bases[3:]


def test_purge_plan_never_deletes_the_protected_backup_however_old(aged):
    bases, ages = aged
    assert store.purge_plan(bases, 1, 0, bases[-1], ages) == bases[1:-1]


def test_purge_plan_deletes_nothing_when_keep_covers_all(aged):
    bases, ages = aged
    assert store.purge_plan(bases, len(bases), 0, None, ages) == []


def test_purge_plan_keeps_a_backup_of_unknown_age(aged):
    bases, ages = aged
    del ages[bases[-1]]
    assert store.purge_plan(bases, 1, 3600, None, ages) == bases[2:-1]


def test_stale_tmp_lists_only_regular_files_older_than_the_limit(tmp_path, backup_dir):
    now = time.time()
    for name, age in ((".proxysql-ha-tmp-old", 700), (".proxysql-ha-tmp-new", 10)):
        (backup_dir / name).write_bytes(b"x")
        os.utime(backup_dir / name, (now - age, now - age))
    (backup_dir / ".proxysql-ha-tmp-dir").mkdir()
    os.utime(backup_dir / ".proxysql-ha-tmp-dir", (now - 700, now - 700))
    (backup_dir / ".proxysql-ha-tmp-link").symlink_to(backup_dir / ".proxysql-ha-tmp-old")
    names = [".proxysql-ha-tmp-old", ".proxysql-ha-tmp-new", ".proxysql-ha-tmp-dir",
             ".proxysql-ha-tmp-link", ".proxysql-ha-tmp-gone"]
    assert store.stale_tmp(str(backup_dir), names, now, 600) == [".proxysql-ha-tmp-old"]


# ---- files -------------------------------------------------------------------


def test_ensure_dir_creates_missing_directories_0700(tmp_path):
    path = tmp_path / "a" / "b" / "outgoing"
    assert store.ensure_dir(str(path)) == str(path)
    assert path.is_dir() and mode_of(path) == 0o700


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o701, 0o777])
def test_ensure_dir_tightens_a_looser_directory_to_0700(tmp_path, mode):
    path = tmp_path / "outgoing"
    path.mkdir()
    path.chmod(mode)
    store.ensure_dir(str(path))
    assert mode_of(path) == 0o700


def test_ensure_dir_leaves_a_tighter_directory_alone(tmp_path):
    path = tmp_path / "outgoing"
    path.mkdir()
    path.chmod(0o500)
    store.ensure_dir(str(path))
    assert mode_of(path) == 0o500


def test_ensure_dir_refuses_a_symlink_and_leaves_its_target_alone(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    target.chmod(0o755)
    link = tmp_path / "outgoing"
    link.symlink_to(target)
    with pytest.raises(CommandExecutionError, match="not a directory"):
        store.ensure_dir(str(link))
    assert mode_of(target) == 0o755


@pytest.mark.parametrize(
    "make",
    [lambda path: path.write_bytes(b"x"), lambda path: path.symlink_to(path.parent / "absent")],
    ids=["file", "dangling-symlink"],
)
def test_ensure_dir_refuses_a_path_that_is_not_a_directory(tmp_path, make):
    path = tmp_path / "outgoing"
    make(path)
    with pytest.raises(CommandExecutionError, match=str(path)):
        store.ensure_dir(str(path))


def test_new_tmp_makes_an_empty_0600_file_of_the_tmp_naming(backup_dir):
    path = store.new_tmp(str(backup_dir), ".restore")
    name = os.path.basename(path)
    assert name.startswith(store.TMP_PREFIX) and name.endswith(".restore")
    assert os.path.getsize(path) == 0 and mode_of(path) == 0o600
    assert store.scan(str(backup_dir))["tmp"] == [name]


def test_publish_renames_the_tmp_file_into_place(backup_dir):
    tmp = store.new_tmp(str(backup_dir))
    with open(tmp, "wb") as handle:
        handle.write(b"data")
    final = backup_dir / "final.db"
    store.publish(tmp, str(final))
    assert os.listdir(backup_dir) == ["final.db"]
    assert final.read_bytes() == b"data" and mode_of(final) == 0o600


def test_write_json_writes_a_0600_file_and_leaves_no_tmp_file(backup_dir):
    data = {"name": "x", "generation": 3, "row_counts": {"mysql_users": 2}}
    store.write_json(str(backup_dir), "state.json", {"old": True})
    store.write_json(str(backup_dir), "state.json", data)
    assert os.listdir(backup_dir) == ["state.json"]
    assert mode_of(backup_dir / "state.json") == 0o600
    assert store.read_json(str(backup_dir / "state.json")) == data


def test_write_json_that_fails_leaves_the_old_file_and_no_tmp_file(backup_dir):
    store.write_json(str(backup_dir), "state.json", {"old": True})
    with pytest.raises(TypeError):
        store.write_json(str(backup_dir), "state.json", {"bad": object()})
    assert os.listdir(backup_dir) == ["state.json"]
    assert store.read_json(str(backup_dir / "state.json")) == {"old": True}


def test_read_json_gives_the_default_for_a_missing_or_broken_file(backup_dir):
    (backup_dir / "broken.json").write_text("{", encoding="utf-8")
    assert store.read_json(str(backup_dir / "broken.json"), {}) == {}
    assert store.read_json(str(backup_dir / "absent.json")) is None


def test_copy_file_publishes_a_0600_copy_and_leaves_no_tmp_file(tmp_path, backup_dir):
    source = tmp_path / "source.db"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    source.chmod(0o644)
    store.copy_file(str(source), str(backup_dir), "copy.db")
    assert os.listdir(backup_dir) == ["copy.db"]
    assert (backup_dir / "copy.db").read_bytes() == source.read_bytes()
    assert mode_of(backup_dir / "copy.db") == 0o600


def test_copy_file_of_a_missing_source_leaves_no_tmp_file(tmp_path, backup_dir):
    with pytest.raises(FileNotFoundError):
        store.copy_file(str(tmp_path / "absent.db"), str(backup_dir), "copy.db")
    assert os.listdir(backup_dir) == []


def test_sha256_file_gives_digest_and_size(tmp_path):
    content = os.urandom(2 * 1024 * 1024 + 5)
    (tmp_path / "file").write_bytes(content)
    assert store.sha256_file(str(tmp_path / "file")) == (hashlib.sha256(content).hexdigest(), len(content))


def test_sha256_file_refuses_a_symlink(tmp_path):
    (tmp_path / "file").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "file")
    with pytest.raises(OSError) as caught:
        store.sha256_file(str(tmp_path / "link"))
    assert caught.value.errno == errno.ELOOP


@pytest.mark.parametrize(
    ("exc", "full"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), True),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), True),
        (sqlite3.OperationalError("database or disk is full"), True),
        (OSError(errno.EACCES, "Permission denied"), False),
        (sqlite3.OperationalError("database is locked"), False),
        (ValueError("bad"), False),
    ],
    ids=repr,
)
def test_is_enospc_recognises_a_full_disk(exc, full):
    assert store.is_enospc(exc) is full
