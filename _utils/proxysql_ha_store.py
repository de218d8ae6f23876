"""
The backup store: how backups are named, written, listed, judged and purged.

A backup is two files in one directory, written in this order::

    proxysql-ha-g0000000042-20261125T184816123Z-node-a.db    the SQLite copy
    proxysql-ha-g0000000042-20261125T184816123Z-node-a.json  its manifest

Both are written to a hidden temporary name (``.proxysql-ha-tmp-*``), fsynced
and renamed; the manifest comes last, so a backup without one is incomplete.
Files are 0600 and directories 0700: the copies hold MySQL credentials.
Anything not of this naming is never touched; symlinks are never followed.
"""

import datetime
import errno
import hashlib
import json
import os
import re
import stat
import tempfile

from salt.exceptions import CommandExecutionError

__virtualname__ = "proxysql_ha_store"

FORMAT = 1
PREFIX = "proxysql-ha-"
TMP_PREFIX = ".proxysql-ha-tmp-"
# Generations are written with at least 10 digits and compared as integers; up to 18
# digits, so no generation this pattern accepts is ever followed by one it refuses.
MAX_GENERATION = 10**18 - 1
NAME_RE = re.compile(
    r"^proxysql-ha-g(?P<generation>[0-9]{10,18})-(?P<stamp>[0-9]{8}T[0-9]{9}Z)"
    r"-(?P<node>[A-Za-z0-9_.-]{1,64})$",
    re.ASCII,
)
MAX_MANIFEST = 1 << 16  # bytes
MAX_NESTING = 4  # a manifest is an object holding row_counts: two levels; a little room
MANIFEST_FIELDS = {
    "format": int,
    "name": str,
    "node_id": str,
    "generation": int,
    "created": str,
    "created_ts": (int, float),
    "sha256": str,
    "size": int,
    "ddl_fingerprint": str,
    "content_sha256": str,
    "row_counts": dict,
}
_CHUNK = 1 << 20


def __virtual__():
    return __virtualname__


# ---- names -------------------------------------------------------------------


def make_name(generation, created_ts, node_id):
    if not 0 <= generation <= MAX_GENERATION:
        raise CommandExecutionError(
            f"generation {generation} is out of range (0..{MAX_GENERATION}): purge the backup "
            "and inbox dirs of the numbers that led here")
    moment = datetime.datetime.fromtimestamp(created_ts, datetime.timezone.utc)
    stamp = moment.strftime("%Y%m%dT%H%M%S") + f"{moment.microsecond // 1000:03d}Z"
    return f"{PREFIX}g{generation:010d}-{stamp}-{node_id}"


def parse_name(name):
    """``(generation, stamp, node)`` of a backup's base name, or None."""
    match = NAME_RE.fullmatch(name) if isinstance(name, str) else None
    if not match or _stamp_ts(match.group("stamp")) is None:
        return None
    return int(match.group("generation")), match.group("stamp"), match.group("node")


def _stamp_ts(stamp):
    """POSIX time of a ``YYYYmmddTHHMMSSfffZ`` stamp, or None when it is no real UTC time."""
    try:
        moment = datetime.datetime.strptime(stamp[:15], "%Y%m%dT%H%M%S").replace(
            tzinfo=datetime.timezone.utc)
    except ValueError:
        return None
    return moment.timestamp() + int(stamp[15:18]) / 1000.0


def utc_iso(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat(
        timespec="milliseconds"
    )


# ---- listing -------------------------------------------------------------------


def scan(directory):
    """
    Look at a backup directory without following symlinks.

    Returns ``{"backups": {base: {"db": bool, "json": bool}}, "tmp": [names],
    "symlinks": [names]}``; files of any other naming are ignored.
    """
    found = {"backups": {}, "tmp": [], "symlinks": []}
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return found
    for entry in entries:
        name = entry.name
        if name.startswith(TMP_PREFIX):
            if entry.is_file(follow_symlinks=False):
                found["tmp"].append(name)
            continue
        base, ext = os.path.splitext(name)
        if ext not in (".db", ".json") or not parse_name(base):
            continue
        if entry.is_symlink():
            found["symlinks"].append(name)
            continue
        if entry.is_file(follow_symlinks=False):
            found["backups"].setdefault(base, {"db": False, "json": False})[ext[1:]] = True
    return found


def newest_first(bases):
    """Sort base names newest first: by generation, then by time stamp."""
    return sorted(bases, key=lambda b: parse_name(b)[:2], reverse=True)


def max_generation(*directories):
    best = 0
    for directory in directories:
        for base in scan(directory)["backups"]:
            best = max(best, parse_name(base)[0])
    return best


# ---- manifests ---------------------------------------------------------------


def read_manifest(path):
    """Parse and check a manifest; raise ``ValueError`` with the reason."""
    try:
        with open_regular(path) as handle:
            raw = handle.read(MAX_MANIFEST + 1)
    except FileNotFoundError as exc:
        raise ValueError("manifest missing") from exc
    except OSError as exc:
        raise ValueError(f"manifest unreadable: {exc.strerror or exc}") from exc
    return parse_manifest(raw)


def parse_manifest(raw):
    """Check a manifest's bytes: bounded in size and nesting, finite numbers, every field typed."""
    if len(raw) > MAX_MANIFEST:
        raise ValueError(f"manifest larger than {MAX_MANIFEST} bytes")
    depth = nesting(raw)
    if depth > MAX_NESTING:
        raise ValueError(f"manifest nested {depth} levels deep (at most {MAX_NESTING})")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"manifest is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError("manifest is not a JSON object")
    for key, kind in MANIFEST_FIELDS.items():
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise ValueError(f"manifest field {key!r} is missing or of the wrong type")
    if data["format"] != FORMAT:
        raise ValueError(f"manifest format {data['format']} is not supported (want {FORMAT})")
    counts = data["row_counts"]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts.values()):
        raise ValueError("manifest field 'row_counts' holds something other than counts")
    return data


def _refuse_constant(name):
    raise ValueError(f"{name} is not a number a manifest may hold")


def nesting(raw):
    """How deeply JSON text nests arrays and objects (strings skipped), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def name_facts(base):
    """What a backup's name says, to hold a manifest against: generation, time, node."""
    generation, stamp, node = parse_name(base)
    return {"name_generation": generation, "name_ts": _stamp_ts(stamp), "name_node": node}


# ---- files -------------------------------------------------------------------


def ensure_dir(path):
    """Create ``path`` 0700 if missing; tighten it to 0700 if it is looser."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise CommandExecutionError(f"cannot create directory {path}: {exc.strerror}") from exc
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise CommandExecutionError(f"{path} exists and is not a directory (or is a symlink)")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def new_tmp(directory, suffix=""):
    """Create an empty 0600 temporary file of our naming in ``directory``."""
    fd, path = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=suffix, dir=directory)
    os.close(fd)
    os.chmod(path, 0o600)
    return path


def fsync_file(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp_path, final_path):
    """fsync a finished temporary file and rename it into place atomically."""
    fsync_file(tmp_path)
    os.replace(tmp_path, final_path)
    fsync_dir(os.path.dirname(final_path))


def write_json(directory, filename, data):
    """Write ``data`` as ``directory/filename`` via a temporary file."""
    tmp = new_tmp(directory, ".json")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.write("\n")
        publish(tmp, os.path.join(directory, filename))
    except BaseException:
        remove_quietly(tmp)
        raise


def read_json(path, default=None):
    """A small state file, or ``default`` when it is absent or unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return default


def remove_quietly(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def open_regular(path):
    """
    Open a regular file for reading, never following a symlink and never
    blocking on a FIFO; anything else raises ``OSError``.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, f"{path} is not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def sha256_file(path):
    """``(sha256 hex, size)`` of a regular file, never following a symlink."""
    digest = hashlib.sha256()
    size = 0
    with open_regular(path) as handle:
        while True:
            chunk = handle.read(_CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def copy_file(source, target_dir, final_name):
    """Copy a file into ``target_dir`` under a temporary name, then publish it."""
    tmp = new_tmp(target_dir)
    try:
        with open(source, "rb") as src, open(tmp, "wb") as dst:
            while True:
                chunk = src.read(_CHUNK)
                if not chunk:
                    break
                dst.write(chunk)
        publish(tmp, os.path.join(target_dir, final_name))
    except BaseException:
        remove_quietly(tmp)
        raise


def is_enospc(exc):
    return getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "disk is full" in str(
        exc
    )


# ---- purging -------------------------------------------------------------------


def purge_plan(bases, keep, max_age, protect, ages):
    """
    Which backups to delete: all but the newest ``keep`` and those younger
    than ``max_age`` seconds, and never ``protect`` (the newest valid backup).

    ``bases`` is newest first; ``ages`` maps a base to its age in seconds.
    """
    doomed = []
    for index, base in enumerate(bases):
        if index < keep or base == protect or ages.get(base, 0) < max_age:
            continue
        doomed.append(base)
    return doomed


def stale_tmp(directory, names, now, older_than):
    """Temporary files left over for longer than ``older_than`` seconds."""
    stale = []
    for name in names:
        try:
            st = os.lstat(os.path.join(directory, name))
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode) and now - st.st_mtime > older_than:
            stale.append(name)
    return stale


def stamp_ts(base):
    """The creation time encoded in a backup's name, as a POSIX timestamp."""
    return _stamp_ts(parse_name(base)[1])


def json_line(data):
    """One compact JSON line, as bytes: the header of a shipped backup."""
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8") + b"\n"
