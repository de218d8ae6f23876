"""The CARP role: FreeBSD's ``ifconfig`` output (real samples) and Salt's ``network.interfaces`` data."""

import proxysql_ha_carp
import pytest
import salt.utils.network
import salt.utils.platform
from salt.exceptions import CommandExecutionError

SAMPLE_ROLES = [
    ("ifconfig-13-master.txt", 9, "MASTER"),
    ("ifconfig-14-two-vhids.txt", 9, "BACKUP"),
    ("ifconfig-14-two-vhids.txt", 10, "MASTER"),
    ("ifconfig-14-init-no-carrier.txt", 9, "INIT"),
    ("ifconfig-15-vrrp-master.txt", 9, "MASTER"),
]
NO_CARP_SAMPLE = "ifconfig-no-carp.txt"
KEY_LINE = '\tcarp: MASTER vhid 9 advbase 1 advskew 0 key "secret"\n'

# The shape of Salt's network.interfaces(): a down interface has no addresses at all.
INTERFACES = {
    "lo": {
        "up": True,
        "hwaddr": "00:00:00:00:00:00",
        "inet": [{"address": "127.0.0.1", "netmask": "255.0.0.0", "broadcast": None, "label": "lo"}],
        "inet6": [{"address": "::1", "prefixlen": "128", "scope": "host"}],
    },
    "eth0": {
        "up": True,
        "hwaddr": "52:54:00:12:34:56",
        "inet": [{"address": "192.0.2.11", "netmask": "255.255.255.0", "broadcast": "192.0.2.255", "label": "eth0"}],
        "secondary": [
            {"type": "inet", "address": "192.0.2.50", "netmask": "255.255.255.255", "broadcast": None, "label": "eth0"}
        ],
        "inet6": [
            {"address": "2001:db8::50", "prefixlen": "64", "scope": "global"},
            {"address": "fe80::5054:ff:fe12:3456%eth0", "prefixlen": "64", "scope": "link"},
        ],
    },
    "eth1": {"up": False, "hwaddr": "52:54:00:12:34:57"},
    "eth2": {
        "up": True,
        "hwaddr": "52:54:00:12:34:58",
        "inet": [{"address": "", "label": "eth2"}, {"address": "not-an-address", "label": "eth2"}, {}],
        "inet6": None,
    },
}


@pytest.fixture
def read_sample(shared_dir):
    """``read_sample(name)``: the text of a shared FreeBSD ``ifconfig`` sample."""

    def read(name):
        return (shared_dir / "freebsd" / name).read_text(encoding="utf-8")

    return read


def test_every_ifconfig_sample_has_a_test(shared_dir):
    samples = {path.name for path in (shared_dir / "freebsd").glob("ifconfig-*.txt")}
    assert samples == {name for name, _vhid, _role in SAMPLE_ROLES} | {NO_CARP_SAMPLE}


@pytest.mark.parametrize(("name", "vhid", "role"), SAMPLE_ROLES)
def test_parse_ifconfig_reads_the_role_of_the_vhid_from_a_real_sample(read_sample, name, vhid, role):
    assert proxysql_ha_carp.parse_ifconfig(read_sample(name), vhid) == role


def test_parse_ifconfig_refuses_an_interface_without_carp(read_sample):
    with pytest.raises(CommandExecutionError, match="no CARP vhid 9"):
        proxysql_ha_carp.parse_ifconfig(read_sample(NO_CARP_SAMPLE), 9)


def test_parse_ifconfig_refuses_a_vhid_the_interface_does_not_have(read_sample):
    with pytest.raises(CommandExecutionError, match="no CARP vhid 99"):
        proxysql_ha_carp.parse_ifconfig(read_sample("ifconfig-14-two-vhids.txt"), 99)


@pytest.mark.parametrize(
    "text",
    [
        "\tcarp: MASTER vhid 19 advbase 1 advskew 0\n",
        "\tcarp: MASTER vhid 90 advbase 1 advskew 0\n",
        "\tinet 192.0.2.50 netmask 0xffffffff broadcast 192.0.2.50 vhid 9\n",
        "\tcarp: MASTER\n",
        "",
    ],
    ids=["vhid-19", "vhid-90", "inet-line-only", "no-vhid", "empty"],
)
def test_parse_ifconfig_does_not_take_another_line_for_the_vhid(text):
    with pytest.raises(CommandExecutionError, match="no CARP vhid 9"):
        proxysql_ha_carp.parse_ifconfig(text, 9)


def test_parse_ifconfig_refuses_an_unknown_state():
    with pytest.raises(CommandExecutionError, match="unknown CARP state 'BOGUS'"):
        proxysql_ha_carp.parse_ifconfig("\tcarp: BOGUS vhid 9 advbase 1 advskew 0\n", 9)


def test_parse_ifconfig_refuses_a_vhid_listed_twice():
    text = "\tcarp: MASTER vhid 9 advbase 1 advskew 0\n\tcarp: BACKUP vhid 9 advbase 1 advskew 100\n"
    with pytest.raises(CommandExecutionError, match="2 times"):
        proxysql_ha_carp.parse_ifconfig(text, 9)


def test_parse_ifconfig_reads_a_line_with_the_key_shown():
    assert proxysql_ha_carp.parse_ifconfig(KEY_LINE, 9) == "MASTER"


@pytest.mark.parametrize(
    ("text", "vhid"),
    [
        (KEY_LINE, 99),
        (KEY_LINE + KEY_LINE, 9),
        ('\tcarp: BOGUS vhid 9 advbase 1 advskew 0 key "secret"\n', 9),
    ],
    ids=["absent", "twice", "unknown-state"],
)
def test_parse_ifconfig_errors_never_show_the_key(text, vhid):
    with pytest.raises(CommandExecutionError) as caught:
        proxysql_ha_carp.parse_ifconfig(text, vhid)
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize(
    ("iface", "vip", "role"),
    [
        ("lo", "127.0.0.1", "MASTER"),
        ("eth0", "192.0.2.50", "MASTER"),
        ("eth0", "192.0.2.11", "MASTER"),
        ("eth0", "2001:db8::50", "MASTER"),
        ("eth0", "2001:0db8:0000::0050", "MASTER"),
        ("eth0", "fe80::5054:ff:fe12:3456", "MASTER"),
        ("eth0", "192.0.2.77", "BACKUP"),
        ("eth0", "127.0.0.1", "BACKUP"),
        ("eth0", "2001:db8::51", "BACKUP"),
        ("eth1", "192.0.2.50", "INIT"),
        ("eth2", "192.0.2.50", "BACKUP"),
    ],
    ids=[
        "inet",
        "secondary",
        "primary-inet",
        "inet6",
        "inet6-written-long",
        "zone-suffixed-address",
        "absent",
        "on-another-interface",
        "inet6-absent",
        "down-without-vip",
        "unreadable-addresses-skipped",
    ],
)
def test_vip_role_is_whether_the_vip_is_on_the_interface(iface, vip, role):
    assert proxysql_ha_carp.vip_role(INTERFACES, iface, vip) == role


def test_vip_role_refuses_an_interface_that_does_not_exist():
    with pytest.raises(CommandExecutionError, match="'eth9' does not exist.*eth0, eth1, eth2, lo"):
        proxysql_ha_carp.vip_role(INTERFACES, "eth9", "192.0.2.50")


@pytest.mark.skipif(not salt.utils.platform.is_linux(), reason="the loopback interface is named lo on Linux")
def test_vip_role_reads_salts_own_interfaces_data_of_this_host():
    interfaces = salt.utils.network.interfaces()
    assert proxysql_ha_carp.vip_role(interfaces, "lo", "127.0.0.1") == "MASTER"
    assert proxysql_ha_carp.vip_role(interfaces, "lo", "127.0.0.77") == "BACKUP"
