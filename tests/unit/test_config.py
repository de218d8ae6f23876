"""The ``proxysql_ha`` pillar: documented defaults per OS, and a refusal naming the key for each bad value."""

import copy
import re

import proxysql_ha_config
import pytest
from salt.exceptions import SaltInvocationError

MINION_ID = "node-a"
# The smallest pillar a Linux minion (role_source vip) accepts.
LINUX_PILLAR = {"vhid": 9, "interface": "eth0", "vip": "192.0.2.50", "peer": {"host": "proxysql2.example.test"}}
# The smallest pillar a FreeBSD minion (role_source freebsd_carp, no vip) accepts.
FREEBSD_PILLAR = {"vhid": 9, "interface": "em0", "peer": {"host": "proxysql2.example.test"}}
class _Drop:
    """A value in ``changes`` that removes the key (its repr is stable: test ids are built from it)."""

    def __repr__(self):
        return "DROP"


DROP = _Drop()
FULL_COMMANDS = {
    "start": ["/usr/sbin/service", "proxysql", "start"],
    "stop": ["/usr/sbin/service", "proxysql", "stop"],
    "status": ["/usr/sbin/service", "proxysql", "status"],
}


def changed(base, changes):
    """A deep copy of ``base`` with ``changes`` merged in, mapping into mapping; ``DROP`` removes a key."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if value is DROP:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = changed(out[key], value)
        else:
            out[key] = value
    return out


def build_linux(changes):
    return proxysql_ha_config.build(changed(LINUX_PILLAR, changes), "Debian", MINION_ID)


@pytest.mark.parametrize(
    ("os_family", "pillar", "datadir", "base", "role_source", "etc"),
    [
        (
            "FreeBSD",
            FREEBSD_PILLAR,
            "/var/db/proxysql",
            "/var/db/proxysql-ha",
            "freebsd_carp",
            "/usr/local/etc/proxysql-ha",
        ),
        ("Debian", LINUX_PILLAR, "/var/lib/proxysql", "/var/lib/proxysql-ha", "vip", "/etc/proxysql-ha"),
        ("RedHat", LINUX_PILLAR, "/var/lib/proxysql", "/var/lib/proxysql-ha", "vip", "/etc/proxysql-ha"),
    ],
)
def test_defaults_follow_the_os_family(os_family, pillar, datadir, base, role_source, etc):
    conf = proxysql_ha_config.build(copy.deepcopy(pillar), os_family, MINION_ID)
    assert conf["datadir"] == datadir
    assert conf["role_source"] == role_source
    assert (conf["backup_dir"], conf["inbox_dir"], conf["state_dir"]) == (
        f"{base}/outgoing",
        f"{base}/incoming",
        f"{base}/state",
    )
    assert conf["peer"]["identity_file"] == f"{etc}/id_ed25519"
    assert conf["peer"]["known_hosts"] == f"{etc}/known_hosts"


def test_build_is_the_defaults_with_the_pillar_values_over_them():
    expected = proxysql_ha_config.defaults("Debian")
    expected.update(vhid=9, interface="eth0", vip="192.0.2.50", node_id=MINION_ID)
    expected["peer"]["host"] = "proxysql2.example.test"
    expected["peer"].update(identity_file="/etc/proxysql-ha/id_ed25519",
                            known_hosts="/etc/proxysql-ha/known_hosts")
    expected["pidfile"] = "/var/lib/proxysql/proxysql.pid"  # ProxySQL's own, in its datadir
    assert build_linux({}) == expected


def test_etc_dir_moves_the_identity_file_and_known_hosts():
    conf = build_linux({"formula": {"etc_dir": "/opt/pha/etc"}})
    assert conf["peer"]["identity_file"] == "/opt/pha/etc/id_ed25519"
    assert conf["peer"]["known_hosts"] == "/opt/pha/etc/known_hosts"
    given = build_linux({"formula": {"etc_dir": "/opt/pha/etc"},
                         "peer": {"identity_file": "/root/key", "known_hosts": "/root/kh"}})
    assert (given["peer"]["identity_file"], given["peer"]["known_hosts"]) == ("/root/key", "/root/kh")


@pytest.mark.parametrize("root_dir", ["/", "", None, "//"])
def test_a_root_dir_of_slash_changes_no_default(root_dir):
    plain = build_linux({})
    assert proxysql_ha_config.build(copy.deepcopy(LINUX_PILLAR), "Debian", MINION_ID,
                                    root_dir=root_dir) == plain


def test_salt_root_dir_prefixes_the_extensions_own_directories_only():
    conf = proxysql_ha_config.build(copy.deepcopy(LINUX_PILLAR), "Debian", MINION_ID,
                                    root_dir="/srv/minion-root/")
    assert conf["state_dir"] == "/srv/minion-root/var/lib/proxysql-ha/state"
    assert conf["backup_dir"] == "/srv/minion-root/var/lib/proxysql-ha/outgoing"
    assert conf["inbox_dir"] == "/srv/minion-root/var/lib/proxysql-ha/incoming"
    assert conf["formula"]["etc_dir"] == "/srv/minion-root/etc/proxysql-ha"
    assert conf["peer"]["identity_file"] == "/srv/minion-root/etc/proxysql-ha/id_ed25519"
    # ProxySQL's datadir and the libexec dir are system locations: not moved
    assert conf["datadir"] == "/var/lib/proxysql"
    assert conf["formula"]["libexec_dir"] == "/usr/local/libexec"
    # a value the pillar gives is taken as it is
    given = proxysql_ha_config.build(changed(LINUX_PILLAR, {"state_dir": "/data/state"}), "Debian",
                                     MINION_ID, root_dir="/srv/minion-root")
    assert given["state_dir"] == "/data/state"


def test_metrics_are_off_by_default_and_checked():
    assert build_linux({})["metrics"] == {"textfile_dir": None, "file_name": "proxysql_ha.prom"}
    assert build_linux({"metrics": {"textfile_dir": "/var/lib/node_exporter"}})["metrics"][
        "textfile_dir"] == "/var/lib/node_exporter"
    for bad, key in (({"textfile_dir": "relative"}, "metrics:textfile_dir"),
                     ({"textfile_dir": "/var/lib"}, "metrics:textfile_dir"),
                     ({"file_name": "x.txt"}, "metrics:file_name"),
                     ({"file_name": "../x.prom"}, "metrics:file_name"),
                     ({"interval": 5}, "metrics:interval")):
        with pytest.raises(SaltInvocationError, match=re.escape(key)):
            build_linux({"metrics": bad})


def test_the_pid_file_follows_the_datadir_unless_given():
    assert build_linux({"datadir": "/srv/proxysql"})["pidfile"] == "/srv/proxysql/proxysql.pid"
    assert build_linux({"pidfile": "/run/proxysql/proxysql.pid"})["pidfile"] == "/run/proxysql/proxysql.pid"
    assert build_linux({"pidfile": False})["pidfile"] is False  # the status command tells


def test_a_nested_value_keeps_its_siblings_defaults():
    conf = build_linux({"retention": {"keep": 3}, "peer": {"port": 2222}})
    defaults = proxysql_ha_config.defaults("Debian")
    assert conf["retention"] == dict(defaults["retention"], keep=3)
    assert conf["peer"]["port"] == 2222
    assert conf["peer"]["user"] == defaults["peer"]["user"]


def test_build_leaves_the_pillar_value_unchanged():
    raw = changed(LINUX_PILLAR, {"commands": FULL_COMMANDS, "retention": {"keep": 3}})
    before = copy.deepcopy(raw)
    proxysql_ha_config.build(raw, "Debian", MINION_ID)
    assert raw == before


def test_node_id_falls_back_to_the_minion_id():
    assert proxysql_ha_config.build(copy.deepcopy(LINUX_PILLAR), "Debian", "proxysql1.example.test")[
        "node_id"
    ] == "proxysql1.example.test"


def test_node_id_from_the_pillar_wins_over_the_minion_id():
    assert build_linux({"node_id": "left"})["node_id"] == "left"


def test_a_minion_id_that_is_no_node_name_is_refused_naming_node_id():
    with pytest.raises(SaltInvocationError, match=re.escape("'proxysql_ha:node_id'")):
        proxysql_ha_config.build(copy.deepcopy(LINUX_PILLAR), "Debian", "web 1; reboot")


@pytest.mark.parametrize(
    ("os_family", "changes"),
    [
        pytest.param("Debian", {"vhid": 1}, id="vhid-1"),
        pytest.param("Debian", {"vhid": 255}, id="vhid-255"),
        pytest.param("Debian", {"vip": "2001:db8::50"}, id="ipv6-vip"),
        pytest.param("Debian", {"interface": "enp3s0f1.100"}, id="vlan-interface"),
        pytest.param("Debian", {"settle": 0, "settle_timeout": 0.1}, id="no-settle"),
        pytest.param("Debian", {"commands": FULL_COMMANDS}, id="all-three-commands"),
        pytest.param("Debian", {"pidfile": "/run/proxysql.pid"}, id="pidfile"),
        pytest.param("Debian", {"schedule": {"engine_check_interval": 0}}, id="engine-checks-off"),
        pytest.param("Debian", {"schedule": {"engine_check_interval": 0.5}}, id="engine-checks-0.5"),
        pytest.param("Debian", {"schema_fingerprint": "0123456789abcdef" * 4}, id="schema-fingerprint"),
        pytest.param("Debian", {"peer": {"transport": "local", "path": "/srv/peer/incoming"}}, id="local-peer"),
        pytest.param("Debian", {"peer": {"host": "2001:db8::12", "port": 65535}}, id="ipv6-peer"),
        pytest.param("FreeBSD", {"vip": DROP}, id="freebsd-carp-needs-no-vip"),
        pytest.param("FreeBSD", {"role_source": "vip", "interface": "carp0"}, id="freebsd-vip-source"),
    ],
)
def test_valid_pillars_are_accepted_as_given(os_family, changes):
    raw = changed(LINUX_PILLAR, changes)
    conf = proxysql_ha_config.build(copy.deepcopy(raw), os_family, MINION_ID)
    for key, value in raw.items():
        if isinstance(value, dict):
            assert conf[key] == dict(conf[key], **value)
        else:
            assert conf[key] == value


@pytest.mark.parametrize("raw", [None, {}, "vhid: 9", ["vhid", 9], 9], ids=repr)
def test_a_missing_or_non_mapping_pillar_is_refused_naming_proxysql_ha(raw):
    with pytest.raises(SaltInvocationError, match=re.escape("'proxysql_ha'")):
        proxysql_ha_config.build(raw, "Debian", MINION_ID)


BAD = [
    # keys that do not exist, or a mapping given something else
    ({"vhidd": 9}, "vhidd"),
    ({"peer": {"hots": "proxysql2"}}, "peer:hots"),
    ({"retention": {"keep": 3, "max_days": 2}}, "retention:max_days"),
    ({"retention": 5}, "retention"),
    ({"peer": "proxysql2.example.test"}, "peer"),
    # vhid
    ({"vhid": DROP}, "vhid"),
    ({"vhid": 0}, "vhid"),
    ({"vhid": 256}, "vhid"),
    ({"vhid": "9"}, "vhid"),
    ({"vhid": True}, "vhid"),
    ({"vhid": 9.0}, "vhid"),
    # interface
    ({"interface": DROP}, "interface"),
    ({"interface": "em0; rm -rf /"}, "interface"),
    ({"interface": "$(reboot)"}, "interface"),
    ({"interface": "em0 em1"}, "interface"),
    ({"interface": "-em0"}, "interface"),
    ({"interface": "0em"}, "interface"),
    ({"interface": ""}, "interface"),
    ({"interface": "a" * 16}, "interface"),
    ({"interface": "em0\n"}, "interface"),
    ({"interface": 0}, "interface"),
    # role source and vip
    ({"role_source": "ucarp"}, "role_source"),
    ({"vip": DROP}, "vip"),
    ({"vip": "192.0.2.500"}, "vip"),
    ({"vip": "vip.example.test"}, "vip"),
    ({"vip": "192.0.2.0/24"}, "vip"),
    ({"vip": ""}, "vip"),
    ({"vip": True}, "vip"),
    # node id
    ({"node_id": "node a"}, "node_id"),
    ({"node_id": "../node"}, "node_id"),
    ({"node_id": "n" * 65}, "node_id"),
    ({"node_id": "node-a\n"}, "node_id"),
    # directories
    ({"datadir": "var/lib/proxysql"}, "datadir"),
    ({"backup_dir": "../outgoing"}, "backup_dir"),
    ({"inbox_dir": "incoming"}, "inbox_dir"),
    ({"state_dir": ""}, "state_dir"),
    ({"datadir": 5}, "datadir"),
    ({"datadir": "/var/lib/proxysql\0"}, "datadir"),
    ({"datadir": "/"}, "datadir"),
    ({"backup_dir": "/var/lib/.."}, "backup_dir"),
    ({"state_dir": "/tmp/"}, "state_dir"),
    ({"inbox_dir": "/etc"}, "inbox_dir"),
    ({"state_dir": "//etc"}, "state_dir"),
    ({"backup_dir": "/var/lib/proxysql-ha/incoming"}, "backup_dir"),
    # owner
    ({"user": ""}, "user"),
    ({"user": "proxy sql"}, "user"),
    ({"group": "-wheel"}, "group"),
    # retention and timing
    ({"retention": {"keep": 0}}, "retention:keep"),
    ({"retention": {"keep": True}}, "retention:keep"),
    ({"retention": {"max_age": -1}}, "retention:max_age"),
    ({"retention": {"keep_pre_restore": "3"}}, "retention:keep_pre_restore"),
    ({"settle": -0.5}, "settle"),
    ({"settle": 61}, "settle"),
    ({"settle": 2, "settle_timeout": 2}, "settle_timeout"),
    ({"settle": 5, "settle_timeout": 1}, "settle_timeout"),
    ({"settle_timeout": float("nan")}, "settle_timeout"),
    ({"lock_timeout": "30"}, "lock_timeout"),
    ({"stale_after": 0}, "stale_after"),
    ({"stop_on_backup": "yes"}, "stop_on_backup"),
    # service and commands
    ({"service": {"name": "proxysql; reboot"}}, "service:name"),
    ({"service": {"timeout": 0}}, "service:timeout"),
    ({"commands": {"start": FULL_COMMANDS["start"]}}, "commands"),
    ({"commands": {"start": FULL_COMMANDS["start"], "stop": FULL_COMMANDS["stop"]}}, "commands"),
    ({"commands": "service proxysql"}, "commands"),
    ({"commands": dict(FULL_COMMANDS, start="/usr/sbin/service proxysql start")}, "commands:start"),
    ({"commands": dict(FULL_COMMANDS, status=["service", "proxysql", "status"])}, "commands:status"),
    ({"commands": dict(FULL_COMMANDS, stop=[])}, "commands:stop"),
    ({"commands": dict(FULL_COMMANDS, stop=["/usr/sbin/service", ""])}, "commands:stop"),
    ({"commands": dict(FULL_COMMANDS, stop=["/usr/sbin/service", 5])}, "commands:stop"),
    # ProxySQL's traffic address
    ({"proxysql": {"traffic_address": "127.0.0.1"}}, "proxysql:traffic_address"),
    ({"proxysql": {"traffic_address": "127.0.0.1:0"}}, "proxysql:traffic_address"),
    ({"proxysql": {"traffic_address": "127.0.0.1:65536"}}, "proxysql:traffic_address"),
    ({"proxysql": {"traffic_address": "::1:6033"}}, "proxysql:traffic_address"),
    ({"proxysql": {"traffic_address": "host name:6033"}}, "proxysql:traffic_address"),
    ({"proxysql": {"traffic_address": 6033}}, "proxysql:traffic_address"),
    ({"proxysql": {"traffic_address": None}}, "proxysql:traffic_address"),
    ({"proxysql": {"traffic_address": "AUTO"}}, "proxysql:traffic_address"),
    ({"proxysql": {"traffic": "auto"}}, "proxysql:traffic"),
    ({"proxysql": "auto"}, "proxysql"),
    # schema fingerprint and schedule
    ({"schema_fingerprint": "not-a-digest"}, "schema_fingerprint"),
    ({"schema_fingerprint": "0123456789abcdef" * 4 + "0"}, "schema_fingerprint"),
    ({"schema_fingerprint": "0123456789abcdef" * 4 + "\n"}, "schema_fingerprint"),
    ({"schema_fingerprint": "0123456789ABCDEG" * 4}, "schema_fingerprint"),
    ({"schedule": {"ship_job": ""}}, "schedule:ship_job"),
    ({"schedule": {"purge_job": "purge job"}}, "schedule:purge_job"),
    # peer
    ({"peer": {"transport": "rsync"}}, "peer:transport"),
    ({"peer": {"host": DROP}}, "peer:host"),
    ({"peer": {"host": "-oProxyCommand"}}, "peer:host"),
    ({"peer": {"host": "proxysql2 -oProxyCommand=x"}}, "peer:host"),
    ({"peer": {"port": 0}}, "peer:port"),
    ({"peer": {"port": 65536}}, "peer:port"),
    ({"peer": {"port": "22"}}, "peer:port"),
    ({"peer": {"user": "-l"}}, "peer:user"),
    ({"peer": {"identity_file": "id_ed25519"}}, "peer:identity_file"),
    ({"peer": {"known_hosts": "~/.ssh/known_hosts"}}, "peer:known_hosts"),
    ({"peer": {"connect_timeout": 0}}, "peer:connect_timeout"),
    ({"peer": {"timeout": 3601}}, "peer:timeout"),
    ({"peer": {"receive_command": "proxysql-ha-receive /tmp"}}, "peer:receive_command"),
    ({"peer": {"transport": "local"}}, "peer:path"),
    ({"peer": {"transport": "local", "path": "incoming"}}, "peer:path"),
    ({"peer": {"transport": "local", "path": "/"}}, "peer:path"),
    ({"health": {"enabled": "yes"}}, "health:enabled"),
    ({"health": {"carp": "vrrpd"}}, "health:carp"),
    ({"health": {"grace": 0}}, "health:grace"),
    ({"health": {"grace": "5"}}, "health:grace"),
    ({"health": {"hold_down": -1}}, "health:hold_down"),
    ({"health": {"ucarp_pidfile": "ucarp.pid"}}, "health:ucarp_pidfile"),
    ({"health": {"keepalived_track_file": "/tmp/x y"}}, "health:keepalived_track_file"),
    ({"health": {"interval": 5}}, "health:interval"),
    ({"pidfile": "proxysql.pid"}, "pidfile"),
    ({"pidfile": True}, "pidfile"),
    ({"pidfile": "/run/$(x).pid"}, "pidfile"),
    ({"schedule": {"engine_check_interval": 0.01}}, "schedule:engine_check_interval"),
    ({"schedule": {"engine_check_interval": "1"}}, "schedule:engine_check_interval"),
    ({"schedule": {"engine_check_interval": 61}}, "schedule:engine_check_interval"),
]


@pytest.mark.parametrize(("changes", "key"), BAD, ids=[f"{key}={changes!r}" for changes, key in BAD])
def test_a_bad_value_is_refused_naming_its_key(changes, key):
    with pytest.raises(SaltInvocationError, match=re.escape(f"'proxysql_ha:{key}'")):
        build_linux(changes)


@pytest.mark.parametrize(
    "changes",
    [
        {"state_dir": "/var/lib/proxysql/"},
        {"inbox_dir": "/var/lib/proxysql-ha/state/."},
        {"datadir": "/var/lib/proxysql-ha/outgoing"},
    ],
    ids=repr,
)
def test_two_of_the_four_directories_being_one_is_refused(changes):
    with pytest.raises(SaltInvocationError, match="four different directories"):
        build_linux(changes)


def test_the_inbox_quota_has_sane_defaults_and_is_checked_naming_the_key():
    assert build_linux({})["inbox_quota"] == {"files": 100, "bytes": 4 << 30}
    assert build_linux({"inbox_quota": {"files": 20}})["inbox_quota"] == {"files": 20, "bytes": 4 << 30}
    for bad, key in (({"files": 0}, "inbox_quota:files"), ({"bytes": "lots"}, "inbox_quota:bytes"),
                     ({"dirs": 1}, "inbox_quota:dirs")):
        with pytest.raises(SaltInvocationError, match=key):
            build_linux({"inbox_quota": bad})


@pytest.mark.parametrize("value", ["auto", "none", "127.0.0.1:6033", "proxysql1.example.test:6033", "[::1]:6033", "[fd00::5]:1"])
def test_traffic_address_accepts_auto_none_and_host_port(value):
    assert build_linux({"proxysql": {"traffic_address": value}})["proxysql"]["traffic_address"] == value


def test_traffic_address_defaults_to_auto():
    assert build_linux({})["proxysql"] == {"traffic_address": "auto"}


def test_health_defaults_follow_the_os_family():
    linux = build_linux({})["health"]
    freebsd = proxysql_ha_config.build(copy.deepcopy(FREEBSD_PILLAR), "FreeBSD", MINION_ID)["health"]
    assert (linux["enabled"], linux["grace"], linux["hold_down"]) == (True, 5.0, 30.0)
    assert linux["ucarp_pidfile"] == "/run/proxysql-ha-ucarp.pid"
    assert linux["keepalived_track_file"] == "/var/lib/proxysql-ha/proxysql-down"
    assert freebsd["ucarp_pidfile"] == "/var/run/proxysql-ha-ucarp.pid"


@pytest.mark.parametrize(
    ("os_family", "changes", "carp"),
    [
        ("FreeBSD", {"role_source": "freebsd_carp"}, "freebsd"),
        ("Debian", {}, "ucarp"),
        ("Debian", {"formula": {"carp": "keepalived"}}, "keepalived"),
        ("Debian", {"formula": {"carp": "none"}}, None),
        ("Debian", {"health": {"carp": "none"}}, None),
        ("Debian", {"health": {"carp": "keepalived"}}, "keepalived"),
    ],
)
def test_the_way_the_vip_is_given_up_follows_the_carp_wiring(os_family, changes, carp):
    conf = proxysql_ha_config.build(changed(LINUX_PILLAR, changes), os_family, MINION_ID)
    assert proxysql_ha_config.health_carp(conf, os_family) == carp


def test_pillar_data_salt_masks_is_plain_in_the_configuration():
    from salt.utils.secret import hide  # pylint: disable=import-outside-toplevel

    conf = proxysql_ha_config.build(hide(changed(LINUX_PILLAR, {"commands": FULL_COMMANDS})), "Debian", MINION_ID)

    assert f"{conf['commands']['start']}" == "['/usr/sbin/service', 'proxysql', 'start']"
    assert type(conf["commands"]) is dict and type(conf["commands"]["start"]) is list


def test_standby_defaults_to_cold_and_warm_runs_proxysql_on_the_backup():
    assert build_linux({})["standby"] == "cold"
    assert build_linux({})["stop_on_backup"] is True
    warm = build_linux({"standby": "warm"})
    assert (warm["standby"], warm["stop_on_backup"]) == ("warm", False)
    assert build_linux({})["admin"]["enabled"] is False
    assert warm["admin"]["enabled"] is True  # applied through the admin interface


@pytest.mark.parametrize("changes", [{"standby": "hot"}, {"standby": "warm", "stop_on_backup": True},
                                     {"standby": "warm", "admin": {"enabled": False}}])
def test_a_standby_that_is_not_cold_or_warm_or_contradicts_stop_on_backup_is_refused(changes):
    with pytest.raises(SaltInvocationError, match="proxysql_ha:(standby|stop_on_backup|admin:enabled)"):
        build_linux(changes)
