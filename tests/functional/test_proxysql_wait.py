"""The module's wait after a start is for the loaded configuration, not for the process.

The stand-in's start returns at its pid file and loads its db ``load_delay`` seconds later, and
only then listens on its traffic port, as ProxySQL does; the module must wait for that port.
"""

import dataclasses
import time

import pytest
from salt.exceptions import CommandExecutionError

from standin import proxysql_standin

DELAY = 2.0  # the stand-in's load delay: well above what a start through the module takes


def slow(node, load_delay, **overrides):
    """Give ``node``'s stand-in ``load_delay``; ``overrides`` go into its pillar."""
    node.node = dataclasses.replace(node.node, load_delay=load_delay)
    node.configure(**overrides)


def test_restore_returns_once_the_restored_configuration_is_loaded_and_served(pair):
    a, b = pair.a, pair.b
    a.save_users(11)
    a.ha.ship()
    slow(b, DELAY)
    began = time.monotonic()

    report = b.ha.restore(start=True)

    waited = time.monotonic() - began
    assert report["restored"] is True and report["started"] is True
    # right after restore() returns: loaded (no waiting here) and accepting
    loaded = proxysql_standin.wait_loaded(b.datadir, timeout=0)
    assert loaded["config"]["mysql_users"] == 11
    assert proxysql_standin.accepts(b.traffic)
    assert waited >= DELAY
    assert report["steps_ms"]["start"] >= DELAY * 1000


def test_promote_waits_until_proxysql_serves(pair):
    a, b = pair.a, pair.b
    a.ha.ship()
    pair.fail_over()
    slow(b, DELAY)

    report = b.ha.promote()

    assert (report["acted"], report["errors"], report["started"]) == (True, [], True)
    assert report["start_ms"] >= DELAY * 1000 or report["restore"]["steps_ms"]["start"] >= DELAY * 1000
    assert proxysql_standin.wait_loaded(b.datadir, timeout=0)["pid"] == int(b.pidfile.read_text())
    assert proxysql_standin.accepts(b.traffic)
    assert b.ha.status()["proxysql_serving"] is True


def test_a_load_longer_than_service_timeout_fails_restore_naming_the_address(pair):
    a, b = pair.a, pair.b
    a.ha.ship()
    slow(b, 4.0, service={"timeout": 1})

    with pytest.raises(CommandExecutionError, match=rf"serving on {b.traffic} within 1 s") as failure:
        b.ha.restore(start=True)

    assert "does not accept connections" in str(failure.value)
    assert b.running()  # started, and left running
    b.wait_serving(timeout=15)  # and it does serve once loaded


def test_on_the_master_path_a_slow_load_is_an_error_and_proxysql_still_ends_started(pair):
    a, b = pair.a, pair.b
    a.ha.ship()
    pair.fail_over()
    slow(b, 4.0, service={"timeout": 1})

    report = b.ha.promote()

    assert report["acted"] is True
    assert report["restore"]["restored"] is False or report["errors"]
    assert any(b.traffic in error for error in report["errors"]), report["errors"]
    assert b.running()
    b.wait_serving(timeout=15)
    assert b.ha.status()["proxysql_serving"] is True


def test_a_proxysql_that_dies_after_its_pid_file_fails_the_wait_saying_so(pair):
    b = pair.b
    argv = b.node.standin_argv("start") + ["--fail-start", "die"]
    b.configure(commands={**b.node.pillar(vip=b.vip, peer_path=b.peer.inbox_dir)["commands"], "start": argv},
                service={"timeout": 2})

    with pytest.raises(CommandExecutionError, match="its process is not running"):
        b.ha.restore(start=True)
    assert not b.running()


def test_status_reports_serving_beside_running(pair):
    b = pair.b
    slow(b, DELAY)
    assert b.ha.status()["proxysql_serving"] is False
    b.standin("start", wait=False)
    status = b.ha.status()
    assert (status["proxysql_running"], status["proxysql_serving"]) == (True, False)  # still loading
    b.wait_serving()
    status = b.ha.status()
    assert (status["proxysql_running"], status["proxysql_serving"]) == (True, True)
    b.configure(proxysql={"traffic_address": "none"})
    assert b.ha.status()["proxysql_serving"] is None  # not probed
