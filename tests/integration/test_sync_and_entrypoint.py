"""The two ways the extension reaches a minion: synced from the master's file_roots, or
installed as a package that Salt's loader finds through the ``salt.loader`` entry point."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from saltfactories.utils import random_string

from tests.integration.conftest import MASTER_VIP

UTILS = ("proxysql_ha_carp", "proxysql_ha_config", "proxysql_ha_sqlite", "proxysql_ha_store")


def role_pillar(tmp_dir):
    """A ``proxysql_ha`` dict complete enough for ``role``: MASTER on ``lo``."""
    return {"vhid": 1, "interface": "lo", "vip": MASTER_VIP,
            "peer": {"transport": "local", "path": str(tmp_dir)}}


# ---- saltutil.sync_all from the master's file_roots ---------------------------------


@pytest.fixture(scope="module")
def salt_master(salt_factories, checkout):
    master = salt_factories.salt_master_daemon(
        random_string("master-"), overrides={"file_roots": {"base": [str(checkout)]}}
    )
    with master.started():
        yield master


@pytest.fixture(scope="module")
def salt_minion(salt_master, tmp_path_factory):
    minion = salt_master.salt_minion_daemon(
        random_string("minion-"),
        overrides={"enable_fqdns_grains": False,
                   "proxysql_ha": role_pillar(tmp_path_factory.mktemp("peer"))},
    )
    with minion.started():
        yield minion


@pytest.mark.integration
def test_sync_all_from_file_roots_brings_the_module_and_its_utils(salt_minion):
    salt_call = salt_minion.salt_call_cli(timeout=120)

    synced = salt_call.run("saltutil.sync_all")

    assert synced.returncode == 0, synced.stderr
    assert "modules.proxysql_ha" in synced.data["modules"]
    assert {f"utils.{name}" for name in UTILS} <= set(synced.data["utils"])
    extmods = Path(salt_minion.config["extension_modules"])
    assert (extmods / "modules" / "proxysql_ha.py").is_file()
    for name in UTILS:
        assert (extmods / "utils" / f"{name}.py").is_file()
    role = salt_call.run("proxysql_ha.role")
    assert role.returncode == 0, role.stderr
    assert role.data == "MASTER"


# ---- the salt.loader entry point of the installed package ------------------------------

# Run in a fresh interpreter with the installed wheel first on sys.path and no module_dirs or
# extmods: the loader can only find the module through the entry point. (The venv's editable
# install declares the entry point too, so the tests check where the loaded files come from.)
PROBE = """
import json, sys
import salt.config, salt.loader
scratch, pillar = sys.argv[1], json.loads(sys.argv[2])
opts = salt.config.minion_config(None)
opts.update(file_client="local", cachedir=scratch + "/cache",
            extension_modules=scratch + "/extmods", proxysql_ha=pillar)
functions = salt.loader.minion_mods(opts, utils=salt.loader.utils(opts))
role = functions["proxysql_ha.role"]
report = {"role": role(), "module_file": sys.modules[role.func.__module__].__file__}
report["utils_files"] = sorted(module.__file__ for name, module in list(sys.modules.items())
                               if name.endswith(".proxysql_ha_config"))
print(json.dumps(report))
"""


def run(argv, **kwargs):
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False,
                         **kwargs)
    assert out.returncode == 0, f"{argv} failed:\n{out.stdout}\n{out.stderr}"
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory, checkout):
    """The repository built as a wheel and installed into a directory of its own."""
    work = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    run(pip + ["wheel", "--no-deps", "-w", str(work / "dist"), str(checkout)])
    (wheel,) = (work / "dist").glob("*.whl")
    run(pip + ["install", "--no-deps", "--target", str(work / "site"), str(wheel)])
    return work / "site"


@pytest.fixture(scope="module")
def loaded_from_package(installed, tmp_path_factory):
    """What the probe saw, run with only the installed package on PYTHONPATH."""
    scratch = tmp_path_factory.mktemp("probe")
    env = dict(os.environ, PYTHONPATH=str(installed))
    out = run([sys.executable, "-c", PROBE, str(scratch), json.dumps(role_pillar(scratch))],
              env=env, cwd=scratch)
    return json.loads(out.stdout.splitlines()[-1])


def test_the_entry_point_gives_the_loader_the_installed_module(loaded_from_package, installed):
    assert loaded_from_package["role"] == "MASTER"
    assert Path(loaded_from_package["module_file"]).is_relative_to(installed)


def test_the_installed_module_uses_the_installed_utils(loaded_from_package, installed):
    assert loaded_from_package["utils_files"]
    for path in loaded_from_package["utils_files"]:
        assert Path(path).is_relative_to(installed)


def test_the_package_carries_the_utils_and_states_directories(installed):
    package = installed / "saltext" / "proxysql_ha"
    for name in UTILS:
        assert (package / "utils" / f"{name}.py").is_file()
    assert (package / "states" / "__init__.py").is_file()
    assert (package / "modules" / "proxysql_ha.py").is_file()


def test_the_package_carries_the_beacon_the_engine_and_the_license(installed):
    package = installed / "saltext" / "proxysql_ha"
    assert (package / "beacons" / "proxysql_ha.py").is_file()
    assert (package / "engines" / "proxysql_ha.py").is_file()
    licenses = list(installed.glob("saltext*proxysql_ha*.dist-info/**/LICENSE"))
    assert licenses and "Apache License" in licenses[0].read_text()
