"""Record a Salt daemon's event bus into a JSON-lines file, each event with its arrival time.

    python -m lab.events minion <minion config file> <output>
    python -m lab.events master <master config file> <output>

The buses are Unix sockets under the daemon's ``sock_dir``: a path, reachable from any network
namespace. Only this extension's events and the jobs that run its functions are kept. Prints
``LISTENING`` once subscribed, then runs until SIGTERM; the lab starts one per daemon (and
waits for that line) and stops it with the daemon.
"""

import json
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
START_SECONDS = 20

KEEP = ("proxysql_ha/", "manage_schedule", "salt/job/")
LISTENING = "lab.events: listening"  # printed once subscribed: nothing after it is missed


def wanted(tag, data):
    """This extension's events, the schedule requests, and proxysql_ha.* jobs (reactor, CLI)."""
    if not tag.startswith(KEEP):
        return False
    if tag.startswith("salt/job/"):
        return str(data.get("fun", "")).startswith("proxysql_ha.")
    return True


def read(path):
    """The recorded events of ``path``: ``[{"t": epoch, "tag": ..., "data": ...}, ...]``."""
    try:
        with open(path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.endswith("\n")]
    except FileNotFoundError:
        return []


def start(kind, config_path, output, log):
    """Start a recorder (a :class:`lab.netns.Process`); return it once it listens."""
    from lab import netns  # pylint: disable=import-outside-toplevel

    offset = log.stat().st_size if log.exists() else 0
    process = netns.Process(None, [sys.executable, "-m", "lab.events", kind, config_path, output],
                            log, env={"PYTHONPATH": str(REPO)}).start()
    deadline = time.monotonic() + START_SECONDS
    while LISTENING.encode() not in log.read_bytes()[offset:]:
        if not process.running() or time.monotonic() >= deadline:
            process.kill()
            raise RuntimeError(f"the event recorder of {config_path} did not start: see {log}")
        time.sleep(0.05)
    return process


def bus(kind, config_path):
    import salt.config  # pylint: disable=import-outside-toplevel
    import salt.utils.event  # pylint: disable=import-outside-toplevel

    if kind == "master":
        opts = salt.config.master_config(config_path)
        return salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=True)
    opts = salt.config.minion_config(config_path)
    return salt.utils.event.get_event("minion", opts=opts, listen=True)


def record(kind, config_path, output):
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    events = bus(kind, config_path)
    while not stopping and not events.connect_pub(timeout=1):
        time.sleep(0.1)
    print(LISTENING, flush=True)
    with open(output, "a", encoding="utf-8") as out:
        while not stopping:
            event = events.get_event(wait=0.5, full=True, auto_reconnect=True)
            if event and wanted(event["tag"], event["data"]):
                line = {"t": time.time(), "tag": event["tag"], "data": event["data"]}
                out.write(json.dumps(line, default=str) + "\n")
                out.flush()


if __name__ == "__main__":
    record(*sys.argv[1:4])
