"""Giving up the VIP and taking it back: what each CARP implementation is asked to run.

FreeBSD's argv is built from the real ``ifconfig`` samples (../shared/freebsd/); ucarp's and
keepalived's from data.
"""

import proxysql_ha_carp
import pytest
from salt.exceptions import CommandExecutionError

SAMPLE_PARAMS = [
    ("ifconfig-13-master.txt", 9, {"proto": "carp", "advskew": 0}),
    ("ifconfig-14-two-vhids.txt", 9, {"proto": "carp", "advskew": 100}),
    ("ifconfig-14-two-vhids.txt", 10, {"proto": "carp", "advskew": 0}),
    ("ifconfig-15-vrrp-master.txt", 9, {"proto": "vrrp", "prio": 100}),
]


@pytest.fixture
def sample(shared_dir):
    return lambda name: (shared_dir / "freebsd" / name).read_text(encoding="utf-8")


@pytest.mark.parametrize(("name", "vhid", "params"), SAMPLE_PARAMS)
def test_the_advskew_or_prio_to_put_back_is_read_from_a_real_sample(sample, name, vhid, params):
    assert proxysql_ha_carp.parse_vhid_params(sample(name), vhid) == params


def test_reading_the_params_of_an_absent_vhid_is_an_error(sample):
    with pytest.raises(CommandExecutionError, match="vhid 9 0 times"):
        proxysql_ha_carp.parse_vhid_params(sample("ifconfig-no-carp.txt"), 9)


def test_a_sample_line_with_a_key_still_gives_the_advskew():
    line = '\tcarp: MASTER vhid 9 advbase 1 advskew 20 key "secret"\n'
    assert proxysql_ha_carp.parse_vhid_params(line, 9) == {"proto": "carp", "advskew": 20}


def test_freebsd_release_raises_the_advskew_of_that_vhid_only_and_forces_backup(sample):
    params = proxysql_ha_carp.parse_vhid_params(sample("ifconfig-14-two-vhids.txt"), 9)

    step = proxysql_ha_carp.release_step("freebsd", "em0", 9, params=params)

    assert step == {"argv": ["ifconfig", "em0", "vhid", "9", "advskew", "240", "state", "backup"]}


def test_freebsd_reclaim_puts_back_the_advskew_read_before_the_release(sample):
    params = proxysql_ha_carp.parse_vhid_params(sample("ifconfig-14-two-vhids.txt"), 9)

    step = proxysql_ha_carp.reclaim_step("freebsd", "em0", 9, params=params)

    assert step == {"argv": ["ifconfig", "em0", "vhid", "9", "advskew", "100"]}


def test_freebsd_in_vrrp_mode_demotes_by_priority(sample):
    params = proxysql_ha_carp.parse_vhid_params(sample("ifconfig-15-vrrp-master.txt"), 9)

    release = proxysql_ha_carp.release_step("freebsd", "igb1", 9, params=params)
    reclaim = proxysql_ha_carp.reclaim_step("freebsd", "igb1", 9, params=params)

    assert release == {"argv": ["ifconfig", "igb1", "vhid", "9", "vrrpprio", "1", "state", "backup"]}
    assert reclaim == {"argv": ["ifconfig", "igb1", "vhid", "9", "vrrpprio", "100"]}


def test_ucarp_release_is_sigusr2_then_a_freeze_and_the_reclaim_wakes_it():
    assert proxysql_ha_carp.release_step("ucarp", "eth0", 9, pid=4242) == {
        "argv": ["kill", "-USR2", "4242"], "freeze": ["kill", "-STOP", "4242"]}
    assert proxysql_ha_carp.reclaim_step("ucarp", "eth0", 9, pid=4242) == {"argv": ["kill", "-CONT", "4242"]}


def test_ucarp_reclaim_without_a_running_ucarp_has_nothing_to_wake():
    assert proxysql_ha_carp.reclaim_step("ucarp", "eth0", 9, pid=None) is None


@pytest.mark.parametrize("pid", [None, 0, 1, -5, True, "42"])
def test_ucarp_release_refuses_what_is_not_a_process_id(pid):
    with pytest.raises(CommandExecutionError, match="not the process id of ucarp"):
        proxysql_ha_carp.release_step("ucarp", "eth0", 9, pid=pid)


@pytest.mark.parametrize(("text", "pid"), [("4242\n", 4242), ("  77  \n", 77)])
def test_a_pid_file_is_read(text, pid):
    assert proxysql_ha_carp.parse_pid(text, "/run/ucarp.pid") == pid


@pytest.mark.parametrize("text", ["", "\n", "ucarp\n", "1\n"])
def test_a_pid_file_without_a_usable_pid_is_an_error_naming_it(text):
    with pytest.raises(CommandExecutionError, match="/run/ucarp.pid|process id"):
        proxysql_ha_carp.parse_pid(text, "/run/ucarp.pid")


def test_keepalived_release_and_reclaim_write_the_track_file():
    path = "/var/lib/proxysql-ha/proxysql-down"
    assert proxysql_ha_carp.release_step("keepalived", "eth0", 9, track_file=path) == {"write": path, "text": "1\n"}
    assert proxysql_ha_carp.reclaim_step("keepalived", "eth0", 9, track_file=path) == {"write": path, "text": "0\n"}


def test_an_unknown_implementation_is_an_error():
    with pytest.raises(CommandExecutionError, match="vrrpd"):
        proxysql_ha_carp.release_step("vrrpd", "eth0", 9)
    with pytest.raises(CommandExecutionError, match="vrrpd"):
        proxysql_ha_carp.reclaim_step("vrrpd", "eth0", 9)
