"""A masterless ``salt-call --local state.apply proxysql_ha`` with no minion daemon: refused at once.

The schedule jobs and the engine live in a running salt-minion daemon; without one, Salt's
``schedule.present`` fails "Failed to add job" after the files were already written. The
formula refuses before it changes anything, with one failed state naming the reason.
"""

import subprocess
import time

from tests.integration.conftest import (
    BACKUP_VIP,
    REPO,
    SALT_CALL,
    make_node,
    write_minion_config,
)


def test_a_masterless_apply_without_a_daemon_fails_at_once_and_changes_nothing(tmp_path, schema_file):
    pillar = make_node(tmp_path / "node", "node-m", BACKUP_VIP, schema_file,
                       {"transport": "local", "path": str(tmp_path / "peer")})
    pillar["formula"] = {"carp": "none", "restart_minion": False,
                         "libexec_dir": str(tmp_path / "libexec"), "etc_dir": str(tmp_path / "etc"),
                         "receive_user": "proxysql-ha-masterless"}
    confdir = write_minion_config(tmp_path / "conf", "node-m", pillar)
    (confdir / "file_roots" / "proxysql_ha").symlink_to(REPO / "proxysql_ha")
    begin = time.monotonic()

    out = subprocess.run([str(SALT_CALL), "--local", "-c", str(confdir), "state.apply", "proxysql_ha",
                          "--out=json"], capture_output=True, text=True, timeout=300, check=False)

    took = time.monotonic() - begin
    assert out.returncode != 0
    assert "needs a running salt-minion daemon" in out.stdout
    assert "Failed to add job" not in out.stdout
    assert not (tmp_path / "libexec").exists() and not (tmp_path / "etc").exists()
    print(f"\nmasterless apply refused in {took:.1f} s")
