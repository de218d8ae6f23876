"""The engine on a real minion bus: Salt's own event publisher (the one a salt-minion runs,
``salt.transport.ipc_publish_server("minion", ...)``) in a process of its own, fed by Salt's
``MinionEvent`` as the minion feeds it. A pillar refresh is seen once; an idle look does not
read the bus (a read runs the bus's event loop: most of an idle look's CPU), and a burst
longer than a look's batch is read on at the next look.
"""

import subprocess
import sys
import time

import pytest
import salt.config
import salt.utils.event

from _engines import proxysql_ha as engine

BOUND = 10.0  # seconds: only catches a hang
PUBLISHER = """
import asyncio, sys, salt.config, salt.transport
opts = salt.config.minion_config(None)
opts.update(id="engine-bus-test", sock_dir=sys.argv[1], cachedir=sys.argv[1], pki_dir=sys.argv[1])
async def main():
    loop = asyncio.get_running_loop()
    server = salt.transport.ipc_publish_server("minion", opts)
    loop.create_task(server.publisher(server.publish_payload, io_loop=loop))
    await asyncio.sleep(600)
asyncio.run(main())
"""


@pytest.fixture
def bus(tmp_path):
    """``(opts, pusher)``: the minion's options as the engine has them, and a sender onto its bus."""
    publisher = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(tmp_path)])
    opts = salt.config.minion_config(None)
    opts.update(id="engine-bus-test", sock_dir=str(tmp_path), cachedir=str(tmp_path),
                pki_dir=str(tmp_path))
    engine._BUS.clear()  # pylint: disable=protected-access
    pusher = salt.utils.event.MinionEvent(opts, listen=False)
    try:
        deadline = time.monotonic() + BOUND
        while not list(tmp_path.glob("minion_event_*_pub.ipc")):
            assert time.monotonic() < deadline, "Salt's event publisher did not start"
            assert publisher.poll() is None, "Salt's event publisher ended"
            time.sleep(0.05)
        yield opts, pusher
    finally:
        pusher.destroy()
        for key in list(engine._BUS):  # pylint: disable=protected-access
            engine._drop_bus(key)  # pylint: disable=protected-access
        publisher.kill()
        publisher.wait()


def looks_until(opts, wanted, looks=50):
    """What ``_pillar_refreshed`` said at each look until it said ``wanted`` (bounded)."""
    said = []
    for _ in range(looks):
        said.append(engine._pillar_refreshed(opts, time.monotonic()))  # pylint: disable=protected-access
        if said[-1] == wanted:
            return said
        time.sleep(0.05)
    return said


def counted_reads(monkeypatch):
    """The listener's reads of the bus, counted."""
    listener = engine._BUS["listener"]  # pylint: disable=protected-access
    reads, read = [], listener.get_event

    def get_event(*args, **kwargs):
        reads.append(1)
        return read(*args, **kwargs)

    monkeypatch.setattr(listener, "get_event", get_event)
    return reads


def test_a_pillar_refresh_on_the_bus_is_seen_once(bus):
    opts, pusher = bus
    assert engine._pillar_refreshed(opts, time.monotonic()) is False  # pylint: disable=protected-access

    assert pusher.fire_event({}, engine.REFRESH_TAG)

    assert looks_until(opts, True)[-1] is True
    assert engine._pillar_refreshed(opts, time.monotonic()) is False  # pylint: disable=protected-access


def test_an_idle_look_does_not_read_the_bus_and_an_event_is_read(bus, monkeypatch):
    opts, pusher = bus
    engine._pillar_refreshed(opts, time.monotonic())  # pylint: disable=protected-access  # connects
    reads = counted_reads(monkeypatch)

    for _ in range(20):
        assert engine._pillar_refreshed(opts, time.monotonic()) is False  # pylint: disable=protected-access
    assert reads == []

    assert pusher.fire_event({"any": "event"}, "salt/other")
    assert pusher.fire_event({}, engine.REFRESH_TAG)
    assert looks_until(opts, True)[-1] is True
    assert reads


def test_a_burst_longer_than_a_look_reads_on_at_the_next_look(bus):
    opts, pusher = bus
    engine._pillar_refreshed(opts, time.monotonic())  # pylint: disable=protected-access  # connects
    for number in range(engine.BUS_BATCH + 200):
        assert pusher.fire_event({"n": number}, "salt/other")
    assert pusher.fire_event({}, engine.REFRESH_TAG)

    said = looks_until(opts, True)

    assert said[-1] is True and len(said) >= 2  # the refresh came after a look's batch
