"""
Shipping in the two-host lab: every saved change reaches the BACKUP (RPO), a peer whose sshd is
down is retried and alerted on without losing anything, and a transfer cut in the middle never
leaves a partial copy that could be restored.
"""

import statistics
import subprocess
import time

import pytest

from lab import netns
from lab.hosts import generation, newest_after
from lab.timeline import first, restored
from tests.support.skips import skip_beyond_ci
from tests.e2e.pair import (
    ARRIVAL_SECONDS,
    change_arrives,
    intact,
    ms,
    newest_generation,
    state,
    stray_files,
    temporary_files,
    wait_copy_of,
)

pytestmark = pytest.mark.e2e

CHANGES = 20
RETRY_SECONDS = 30  # the ship job runs every 10 s: two runs and some
BIG_USERS = 20000  # about 2.5 MB of mysql_users
SHAPERS = (  # egress rate limits for A's interface, the first the kernel accepts is used
    ("netem", "rate", "4mbit"),
    ("tbf", "rate", "4mbit", "burst", "16kb", "latency", "2s"),
)
CUT_SECONDS = 40  # the cut transfer to fail on A (ssh's keep-alive gives up after about 6 s)


def test_every_saved_change_arrives_on_the_backup_as_a_valid_copy(lab, summary):
    a, b = lab.host("a"), lab.host("b")
    delays, names = [], []
    for _ in range(CHANGES):
        _, name, seconds = change_arrives(lab, a, b)
        assert intact(b, name)
        delays.append(seconds)
        names.append(name)
    verdicts = {v["name"]: v for v in b.salt_call("proxysql_ha.list_backups")[0]["incoming"]}
    still_there = [n for n in names if n in verdicts]  # B's purge job keeps the newest 10
    assert still_there and all(verdicts[n]["valid"] for n in still_there)
    cuts = statistics.quantiles(delays, n=20)
    p50, p95 = cuts[9], cuts[18]
    print("delays (ms):", [round(d * 1000) for d in delays])
    summary(f"RPO: {CHANGES} changes saved on A, each a valid copy on B after p50 {ms(p50)}, "
            f"p95 {ms(p95)}, max {ms(max(delays))}")


def test_shipping_to_a_peer_without_sshd_fails_clearly_retries_alerts_and_loses_nothing(
        lab, summary):
    a, b = lab.host("a"), lab.host("b")
    before = newest_generation(b)
    b.stop_sshd()
    try:
        saved_at = time.time()
        saved = a.save_change()
        failures = lab.wait_until(lambda: _failures(a, saved_at, 2), RETRY_SECONDS,
                                  "the ship job to fail twice on A")
        shipped = state(a, "ship.json")
        status, _ = a.salt_call("proxysql_ha.status")
        healthy, code = a.salt_call("proxysql_ha.check")
        alert = lab.wait_until(lambda: first(a.events("proxysql_ha/alert/ship_failed"), saved_at),
                               10, "the ship_failed alert on A's event bus")
    finally:
        b.start_sshd()
    resumed = time.time()
    wait_copy_of(lab, b, saved, before, RETRY_SECONDS)
    print("ship error:", shipped["error"])
    assert shipped["ok"] is False and generation(shipped["failed_name"]) > before
    assert failures[0]["data"]["name"] == failures[1]["data"]["name"] == shipped["failed_name"]
    assert b.address in shipped["error"] and "Connection refused" in shipped["error"]
    assert status["last_ship"]["error"] == shipped["error"]
    assert (healthy, code) == (False, 1)
    assert "ship_failed" in [p["kind"] for p in status["problems"]]
    assert alert["data"]["node_id"] == a.minion_id
    summary(f"sshd down: ship failed {len(failures)} times "
            f"({ms(failures[1]['t'] - failures[0]['t'])} between the first two tries); the change "
            f"arrived {ms(time.time() - resumed)} after sshd returned")


def _failures(host, since, count):
    """The ``proxysql_ha/ship/failed`` events of ``host`` after ``since``, once ``count``."""
    found = [e for e in host.events("proxysql_ha/ship/failed") if e["t"] >= since]
    return found if len(found) >= count else None


@pytest.fixture
def shaped_link(lab):
    """A's egress limited to 4 mbit/s by the first qdisc of ``SHAPERS`` the kernel has: its name
    and why the others were refused."""
    a = lab.host("a")
    if not netns.which("tc"):
        pytest.skip("tc is not installed (Debian: iproute2): cannot slow a transfer down to cut it")
    refused = []
    for shaper in SHAPERS:
        out = _tc(a, "qdisc", "add", "dev", a.iface, "root", *shaper)
        if out.returncode == 0:
            break
        refused.append(f"{shaper[0]}: {out.stderr.strip()}")
    else:
        skip_beyond_ci(f"no rate-limiting qdisc in this kernel ({'; '.join(refused)})")
    yield shaper[0] + (f" ({'; '.join(refused)})" if refused else "")
    _tc(a, "qdisc", "del", "dev", a.iface, "root")


def _tc(host, *args):
    return subprocess.run(netns.exec_argv(host.namespace, [netns.which("tc"), *args]),
                          capture_output=True, text=True, timeout=10, check=False)


def test_a_transfer_cut_in_the_middle_leaves_no_partial_copy_and_the_next_one_completes(
        lab, shaped_link, summary):
    a, b = lab.host("a"), lab.host("b")
    before = newest_generation(b)
    saved_at = time.time()
    saved = a.save_change(rows=_users(a, BIG_USERS))
    lab.wait_until(lambda: _receiving(b), ARRIVAL_SECONDS, "the big copy to be on its way to B")
    cut = time.time()
    b.cut_link()
    try:
        failed = lab.wait_until(lambda: _no_partial_copy(b, before) and _failures(a, saved_at, 1),
                                CUT_SECONDS, "A's ship to fail")
    finally:
        b.restore_link()
    restored_at = time.time()
    name = wait_copy_of(lab, b, saved, before, RETRY_SECONDS + CUT_SECONDS)
    arrived = time.time()
    listing, _ = b.salt_call("proxysql_ha.list_backups")
    verdict, _ = b.salt_call("proxysql_ha.verify", f"name={name}")
    assert intact(b, name) and verdict["valid"]
    assert [v for v in listing["incoming"] if not v["valid"]] == []
    assert all(v["name"].startswith("proxysql-ha-g") for v in listing["incoming"])
    assert stray_files(b) == []
    assert [p for p in _promotions(b, cut) if generation(p) > before] == []
    summary(f"transfer cut ({shaped_link} 4 mbit/s, {BIG_USERS} users): cut "
            f"{ms(cut - saved_at)} after the save, A's ship failed {ms(failed[0]['t'] - cut)} "
            f"after the cut; the next transfer completed {ms(arrived - restored_at)} after the "
            f"link returned; temporary files left: {len(temporary_files(b))}")


def _users(host, count):
    """``count`` MySQL users made from the first row of ``host``'s ``mysql_users``."""
    template = host.config()["mysql_users"][0]
    return [(f"bulk{i:06d}", f"*{i:040X}") + tuple(template[2:]) for i in range(count)]


def _receiving(host):
    """Whether a hidden temporary file in ``host``'s inbox has received bytes."""
    for name in temporary_files(host):
        try:
            if (host.node.inbox_dir / name).stat().st_size > 0:
                return True
        except FileNotFoundError:  # renamed or removed meanwhile
            continue
    return False


def _no_partial_copy(host, since_generation):
    """True while no complete copy newer than ``since_generation`` is in ``host``'s inbox;
    fails the test at once if one shows up (the transfer was cut: it cannot be complete)."""
    assert newest_after(host, since_generation) is None, "a cut transfer became a copy"
    return True


def _promotions(host, since):
    """Names of the backups restored by ``host``'s promotions after ``since``."""
    return [e["data"]["restore"]["chosen"] for e in host.events("proxysql_ha/promoted")
            if e["t"] >= since and restored(e["data"])]
