"""A full disk: backups and restores fail cleanly, leaving what was there intact.

The directories are small tmpfs mounts, so this needs root (and a kernel that lets it mount).
"""

import json
import os
import re
import subprocess

import pytest
from salt.exceptions import CommandExecutionError

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")

TMP_PREFIX = ".proxysql-ha-tmp-"


@pytest.fixture
def tmpfs():
    """``tmpfs(directory, size)`` mounts a tmpfs of ``size`` (``mount -o size=``) there; unmounted at the end."""
    mounted = []

    def mount(directory, size):
        directory.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(directory)],
                                capture_output=True, text=True, timeout=30, check=False)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs on {directory}: {result.stderr.strip()}")
        mounted.append(directory)

    yield mount
    for directory in reversed(mounted):
        if subprocess.run(["umount", str(directory)], timeout=30, check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", str(directory)], timeout=30, check=True)  # never leave it mounted


def fill(directory, leave):
    """Fill the file system of ``directory`` with one file until about ``leave`` bytes are free."""
    st = os.statvfs(directory)
    with open(directory / "filler", "wb") as handle:
        handle.write(b"\0" * (st.f_bavail * st.f_frsize - leave))


def temporary_files(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(TMP_PREFIX))


def test_backup_on_a_full_disk_raises_and_keeps_the_earlier_backups(pair, tmpfs):
    a = pair.a
    tmpfs(a.backup_dir, "512k")
    first = a.ha.backup()["name"]
    a.save_users(300)  # the next backup no longer fits
    before = pair.files()

    with pytest.raises(CommandExecutionError, match=f"no space left in {re.escape(str(a.backup_dir))}"):
        a.ha.backup()

    assert temporary_files(a.backup_dir) == []
    assert a.backups() == [first]
    assert pair.files() == before


@pytest.fixture
def b_datadir_on_tmpfs(nodes, tmpfs):
    """B's datadir is a 1 MiB tmpfs; request it before ``pair``, which builds B's database in it."""
    tmpfs(nodes[1].datadir, "1m")
    yield
    nodes[1].standin("stop")  # a running stand-in keeps the mount busy


def test_restore_on_a_full_datadir_fails_and_proxysql_runs_on_the_untouched_db(b_datadir_on_tmpfs, pair):
    a, b = pair.a, pair.b
    a.save_users(300)
    a.ha.ship()
    assert b.standin("start").returncode == 0
    fill(b.datadir, leave=64 * 1024)
    live = b.live_db.read_bytes()

    with pytest.raises(CommandExecutionError, match="no space left") as failure:
        b.ha.restore(start=True)

    assert "the current database was left untouched; ProxySQL was started on it" in str(failure.value)
    assert b.live_db.read_bytes() == live
    assert b.running()
    assert json.loads((b.datadir / "standin-loaded.json").read_text())["config"]["mysql_users"] == 5
    assert temporary_files(b.datadir) == []
    assert list(b.datadir.glob("proxysql.db.pre-restore-*")) == []
