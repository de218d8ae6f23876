"""pillar.example is the configuration's documentation: it must validate and name every key."""

import importlib.util
import re
from pathlib import Path

import salt.utils.yaml

REPO = Path(__file__).resolve().parents[2]


def _config_module():
    spec = importlib.util.spec_from_file_location(
        "proxysql_ha_config_example", REPO / "_utils" / "proxysql_ha_config.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _key_paths(mapping, prefix=""):
    for key, value in mapping.items():
        yield prefix + key
        if isinstance(value, dict):
            yield from _key_paths(value, prefix + key + ":")


def test_pillar_example_validates_as_a_linux_node_with_linux_paths():
    pillar = salt.utils.yaml.safe_load((REPO / "pillar.example").read_text())
    conf = _config_module().build(pillar["proxysql_ha"], "Debian", "proxysql-a")
    assert (conf["role_source"], conf["vip"], conf["interface"]) == ("vip", "192.0.2.50", "eth0")
    assert conf["node_id"] == "proxysql-a"
    assert conf["peer"]["host"] == "192.0.2.12"
    # as copied, every path is the Linux default: nothing FreeBSD in it
    assert conf == _config_module().build(
        {"vhid": 9, "interface": "eth0", "vip": "192.0.2.50", "peer": {"host": "192.0.2.12"},
         "formula": {"ucarp": {"src_ip": "192.0.2.11", "password": "change-me-shared-secret"}}},
        "Debian", "proxysql-a")


def test_pillar_freebsd_example_validates_as_a_freebsd_node_with_freebsd_paths():
    pillar = salt.utils.yaml.safe_load((REPO / "pillar.freebsd.example").read_text())
    conf = _config_module().build(pillar["proxysql_ha"], "FreeBSD", "proxysql-a")
    assert (conf["role_source"], conf["interface"], conf["vip"]) == ("freebsd_carp", "em0", None)
    assert conf["peer"]["host"] == "192.0.2.12"
    assert conf == _config_module().build(
        {"vhid": 9, "interface": "em0", "peer": {"host": "192.0.2.12"}, "formula": {"carp": "devd"}},
        "FreeBSD", "proxysql-a")
    text = (REPO / "pillar.freebsd.example").read_text()
    assert "/var/lib/" not in text and "/etc/proxysql-ha" not in text.replace("/usr/local/etc", "")


def test_pillar_example_documents_every_configuration_key():
    text = (REPO / "pillar.example").read_text()
    documented = set(re.findall(r"^\s*#?\s*([a-z_]+):", text, flags=re.MULTILINE))
    defaults = _config_module().defaults("FreeBSD")
    missing = [path for path in _key_paths(defaults) if path.split(":")[-1] not in documented]
    assert not missing, f"keys missing from pillar.example: {missing}"
