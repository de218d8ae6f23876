"""Shipping over a real OpenSSH server on 127.0.0.1, to the receiver as the key's forced command.

The module runs through Salt's loader on a MASTER node; the peer is an sshd whose only
authorized key is the shipping key, restricted to ``proxysql-ha-receive <inbox>``.
"""

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from salt.exceptions import CommandExecutionError

from tests.integration.conftest import (
    BACKUP_VIP,
    MASTER_VIP,
    RECEIVER,
    current_user_and_group,
    make_node,
    node_loaders,
    write_minion_config,
)
from standin import sshd

pytestmark = pytest.mark.skipif(sshd.missing() is not None, reason=str(sshd.missing()))

HANG_GUARD = 30  # seconds: far above the 3 s connect timeout, only catches a hang


@pytest.fixture
def shipping_key(tmp_path):
    """The shipping identity: ``(private key path, public key line)``."""
    path = tmp_path / "id_ed25519"
    return path, sshd.generate_key(path, "proxysql-ha-ship")


@pytest.fixture
def inbox(tmp_path):
    path = tmp_path / "peer-inbox"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def server(tmp_path, shipping_key, inbox):
    """A running sshd that lets the shipping key run the receiver into ``inbox``, nothing else."""
    instance = sshd.Sshd(tmp_path / "sshd")
    instance.authorize(shipping_key[1], f"{sys.executable} {RECEIVER} {inbox}")
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
def known_hosts(tmp_path, server):
    path = tmp_path / "known_hosts"
    path.write_text(server.known_hosts_line() + "\n", encoding="utf-8")
    return path


@pytest.fixture
def sender(tmp_path, schema_file, server, shipping_key, known_hosts):
    """The MASTER node that ships over ssh: its ``pillar`` and its loaded ``ha`` module."""
    peer = {
        "transport": "ssh",
        "host": "127.0.0.1",
        "port": server.port,
        "user": current_user_and_group()[0],
        "identity_file": str(shipping_key[0]),
        "known_hosts": str(known_hosts),
        "connect_timeout": 3,
        "timeout": 20,
        "receive_command": "proxysql-ha-receive",
    }
    pillar = make_node(tmp_path / "node-a", "node-a", MASTER_VIP, schema_file, peer)
    loaders = node_loaders(write_minion_config(tmp_path / "conf-a", "node-a", pillar))
    return SimpleNamespace(pillar=pillar, ha=loaders.modules.proxysql_ha)


def ship_state(pillar):
    return json.loads((Path(pillar["state_dir"]) / "ship.json").read_text(encoding="utf-8"))


def test_ship_over_ssh_delivers_a_backup_the_peer_verifies_as_valid(sender, inbox, tmp_path,
                                                                    schema_file):
    report = sender.ha.ship()

    assert report["shipped"] is True, report
    name = report["name"]
    assert sorted(os.listdir(inbox)) == [name + ".db", name + ".json"]
    for entry in inbox.iterdir():
        assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    sent = Path(sender.pillar["backup_dir"]) / (name + ".db")
    assert (inbox / (name + ".db")).read_bytes() == sent.read_bytes()
    assert ship_state(sender.pillar)["ok"] is True

    receiver = make_node(tmp_path / "node-b", "node-b", BACKUP_VIP, schema_file,
                         {"transport": "local", "path": str(tmp_path / "unused")})
    receiver["inbox_dir"] = str(inbox)
    peer_ha = node_loaders(write_minion_config(tmp_path / "conf-b", "node-b", receiver))
    verdict = peer_ha.modules.proxysql_ha.verify(name=name)
    assert verdict["valid"] is True, verdict


def test_ship_to_a_host_with_an_unknown_host_key_fails_and_is_reported(sender, inbox,
                                                                      known_hosts):
    known_hosts.write_text("", encoding="utf-8")

    with pytest.raises(CommandExecutionError, match="Host key verification failed"):
        sender.ha.ship()

    assert os.listdir(inbox) == []
    state = ship_state(sender.pillar)
    assert state["ok"] is False
    assert "Host key verification failed" in state["error"]
    assert sender.ha.check() is False
    kinds = [problem["kind"] for problem in sender.ha.status()["problems"]]
    assert "ship_failed" in kinds


def test_ship_while_sshd_is_down_fails_quickly_and_the_next_ship_succeeds(sender, server, inbox):
    server.stop()
    begin = time.monotonic()
    with pytest.raises(CommandExecutionError, match="Connection refused"):
        sender.ha.ship()
    assert time.monotonic() - begin < HANG_GUARD
    assert os.listdir(inbox) == []

    server.start()
    report = sender.ha.ship()

    assert report["shipped"] is True, report
    assert sorted(os.listdir(inbox)) == [report["name"] + ".db", report["name"] + ".json"]
    assert ship_state(sender.pillar)["ok"] is True


def test_the_shipping_key_cannot_run_a_shell_command(server, shipping_key, known_hosts, inbox):
    argv = server.ssh_argv(shipping_key[0], known_hosts, current_user_and_group()[0], "id")

    out = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         timeout=HANG_GUARD, check=False)

    assert "uid=" not in out.stdout + out.stderr
    assert out.returncode != 0
    assert "proxysql-ha-receive: refused: no header line" in out.stderr
    assert os.listdir(inbox) == []
