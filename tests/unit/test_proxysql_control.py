"""ProxySQL control (``_utils/proxysql_ha_proxysql.py``): the traffic address, the probe and the waits.

Real sockets on loopback, real ProxySQL databases; only the service actions are callables here,
since the module passes them in.
"""

import socket
import sqlite3
import threading
import time

import proxysql_ha_admin as admin
import proxysql_ha_proxysql as control
import pytest
from salt.exceptions import CommandExecutionError


def traffic_address(setting, live):
    """The module's call: the one ``*_ifaces`` parser, the admin client's, passed in."""
    return control.traffic_address(setting, live, admin.parse_ifaces)


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("0.0.0.0:6033", ("127.0.0.1", 6033)),
        ("127.0.0.5:16033", ("127.0.0.5", 16033)),
        ("[::]:6033", ("::1", 6033)),
        ("[fd00::5]:6033", ("fd00::5", 6033)),
        ("proxysql1.example.test:6033", ("proxysql1.example.test", 6033)),
        (" 10.0.0.1:3306 ", ("10.0.0.1", 3306)),
        ("127.0.0.1:6034;/tmp/proxysql.sock", ("127.0.0.1", 6034)),
        ("/tmp/proxysql.sock;10.0.0.1:6033", ("10.0.0.1", 6033)),
        (";;10.0.0.2:6033;", ("10.0.0.2", 6033)),
        ("", ("127.0.0.1", 6033)),  # MySQL_Threads_Handler::start_listeners()'s default
        (None, ("127.0.0.1", 6033)),
    ],
)
def test_the_traffic_address_is_the_first_tcp_entry_probed_on_loopback_for_a_wildcard(value, address):
    assert admin.parse_ifaces(value, tcp=True, default=control.DEFAULT_INTERFACES) == address


@pytest.mark.parametrize("text", ["6033", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:70000", "::1:6033", "h:x", "[h:1", ""])
def test_what_is_not_host_port_is_refused_naming_it(text):
    with pytest.raises(ValueError, match="host:port|empty"):
        admin.parse_ifaces(text, tcp=True)


def test_only_unix_sockets_say_what_to_set(tmp_path, make_db):
    live = make_db("proxysql.db")
    set_interfaces(live, "/tmp/proxysql.sock")
    with pytest.raises(CommandExecutionError, match="only unix socket.*traffic_address"):
        traffic_address("auto", str(live))


def set_interfaces(path, value):
    with sqlite3.connect(path) as conn:
        if value is None:
            conn.execute("DELETE FROM global_variables WHERE variable_name='mysql-interfaces'")
        else:
            conn.execute("UPDATE global_variables SET variable_value=? WHERE variable_name='mysql-interfaces'", (value,))


def test_auto_reads_the_live_db_mysql_interfaces(make_db):
    live = make_db("proxysql.db")
    assert traffic_address("auto", str(live)) == ("127.0.0.1", 6033)
    set_interfaces(live, "192.0.2.7:7033;/tmp/p.sock")
    assert traffic_address("auto", str(live)) == ("192.0.2.7", 7033)
    set_interfaces(live, None)
    assert traffic_address("auto", str(live)) == ("127.0.0.1", 6033)
    assert traffic_address("auto", str(live.with_name("absent.db"))) == ("127.0.0.1", 6033)
    assert traffic_address("none", str(live)) is None
    assert traffic_address("[::1]:7000", str(live)) == ("::1", 7000)


def test_auto_on_an_unreadable_db_names_it_and_the_key(tmp_path):
    bad = tmp_path / "proxysql.db"
    bad.write_bytes(b"not a database" * 100)
    with pytest.raises(CommandExecutionError, match=r"proxysql\.db.*traffic_address"):
        traffic_address("auto", str(bad))


@pytest.fixture
def listener():
    """A loopback socket that accepts (and closes) connections; yields its address."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.1)
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                sock.accept()[0].close()
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield sock.getsockname()
    stop.set()
    thread.join(5)
    sock.close()


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()


def test_accepts_says_why_not(listener):
    assert control.accepts(listener) is None
    assert "refused" in control.accepts(closed_port()).lower()


def test_wait_serving_returns_once_the_port_accepts(listener):
    control.wait_serving(lambda: True, listener, timeout=5)


def test_wait_serving_waits_for_the_listener_that_comes_later():
    address = closed_port()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def open_later():
        time.sleep(0.6)
        sock.bind(address)
        sock.listen(8)

    opener = threading.Thread(target=open_later)
    began = time.monotonic()
    opener.start()
    try:
        control.wait_serving(lambda: True, address, timeout=10)
        assert time.monotonic() - began >= 0.6
    finally:
        opener.join()
        sock.close()


def test_wait_serving_times_out_naming_the_address_and_the_reason():
    address = closed_port()
    with pytest.raises(CommandExecutionError, match=rf"serving on 127\.0\.0\.1:{address[1]} within 1 s: its process runs but"):
        control.wait_serving(lambda: True, address, timeout=1)
    with pytest.raises(CommandExecutionError, match="its process is not running"):
        control.wait_serving(lambda: False, address, timeout=0.3)


def test_wait_serving_with_no_address_waits_for_the_process_only():
    answers = iter([False, False, True])
    control.wait_serving(lambda: next(answers), None, timeout=5)


def test_start_resolves_the_address_before_starting_and_returns_false_when_running(listener):
    calls = []
    running = {"now": False}

    def start_command():
        calls.append("start")
        running["now"] = True

    def resolve():
        calls.append("resolve")
        return listener

    assert control.start(lambda: running["now"], start_command, resolve, 5) is True
    assert calls == ["resolve", "start"]
    assert control.start(lambda: running["now"], start_command, resolve, 5) is False
    assert calls == ["resolve", "start"]


def test_start_still_starts_when_the_address_cannot_be_read_then_says_so():
    running = {"now": False}

    def resolve():
        raise CommandExecutionError("cannot read mysql-interfaces from /x/proxysql.db")

    with pytest.raises(CommandExecutionError, match="ProxySQL was started, but whether it serves is unknown"):
        control.start(lambda: running["now"], lambda: running.update(now=True), resolve, 5)
    assert running["now"]


def test_stop_waits_until_the_process_is_gone():
    answers = iter([True, True, False])
    stopped = []
    assert control.stop(lambda: next(answers), lambda: stopped.append(1), 5) is True
    assert stopped == [1]
    assert control.stop(lambda: False, lambda: stopped.append(1), 5) is False
    with pytest.raises(CommandExecutionError, match="did not stop within 0.3 s"):
        control.wait_stopped(lambda: True, 0.3)


def test_run_service_uses_the_commands_or_service_functions():
    conf = {"commands": {"start": ["/bin/x", "start"], "stop": ["/bin/x", "stop"], "status": ["/bin/x", "status"]},
            "service": {"name": "proxysql", "timeout": 7}}
    seen = []

    def run_all(argv, timeout):
        seen.append((argv, timeout))
        return {"retcode": 3 if argv[1] == "status" else 1, "stderr": "boom"}

    assert control.run_service(conf, "status", run_all, lambda name: None) is False
    with pytest.raises(CommandExecutionError, match=r"start command /bin/x start failed \(exit 1\): boom"):
        control.run_service(conf, "start", run_all, lambda name: None)
    assert seen == [(["/bin/x", "status"], 7), (["/bin/x", "start"], 7)]
    conf["commands"] = {"start": None, "stop": None, "status": None}
    assert control.run_service(conf, "status", run_all, {"service.status": lambda name: name == "proxysql"}.get)
    with pytest.raises(CommandExecutionError, match="service.stop is not available"):
        control.run_service(conf, "stop", run_all, {}.get)
    with pytest.raises(CommandExecutionError, match="service.start proxysql failed"):
        control.run_service(conf, "start", run_all, {"service.start": lambda name: False}.get)
