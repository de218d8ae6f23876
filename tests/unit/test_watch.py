"""The engine's looks and decisions: decide and coalesce on data; the role and pid readers on the real kernel."""

import os
import socket
import struct
import shutil
import subprocess
import sys

import pytest

import proxysql_ha_watch as w

CONF = {"stop_on_backup": True, "schedule": {"ship_job": "ship", "reconcile_job": "reconcile"}}


def seen(role, running=True, previous=None, changed=False, asked=None):
    return {"role": role, "previous_role": role if previous is None else previous, "running": running,
            "db_changed": changed, "asked": asked or {}}


def test_in_line_nodes_need_no_job():
    assert w.decide(seen("MASTER", True), 100, CONF, 10) == []
    assert w.decide(seen("BACKUP", False), 100, CONF, 10) == []
    assert w.decide(seen("BACKUP", None), 100, CONF, 10) == []  # not looked at: no guess


def test_each_condition_out_of_line_asks_for_its_job():
    assert w.decide(seen("MASTER", True, previous="BACKUP"), 100, CONF, 10) == [
        ("reconcile", "role BACKUP -> MASTER")]
    assert [j for j, _ in w.decide(seen("MASTER", False), 100, CONF, 10)] == ["reconcile"]
    assert [j for j, _ in w.decide(seen("BACKUP", True), 100, CONF, 10)] == ["reconcile"]
    assert w.decide(seen("BACKUP", True), 100, dict(CONF, stop_on_backup=False), 10) == []
    assert w.decide(seen("MASTER", changed=True), 100, CONF, 10) == [("ship", "the database changed")]
    assert w.decide(seen(None, None, changed=True), 100, CONF, 10) == [("ship", "the database changed")]
    assert w.decide(seen("BACKUP", False, changed=True), 100, CONF, 10) == []


def test_a_lasting_condition_is_asked_for_again_only_after_retry():
    asked = {"ProxySQL not running on the MASTER": 95}
    assert w.decide(seen("MASTER", False, asked=asked), 100, CONF, 10) == []
    assert w.decide(seen("MASTER", False, asked=asked), 105, CONF, 10) != []


def test_coalesce_keeps_the_newest_per_vhid():
    payloads = [{"vhid": 1, "state": "MASTER", "timestamp": 3}, {"vhid": 2, "state": "BACKUP", "timestamp": 1},
                {"vhid": 1, "state": "BACKUP", "timestamp": 2}, {"vhid": 1, "state": "INIT", "timestamp": 3}]
    assert [(p["vhid"], p["state"]) for p in w.coalesce(payloads)] == [(2, "BACKUP"), (1, "INIT")]
    assert w.coalesce([]) == []


def test_netlink_reads_the_addresses_ip_shows():
    shown = subprocess.run(["ip", "-o", "addr", "show", "dev", "lo"], capture_output=True, text=True,
                           check=True).stdout
    expected = {field.split("/")[0] for line in shown.splitlines()
                for i, field in enumerate(line.split()) if line.split()[i - 1] in ("inet", "inet6")}
    assert w.interface_addresses("lo") == expected
    assert w.vip_role(expected, "127.0.0.1") == "MASTER"
    assert w.vip_role(expected, "127.0.0.66") == "BACKUP"


def test_the_vip_is_matched_as_an_address_not_as_text():
    assert w.vip_role({"fe80::1", "192.0.2.7"}, "FE80:0:0::1") == "MASTER"  # another spelling
    assert w.vip_role({"::ffff:192.0.2.50"}, "192.0.2.50") == "BACKUP"  # another family
    assert w.vip_role({"192.0.2.5"}, "192.0.2.50") == "BACKUP"
    assert w.vip_role(set(), "2001:db8::50") == "BACKUP"


def test_netlink_parser_on_data_ignores_other_interfaces_and_truncated_messages():
    def message(index, raw):
        attr = struct.pack("=HH", 4 + len(raw), 2) + raw
        body = struct.pack("=BBBBI", socket.AF_INET, 32, 0, 0, index) + attr
        return struct.pack("=IHHII", 16 + len(body), 20, 2, 1, 0) + body

    done = struct.pack("=IHHII", 20, 3, 2, 1, 0) + b"\0" * 4
    data = message(7, bytes([10, 0, 0, 1])) + message(8, bytes([10, 0, 0, 2])) + done
    assert w.parse_addresses(data, 7) == ({"10.0.0.1"}, True)
    assert w.parse_addresses(data[:30], 7) == (set(), False)


def test_pid_running_needs_a_live_proxysql_process(tmp_path):
    pidfile = tmp_path / "proxysql.pid"
    assert not w.pid_running(str(pidfile))  # absent
    pidfile.write_text("garbage")
    assert not w.pid_running(str(pidfile))
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "proxysql_ha.promote",
                              "/etc/proxysql.cnf"])
    try:  # alive, but not ProxySQL: a reused pid, whose arguments only name it
        pidfile.write_text(f"{other.pid}\n")
        assert not w.pid_running(str(pidfile))
    finally:
        other.kill()
        other.wait()
    program = tmp_path / "proxysql"
    program.symlink_to(shutil.which("sleep"))
    proc = subprocess.Popen([str(program), "30"])
    try:
        pidfile.write_text(f"{proc.pid}\n")
        assert w.pid_running(str(pidfile))
    finally:
        proc.kill()
        proc.wait()
    assert not w.pid_running(str(pidfile))


@pytest.mark.parametrize(("cmdline", "ours"), [
    (b"/usr/bin/proxysql\0-f\0-c\0/etc/proxysql.cnf\0", True),
    (b"proxysql -f --idle-threads\0", True),  # a title set over argv[0]
    (b"/usr/bin/python3\0/work/standin/proxysql_standin.py\0start\0", True),
    (b"/usr/bin/python3\0-m\0salt.scripts\0proxysql_ha.promote\0", False),
    (b"/opt/salt/bin/salt-minion ProcessPayload(jid=1) proxysql_ha\0", False),
    (b"/usr/bin/vi\0/etc/proxysql.cnf\0", False),
    (b"/usr/local/libexec/proxysql-ha-receive\0/var/lib/in\0", False),
    (b"", False),
])
def test_only_a_program_named_proxysql_is_proxysql(cmdline, ours):
    assert w.is_proxysql(cmdline) is ours


def test_a_role_change_just_relayed_from_the_hook_needs_no_second_reconcile():
    assert w.decide(seen("MASTER", True, previous="BACKUP", asked={"relayed": 95}), 100, CONF, 10) == []
    assert w.decide(seen("MASTER", True, previous="BACKUP", asked={"relayed": 80}), 100, CONF, 10) != []


def test_a_failed_ship_on_the_master_is_retried_every_retry_seconds():
    failed = dict(seen("MASTER"), ship_failed=True)
    assert w.decide(failed, 100, CONF, 10) == [("ship", "the last ship failed")]
    assert w.decide(dict(failed, asked={"the last ship failed": 95}), 100, CONF, 10) == []
    assert w.decide(dict(seen("BACKUP", False), ship_failed=True), 100, CONF, 10) == []


def test_a_released_vip_keeps_the_probe_going_on_a_backup():
    released = dict(seen("BACKUP", False), vip_released=True)
    assert w.decide(released, 100, CONF, 10) == [("reconcile", "the VIP is released: probe ProxySQL")]
    assert w.decide(dict(released, asked={"the VIP is released: probe ProxySQL": 95}), 100, CONF, 10) == []
    assert w.decide(dict(seen("MASTER", True), vip_released=True), 100, CONF, 10) == []


def inotify_record(mask, name=b""):
    padded = name + b"\0" * (-(len(name) + 1) % 16 + 1) if name else b""
    return struct.pack("=iIII", 1, mask, 0, len(padded)) + padded


def test_inotify_records_parse_and_a_truncated_one_ends_the_list():
    data = inotify_record(0x2, b"proxysql.db") + inotify_record(0x100, b"proxysql.db-journal")
    assert w.inotify_events(data) == [(0x2, "proxysql.db"), (0x100, "proxysql.db-journal")]
    assert w.inotify_events(data + inotify_record(0x2, b"proxysql.log")[:20]) == w.inotify_events(data)
    assert w.inotify_events(b"") == []


@pytest.mark.parametrize(("events", "wakes"), [
    ([(0x2, "proxysql.db")], True),
    ([(0x100, "proxysql.db-journal")], True),
    ([(0x80, "proxysql.db")], True),  # renamed into place: an install
    ([(0x2, "proxysql.log"), (0x2, "proxysql_stats.db")], False),  # ProxySQL's log and stats
    ([(0x80, "proxysql.db.tmp-1")], False),  # a temporary name, not yet the db
    ([(0x4000, "")], True),  # the queue overflowed: anything may have happened
    ([(0x8000, "")], True),  # the watch ended
    ([], False),
])
def test_only_the_db_and_its_companions_wake_the_engine(events, wakes):
    assert w.touches(events, "proxysql.db") is wakes


MANIFEST = "proxysql-ha-g0000000042-20261125T184816123Z-node-a.json"


@pytest.mark.parametrize(("events", "wakes"), [
    ([(0x100, MANIFEST)], True),  # linked into place by the receive command (IN_CREATE)
    ([(0x80, MANIFEST)], True),  # renamed into place by the local transport (IN_MOVED_TO)
    ([(0x100, MANIFEST[:-5] + ".db")], False),  # the data file: its manifest comes after it
    ([(0x100, ".proxysql-ha-tmp-x1y2.json"), (0x2, ".proxysql-ha-tmp-x1y2.json")], False),
    ([(0x200, MANIFEST), (0x40, MANIFEST)], False),  # purged or moved away: nothing arrived
    ([(0x100, "notes.json")], False),  # not of the backups' naming
    ([(0x4000, "")], True),  # the queue overflowed: an arrival may be among the lost events
    ([(0x400, "")], True),  # the inbox itself went away
    ([], False),
])
def test_only_a_manifest_put_in_place_is_an_arrival(events, wakes):
    assert w.arrived(events) is wakes


def test_a_watch_ends_with_its_directory():
    assert w.watch_ended([(0x400, "")]) and w.watch_ended([(0x8000, "")])
    assert not w.watch_ended([(0x2, "proxysql.db"), (0x4000, "")])
