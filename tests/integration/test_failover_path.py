"""The failover control path with real daemons: CARP hook -> events -> reactor, schedule -> module.

A salt-master serves the clean checkout, reacts to ``proxysql_ha/carp/*`` with the
repository's reactor and gives the minion ``node-b`` its ``proxysql_ha`` pillar: vhid 9 on
``lo``, MASTER when 127.0.0.77 is on ``lo``. The hook runs in its ucarp form, which moves that
address for real (so these tests need root), then hands the transition to the minion: the
reconcile schedule job right away (``manage_schedule`` ``run_job``), and the master's reactor
(promote or demote). ProxySQL is the stand-in, started and stopped through a recorder that
notes when each call ran and whether the module's lock was held. A backup of node-a's (another
configuration) waits in node-b's inbox, for the first promote to restore.

The tests share the daemons and run in file order; each one first brings the node to the state
it starts from.
"""

import contextlib
import fcntl
import json
import re
import time
from pathlib import Path

import pytest
import salt.config
import salt.utils.event

from tests.integration.conftest import (
    MASTER_VIP,
    NEEDS_ROOT,
    VIP,
    daemon_node,
    hook_conf,
    make_node,
    node_loaders,
    run_hook,
    stop_standin,
    wait_until,
    write_minion_config,
)
from standin import proxysql_db
from standin.proxysql_standin import running_pid
from tests.support.recorder import overlapping, read_log

pytestmark = [pytest.mark.integration, NEEDS_ROOT]

HANG = 60  # seconds: only catches a hang
HOOK_FAST = 15000  # ms: a hang bound only (devd, ucarp and keepalived wait for their hook); its speed is bench's
RECONCILE_INTERVAL = 5  # seconds
RECONCILE_JOB = "proxysql_ha_reconcile"
UP, DOWN = ("--ucarp-up", "lo", VIP), ("--ucarp-down", "lo", VIP)
PROMOTE, DEMOTE = ("proxysql_ha.promote",), ("proxysql_ha.demote",)
# What the minion logs when it runs a schedule job on request (manage_schedule run_job), when a
# periodic run of the job starts, and when it ended.
RAN_ON_REQUEST = f"Running Job: {RECONCILE_JOB}"
RAN_BY_TICK = f"Running scheduled job: {RECONCILE_JOB}"
RECONCILE_ENDED = re.compile(rf"Subprocess Schedule\(name={RECONCILE_JOB}, jid=\w+\) cleaned up")


@pytest.fixture(scope="module")
def b_pillar(tmp_path_factory, schema_file):
    """node-b's ``proxysql_ha`` pillar, with a short reconcile interval."""
    pillar = daemon_node(tmp_path_factory.mktemp("node-b"), "node-b", schema_file,
                         schedule={"reconcile_interval": RECONCILE_INTERVAL})
    yield pillar
    stop_standin(pillar)


@pytest.fixture(scope="module")
def ha_pillars(b_pillar):
    return {"node-b": b_pillar}


@pytest.fixture(scope="module")
def node(node_b, b_pillar, ha_master, event_listener, tmp_path_factory):
    """node-b with the formula's schedule jobs in place (``state.apply proxysql_ha.schedule``)."""
    applied = node_b.salt_call_cli(timeout=120).run("state.apply", "proxysql_ha.schedule")
    if applied.returncode != 0:
        raise RuntimeError(f"state.apply proxysql_ha.schedule failed: {applied.stdout}")
    hook = hook_conf(tmp_path_factory.mktemp("hook") / "hook.json", node_b)
    return Node(node_b, b_pillar, hook, ha_master, event_listener)


class Node:
    """node-b as the tests see it: its minion, pillar, hook configuration, ProxySQL and master."""

    def __init__(self, minion, pillar, hook, master, listener):
        self.minion, self.pillar, self.hook = minion, pillar, hook
        self.master, self.listener = master, listener
        self.live = Path(pillar["datadir"]) / "proxysql.db"
        self.commands_log = Path(pillar["datadir"]).parent / "commands.log"

    def running(self):
        return running_pid(Path(self.pillar["datadir"]) / "proxysql.pid") is not None

    def records(self):
        """What the recorder noted of ProxySQL's starts and stops, oldest first."""
        return read_log(self.commands_log) if self.commands_log.exists() else []

    def live_state(self):
        path = Path(self.pillar["state_dir"]) / "live.json"
        return json.loads(path.read_text()) if path.exists() else None

    def minion_log(self, since=0):
        """The minion's log file from character ``since`` on."""
        return Path(self.minion.config["log_file"]).read_text(errors="replace")[since:]

    def wait_in_log(self, text, since, timeout=HANG):
        """Where ``text`` (string or regex) ends in the minion's log after ``since``, or None."""
        def find():
            found = re.search(re.escape(text) if isinstance(text, str) else text,
                              self.minion_log(since))
            return found and since + found.end()
        return wait_until(find, timeout)

    def master_events(self, tag, after):
        """The master's events with ``tag`` (fnmatch) since ``after`` (time.time())."""
        return self.listener.get_events([(self.master.id, tag)], after_time=after)

    def returns(self, functions, after, count=1):
        """
        node-b's returns of jobs running one of ``functions`` since ``after``, once there are
        ``count`` of them (or when HANG seconds passed).
        """
        def found():
            return [event.data for event in self.master_events("salt/job/*/ret/node-b", after)
                    if event.data.get("fun") in functions]

        wait_until(lambda: len(found()) >= count, HANG, step=0.25)
        return found()

    def bring(self, action):
        """
        Run the hook for ``action`` (UP or DOWN), wait until ProxySQL runs iff it was UP and
        the reactor's job answered.
        """
        since = time.time()
        out, _ = run_hook(self.hook, *action)
        assert out.returncode == 0, out.stderr
        converged = wait_until(lambda: self.running() == (action == UP), HANG)
        assert converged, f"{action} never converged"
        assert self.returns(PROMOTE if action == UP else DEMOTE, since)

    def fire(self, tag, data, master=False):
        """Fire ``tag`` on node-b's bus, or through its daemon to the master (as the hook does)."""
        opts = salt.config.minion_config(self.minion.config["conf_file"])
        with salt.utils.event.MinionEvent(opts, listen=False) as bus:
            sent = bus.fire_master(data, tag, timeout=2000) if master else bus.fire_event(
                data, tag, timeout=2000)
        assert sent

    @contextlib.contextmanager
    def lock_held(self):
        """Hold the module's lock (``<state_dir>/lock``), as a long operation would."""
        with open(Path(self.pillar["state_dir"]) / "lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield


@pytest.fixture(scope="module")
def received(b_pillar, tmp_path_factory, schema_file):
    """
    A backup of node-a's configuration, made and shipped into node-b's inbox by the module
    through Salt's loader: ``(name, config)``.
    """
    root = tmp_path_factory.mktemp("node-a")
    pillar = make_node(root / "node", "node-a", MASTER_VIP, schema_file,
                       {"transport": "local", "path": b_pillar["inbox_dir"]}, with_db=False)
    live = Path(pillar["datadir"]) / "proxysql.db"
    proxysql_db.build_db(live, proxysql_db.read_schema(schema_file), users=7, rules=4, seed=42)
    loaders = node_loaders(write_minion_config(root / "conf", "node-a", pillar))
    report = loaders.modules.proxysql_ha.ship()
    if not report.get("shipped"):
        raise RuntimeError(f"node-a did not ship: {report}")
    return report["name"], proxysql_db.dump_config(live)


def without_uuid(config):
    """Without what ProxySQL writes itself at start: its uuid and default variables."""
    return proxysql_db.without_startup_writes(config)


def ms_since(begin):
    return round((time.monotonic() - begin) * 1000)


def test_hook_up_returns_at_once_and_the_node_restores_the_backup_once_and_starts_proxysql(
        node, received):
    name, config = received
    uuid = dict(proxysql_db.dump_config(node.live)["global_settings"])["uuid"]
    assert without_uuid(proxysql_db.dump_config(node.live)) != without_uuid(config)
    assert not node.running()
    mark = len(node.minion_log())
    since, begin = time.time(), time.monotonic()

    out, hook_ms = run_hook(node.hook, *UP)

    assert out.returncode == 0, out.stderr
    assert hook_ms < HOOK_FAST
    assert wait_until(node.running, HANG)
    print(f"\nhook --ucarp-up returned in {hook_ms} ms; ProxySQL ran with the restored "
          f"configuration {ms_since(begin)} ms after the hook started")
    restored = proxysql_db.dump_config(node.live)
    assert dict(restored["global_settings"])["uuid"] == uuid  # beside it, the install's token
    assert without_uuid(restored) == without_uuid(config)
    assert node.live_state()["name"] == name
    # Both paths ran: the master's reactor (its promote job answered) and the reconcile job.
    assert node.returns(PROMOTE, since)
    assert wait_until(lambda: node.master_events("proxysql_ha/carp/MASTER", since), HANG)
    assert RAN_ON_REQUEST in node.minion_log(mark)
    # Exactly one of them acted (restored, started ProxySQL, fired promoted); the other found
    # the node in line and did nothing.
    assert wait_until(lambda: node.master_events("proxysql_ha/promoted", since), HANG)
    promoted = [event.data["data"] for event in node.master_events("proxysql_ha/promoted", since)]
    assert len(promoted) == 1 and promoted[0]["restore"]["restored"] is True
    # The takeover's plan did not list the schedule first; its steps switched the jobs after
    # ProxySQL's start.
    assert {job: (step["enabled"], step["result"])
            for job, step in promoted[0]["schedule"].items()} == {
        "proxysql_ha_ship": (True, True), "proxysql_ha_purge": (False, True)}
    assert [record["name"] for record in node.records()] == ["start"]
    assert len(list(Path(node.pillar["datadir"]).glob("proxysql.db.pre-restore-*"))) == 1
    by_reactor = node.returns(PROMOTE, since)[0]["return"]["acted"]
    print(f"restored and started by {'the reactor' if by_reactor else 'the reconcile job'}")


def test_a_minion_restarted_right_after_the_hook_converges_through_its_schedule(node):
    node.bring(UP)
    begin = time.monotonic()

    out, hook_ms = run_hook(node.hook, *DOWN)
    node.minion.terminate()
    node.minion.start()

    assert out.returncode == 0, out.stderr
    assert wait_until(lambda: not node.running(), HANG)
    print(f"\nhook --ucarp-down returned in {hook_ms} ms, the minion was restarted; "
          f"ProxySQL stopped {ms_since(begin)} ms after the hook started")


def test_flapping_ends_in_the_last_role_without_overlapping_operations(node):
    node.bring(UP)
    seen = len(node.records())
    since, begin = time.time(), time.monotonic()
    flaps = [DOWN, UP] * 10

    calls = [run_hook(node.hook, *action) for action in flaps]
    flapped_ms = ms_since(begin)

    assert [out.returncode for out, _ in calls] == [0] * len(flaps)
    slowest = max(hook_ms for _, hook_ms in calls)
    assert slowest < HOOK_FAST
    # One detached sender at a time, the newest pending transition wins: a flood coalesces into
    # fewer events (at least the last one), never more than one per call.
    answered = node.returns(PROMOTE, since)
    print(f"\n{len(flaps)} hook calls in {flapped_ms} ms (slowest {slowest} ms); "
          f"{len(answered)} reactor jobs had answered {ms_since(begin)} ms after the first call")
    assert 1 <= len(node.returns(PROMOTE + DEMOTE, since)) <= len(flaps)
    assert wait_until(node.running, HANG)
    # Each transition re-reads the role under the lock: jobs that ran after the flapping ended
    # find the node in line and do nothing, so there may be few records or none at all.
    # ProxySQL may run while the last transitions the flood queued still finish (a takeover's
    # journal goes once its records are written): the node ends in line with MASTER, bounded
    last = {}

    def in_line():
        last["plan"] = node.minion.salt_call_cli(timeout=60).run(
            "proxysql_ha.reconcile", "test=True").data
        return last["plan"]["actions"] == []

    assert wait_until(in_line, HANG, step=1), last["plan"]
    assert last["plan"]["role"] == "MASTER"
    records = node.records()[seen:]
    print(f"{len(records)} ProxySQL starts/stops during the flapping")
    assert overlapping(records) == []
    assert all(record["lock_held"] for record in records)
    assert all(record["rc"] == 0 for record in records)


@pytest.fixture
def ticks_paused(node):
    """
    The reconcile job's periodic runs paused (the job itself still runs on request), after one
    of them ran to its end; resumed afterwards.
    """
    mark = len(node.minion_log())
    ticked = node.wait_in_log(RAN_BY_TICK, mark, timeout=2 * RECONCILE_INTERVAL)
    assert ticked and node.wait_in_log(RECONCILE_ENDED, ticked)
    node.fire("manage_schedule", {"func": "disable_job", "name": RECONCILE_JOB, "persist": False})
    yield
    node.fire("manage_schedule", {"func": "enable_job", "name": RECONCILE_JOB, "persist": False})


def test_a_hook_request_that_comes_while_the_reconcile_job_runs_is_run_too(node, ticks_paused):
    """
    Salt 3008's maxrunning check drops every later run_job request of a job it once refused,
    so the jobs run with jid_include False and queue on the module's lock instead.
    """
    node.bring(DOWN)
    mark = len(node.minion_log())
    with node.lock_held():  # the reconcile job the hook asks for waits for the lock ...
        run_hook(node.hook, *UP)
        first = node.wait_in_log(RAN_ON_REQUEST, mark)
        assert first
        run_hook(node.hook, *UP)  # ... while this request comes: it must run as well
        assert node.wait_in_log(RAN_ON_REQUEST, first), "the second request was dropped"
    assert wait_until(node.running, HANG)
    mark, begin = len(node.minion_log()), time.monotonic()

    run_hook(node.hook, *DOWN)

    assert wait_until(lambda: not node.running(), HANG)
    stopped_ms = ms_since(begin)
    ran = node.wait_in_log(RAN_ON_REQUEST, mark, timeout=RECONCILE_INTERVAL)
    print(f"\nProxySQL stopped {stopped_ms} ms after the hook; the reconcile job ran on request: "
          f"{bool(ran)}")
    assert ran, "the minion ignored the hook's run_job request"


@pytest.fixture(scope="module")
def node_c(ha_master):
    """A second minion of the same master, without the extension."""
    minion = ha_master.salt_minion_daemon("node-c", overrides={"enable_fqdns_grains": False})
    with minion.started():
        yield minion


FORGED = {"state": "MASTER", "vhid": 9, "iface": "lo", "id": "node-c", "minion": "node-c"}
FOREIGN = (dict(FORGED, vhid=99), dict(FORGED, iface="eth9"))
MALFORMED = (dict(FORGED, state="EVIL"), dict(FORGED, vhid="9; rm -rf /"))


def test_forged_foreign_and_malformed_carp_events_change_nothing(node, node_c, ha_master):
    node.bring(DOWN)
    before = (len(node.records()), node.live_state())
    master_log = Path(ha_master.config["log_file"])
    log_before = len(master_log.read_text(errors="replace"))
    since = time.time()

    for payload in (FORGED, *FOREIGN, *MALFORMED):
        node.fire("proxysql_ha/carp/MASTER", payload, master=True)

    promotes = node.returns(PROMOTE, since, count=1 + len(FOREIGN))
    ignored = wait_until(lambda: master_log.read_text(errors="replace")[log_before:].count(
        'proxysql_ha reactor: ignored proxysql_ha/carp/MASTER from "node-b"') >= len(MALFORMED),
        HANG)
    assert ignored
    assert len(promotes) == 1 + len(FOREIGN)
    assert not node.master_events(f"salt/job/*/ret/{node_c.id}", since)
    refused = [ret for ret in promotes if "refused" in ret["return"]["comment"]]
    assert len(refused) == len(FOREIGN)
    assert all(ret["retcode"] == 1 for ret in refused)
    assert all(ret["return"]["acted"] is False for ret in promotes)
    assert (len(node.records()), node.live_state()) == before
    assert not node.running()


@pytest.fixture
def master_stopped(node):
    """The master stopped (node-b converged MASTER first), and started again afterwards."""
    node.bring(UP)
    node.master.terminate()
    yield
    node.master.start()


def test_without_the_master_the_hook_still_returns_at_once_and_the_node_converges(node,
                                                                                 master_stopped):
    for action, running in ((DOWN, False), (UP, True)):
        begin = time.monotonic()

        out, hook_ms = run_hook(node.hook, *action)

        assert out.returncode == 0, out.stderr
        assert hook_ms < HOOK_FAST
        assert wait_until(lambda: node.running() == running, HANG)
        print(f"\nmaster stopped: hook {action[0]} returned in {hook_ms} ms; ProxySQL "
              f"{'started' if running else 'stopped'} {ms_since(begin)} ms after the hook started")
