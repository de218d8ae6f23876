"""The README's Operations block, line by line, through ``salt-call`` on both nodes of a pair.

The block is read from README.md at test time, so the README cannot drift from what the
module accepts: every line must be one ``salt-call`` command (no ``|`` alternatives, no
``[optional]`` brackets) and must exit 0 on the MASTER in office and on the BACKUP.
"""

import inspect
import re
import shlex
import subprocess

import pytest

from tests.integration.conftest import (
    BACKUP_VIP,
    MASTER_VIP,
    REPO,
    SALT_CALL,
    make_node,
    node_loaders,
    stop_standin,
    write_minion_config,
)


def blocks(section):
    """The ``sh`` code blocks of the README section titled ``section``, as lists of lines."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    body = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## )", text, flags=re.M | re.S).group(1)
    return [block.strip().splitlines() for block in re.findall(r"```sh\n(.*?)```", body, flags=re.S)]


def argv(line, confdir):
    words = shlex.split(line, comments=True)
    assert words[0] == "salt-call" and words[1].startswith("proxysql_ha."), line
    return [str(SALT_CALL), "--local", "-c", str(confdir), *words[1:]]


@pytest.fixture(scope="module")
def pair(tmp_path_factory, schema_file):
    """node-a: MASTER in office, ProxySQL (the stand-in) running; node-b: BACKUP with A's backup."""
    root = tmp_path_factory.mktemp("readme-pair")
    b = make_node(root / "node-b", "node-b", BACKUP_VIP, schema_file,
                  {"transport": "local", "path": str(root / "node-a" / "incoming")})
    a = make_node(root / "node-a", "node-a", MASTER_VIP, schema_file,
                  {"transport": "local", "path": b["inbox_dir"]})
    confs = {"node-a": write_minion_config(root / "conf-a", "node-a", a),
             "node-b": write_minion_config(root / "conf-b", "node-b", b)}
    for command in ("promote", "ship"):
        out = subprocess.run(argv(f"salt-call proxysql_ha.{command}", confs["node-a"]),
                             capture_output=True, text=True, timeout=120, check=False)
        assert out.returncode == 0, out.stderr
    yield confs
    stop_standin(a)
    stop_standin(b)


def test_the_operations_block_is_one_pasteable_command_per_line():
    first = blocks("Operations")[0]
    assert len(first) >= 10
    for line in first:
        assert line.startswith("salt-call proxysql_ha."), line
        assert "|" not in line and "[" not in line, line


@pytest.mark.parametrize("node", ["node-a", "node-b"])
def test_every_line_of_the_operations_block_runs_and_exits_0(pair, node):
    failed = []
    for line in blocks("Operations")[0]:
        out = subprocess.run(argv(line, pair[node]), capture_output=True, text=True, timeout=120,
                             check=False)
        if out.returncode != 0:
            failed.append((line, out.returncode, out.stdout[-400:], out.stderr[-400:]))
    assert failed == []


def test_every_command_of_the_by_hand_block_is_a_function_with_those_arguments(pair):
    modules = node_loaders(pair["node-b"]).modules
    for line in blocks("Operations")[1]:
        words = shlex.split(line, comments=True)
        assert words[0] == "salt-call", line
        function = modules[words[1]]
        accepted = inspect.signature(function).parameters
        for word in words[2:]:
            assert word.split("=", 1)[0] in accepted, line
