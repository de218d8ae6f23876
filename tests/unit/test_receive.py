"""The receiver ``proxysql-ha-receive``, run as sshd would run it: a process fed on stdin.

The stream is one JSON header line, then exactly ``size`` bytes of the SQLite file. A stream
the receiver refuses must leave the inbox as it was: no backup, no temporary file.
"""

import hashlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

RECEIVER = Path(__file__).resolve().parents[2] / "proxysql_ha" / "files" / "proxysql-ha-receive"
NAME = "proxysql-ha-g0000000007-20261125T184816123Z-node-a"


@pytest.fixture
def inbox(tmp_path):
    path = tmp_path / "inbox"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def data(tmp_path):
    """The bytes of a small SQLite database: what the receiver stores is opaque to it."""
    path = tmp_path / "source.db"
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE global_settings (variable_name VARCHAR NOT NULL PRIMARY KEY, "
                     "variable_value VARCHAR NOT NULL)")
        conn.execute("INSERT INTO global_settings VALUES ('uuid', 'a-node-uuid')")
    conn.close()
    return path.read_bytes()


def sha256(blob):
    return hashlib.sha256(blob).hexdigest()


def header(name, data, **changes):
    """The header line for ``data`` stored as ``name``, with ``changes`` to its fields."""
    fields = {"version": 1, "name": name, "size": len(data), "sha256": sha256(data),
              "manifest": {"format": 1, "name": name, "sha256": sha256(data)}}
    fields.update(changes)
    return json.dumps(fields).encode() + b"\n"


def receive(inbox, stream):
    """Run the receiver on ``inbox`` with ``stream`` on stdin."""
    return subprocess.run([sys.executable, str(RECEIVER), str(inbox)], input=stream,
                          capture_output=True, timeout=30, check=False)


def test_a_complete_stream_is_stored_as_backup_and_manifest_readable_by_owner_only(inbox, data):
    out = receive(inbox, header(NAME, data) + data)

    assert out.returncode == 0, out.stderr
    assert out.stdout.decode() == f"OK {NAME}\n"
    assert sorted(os.listdir(inbox)) == [NAME + ".db", NAME + ".json"]
    assert (inbox / (NAME + ".db")).read_bytes() == data
    manifest = json.loads((inbox / (NAME + ".json")).read_text())
    assert manifest == {"format": 1, "name": NAME, "sha256": sha256(data)}
    for entry in inbox.iterdir():
        assert stat.S_IMODE(entry.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "name",
    [
        "../x",
        "../" + NAME,
        NAME + "/../x",
        "proxysql-ha-g0000000007-20261125T184816123Z-a;id",
        "proxysql-ha-g0000000007-20261125T184816123Z-$(id)",
        "proxysql-ha-g0000000007-20261125T184816123Z-a b",
        NAME + "\n",
    ],
    ids=["parent-dir", "parent-dir-of-a-good-name", "slash", "semicolon",
         "command-substitution", "space", "trailing-newline"],
)
def test_a_bad_name_is_refused_and_nothing_is_written(inbox, data, name):
    out = receive(inbox, header(name, data) + data)

    assert out.returncode == 1
    assert out.stdout == b""
    assert b"bad backup name" in out.stderr
    assert os.listdir(inbox) == []
    assert sorted(os.listdir(inbox.parent)) == ["inbox", "source.db"]


def cut_short(data):
    return header(NAME, data) + data[:-100]


def extra_data(data):
    return header(NAME, data) + data + b"\0"


def damaged(data):
    return header(NAME, data) + data[:50] + bytes([data[50] ^ 1]) + data[51:]


def not_json(data):
    return b"{version: 1, name: x}\n" + data


def no_header(data):
    return b""


def manifest_for_another_backup(data):
    other = NAME.replace("g0000000007", "g0000000008")
    return header(NAME, data, manifest={"format": 1, "name": other}) + data


def wrong_size_type(data):
    return header(NAME, data, size=str(len(data))) + data


@pytest.mark.parametrize(
    "stream, reason",
    [
        (cut_short, b"transfer cut short"),
        (extra_data, b"more data than announced"),
        (damaged, b"sha256 mismatch"),
        (not_json, b"header is not JSON"),
        (no_header, b"no header line"),
        (manifest_for_another_backup, b"manifest missing or for another backup"),
        (wrong_size_type, b"bad size"),
    ],
)
def test_a_faulty_stream_is_refused_and_leaves_no_file(inbox, data, stream, reason):
    out = receive(inbox, stream(data))

    assert out.returncode == 1
    assert out.stdout == b""
    assert reason in out.stderr
    assert os.listdir(inbox) == []


def test_a_backup_received_again_with_the_same_content_is_accepted_unchanged(inbox, data):
    assert receive(inbox, header(NAME, data) + data).returncode == 0
    before = {entry.name: os.stat(entry).st_ino for entry in inbox.iterdir()}

    out = receive(inbox, header(NAME, data) + data)

    assert out.returncode == 0, out.stderr
    assert out.stdout.decode() == f"OK {NAME}\n"
    assert {entry.name: os.stat(entry).st_ino for entry in inbox.iterdir()} == before


def test_a_backup_received_again_with_other_content_is_refused_and_not_replaced(inbox, data):
    assert receive(inbox, header(NAME, data) + data).returncode == 0
    other = data[:-1] + bytes([data[-1] ^ 1])

    out = receive(inbox, header(NAME, other) + other)

    assert out.returncode == 1
    assert b"already exists with other content" in out.stderr
    assert sorted(os.listdir(inbox)) == [NAME + ".db", NAME + ".json"]
    assert (inbox / (NAME + ".db")).read_bytes() == data


def test_a_relative_inbox_is_a_usage_error(inbox, data):
    out = subprocess.run([sys.executable, str(RECEIVER), inbox.name],
                         input=header(NAME, data) + data, capture_output=True, cwd=inbox.parent,
                         timeout=30, check=False)

    assert out.returncode == 2
    assert b"usage" in out.stderr
    assert os.listdir(inbox) == []


# ---- races, quota, dates and manifests ----------------------------------------------------


def receive_with(inbox, stream, *options):
    return subprocess.run([sys.executable, str(RECEIVER), *options, str(inbox)], input=stream,
                          capture_output=True, timeout=30, check=False)


def test_two_uploads_of_one_name_race_and_only_one_is_accepted(inbox, data):
    """Both pass the existence check before either publishes: link() lets only one name win."""
    other = data.replace(b"a-node-uuid", b"b-node-uuid")
    procs = []
    for blob in (data, other):
        proc = subprocess.Popen([sys.executable, str(RECEIVER), str(inbox)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.stdin.write(header(NAME, blob) + blob[:-1])  # held back before the last byte
        proc.stdin.flush()
        procs.append((proc, blob))
    results = []
    for proc, blob in procs:
        out, err = proc.communicate(blob[-1:], timeout=30)
        results.append((proc.returncode, out, err, blob))
    accepted = [r for r in results if r[0] == 0]
    refused = [r for r in results if r[0] != 0]
    assert len(accepted) == 1 and len(refused) == 1, results
    assert b"already exists with other content" in refused[0][2]
    assert (inbox / f"{NAME}.db").read_bytes() == accepted[0][3]
    assert sorted(os.listdir(inbox)) == [NAME + ".db", NAME + ".json"]


def name_at(generation, stamp="20261125T184816123Z"):
    return f"proxysql-ha-g{generation:010d}-{stamp}-node-a"


def test_the_inbox_quota_in_files_refuses_one_upload_too_many_with_a_clear_message(inbox, data):
    for generation in (1, 2):
        assert receive_with(inbox, header(name_at(generation), data) + data, "--max-files", "2").returncode == 0
    out = receive_with(inbox, header(name_at(3), data) + data, "--max-files", "2")
    assert out.returncode == 1
    assert b"refused: inbox quota: 2 backups already (at most 2)" in out.stderr
    assert len(os.listdir(inbox)) == 4


def test_the_inbox_quota_in_bytes_refuses_an_upload_that_would_not_fit(inbox, data):
    limit = str(len(data) * 2)
    assert receive_with(inbox, header(name_at(1), data) + data, "--max-bytes", limit).returncode == 0
    out = receive_with(inbox, header(name_at(2), data) + data, "--max-bytes", limit)
    assert out.returncode == 1 and b"refused: inbox quota:" in out.stderr and b"exceeds" in out.stderr
    assert sorted(os.listdir(inbox)) == [name_at(1) + ".db", name_at(1) + ".json"]


@pytest.mark.parametrize(("stamp", "reason"), [
    ("20991231T235959999Z", b"ahead of this node's clock"),
    ("20261399T999999999Z", b"no real date"),
], ids=["future", "impossible-date"])
def test_a_name_stamped_in_the_future_or_with_no_real_date_is_refused(inbox, data, stamp, reason):
    out = receive(inbox, header(name_at(7, stamp), data) + data)
    assert out.returncode == 1 and reason in out.stderr
    assert os.listdir(inbox) == []


def test_a_deeply_nested_or_huge_manifest_is_refused(inbox, data):
    deep = json.loads('{"format": 1, "name": "%s", "x": %s}' % (NAME, "[" * 500 + "]" * 500))
    out = receive(inbox, header(NAME, data, manifest=deep) + data)
    assert out.returncode == 1 and b"nested deeper" in out.stderr
    huge = {"format": 1, "name": NAME, "x": "y" * 70000}
    out = receive(inbox, header(NAME, data, manifest=huge) + data)
    assert out.returncode == 1 and b"larger than" in out.stderr
    assert os.listdir(inbox) == []


def test_an_eleven_digit_generation_is_received(inbox, data):
    name = f"proxysql-ha-g{10_000_000_000}-20261125T184816123Z-node-a"
    assert receive(inbox, header(name, data) + data).returncode == 0
