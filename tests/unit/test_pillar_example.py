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


def test_pillar_example_validates_as_a_freebsd_node():
    pillar = salt.utils.yaml.safe_load((REPO / "pillar.example").read_text())
    conf = _config_module().build(pillar["proxysql_ha"], "FreeBSD", "proxysql-a")
    assert conf["role_source"] == "freebsd_carp"
    assert conf["node_id"] == "proxysql-a"
    assert conf["peer"]["host"] == "192.0.2.12"


def test_pillar_example_documents_every_configuration_key():
    text = (REPO / "pillar.example").read_text()
    documented = set(re.findall(r"^\s*#?\s*([a-z_]+):", text, flags=re.MULTILINE))
    defaults = _config_module().defaults("FreeBSD")
    missing = [path for path in _key_paths(defaults) if path.split(":")[-1] not in documented]
    assert not missing, f"keys missing from pillar.example: {missing}"
