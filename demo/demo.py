#!/usr/bin/env python3
"""
`make demo`: a real CARP failover of a proxysql-ha pair, end to end, with a timeline in ms.

The two-host lab (lab/): hosts A and B are network namespaces on a bridge, each running real
ucarp (its up/down scripts are the project's hook), sshd (the peer's key may only run the
receive command), a salt-minion, and a ProxySQL stand-in (standin/; it is not ProxySQL).
One salt-master with the project's reactor. Root is needed; nothing leaves the machine.

The story: A is MASTER and ships; a change saved on A reaches B; A dies; B becomes MASTER,
restores and starts ProxySQL (each step timed) with A's last saved configuration, row for
row; A returns as BACKUP and shipping reverses; a planned switchover moves the VIP back to A,
which restores B's latest change. Everything is torn down at the end
(PROXYSQL_HA_LAB_KEEP=1 keeps the lab's directory: configs, daemon logs, recorded events).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# pylint: disable=wrong-import-position
from lab import Lab, LabUnavailable  # noqa: E402
from lab.netns import require  # noqa: E402
from lab.hosts import generation, newest_after  # noqa: E402
from lab.timeline import first, restored, stepped  # noqa: E402
from standin import proxysql_db# noqa: E402

ARRIVAL_SECONDS = 30
ALERT_SECONDS = 20  # the engine's layer check runs every 2 s in the lab
FAILOVER_SECONDS = 40
NOT_NOTICED = []  # the saves the engine did not notice: the demo fails
MAIN_TABLES = ("mysql_servers", "mysql_replication_hostgroups", "mysql_users",
               "mysql_query_rules", "global_variables", "proxysql_servers")


def schema_file():
    candidates = [os.environ.get("PROXYSQL_SCHEMA"), REPO.parent / "shared/proxysql/schema-3.0.1.sql"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    sys.exit(
        "demo: needs ProxySQL's table DDL: put shared/ beside the repository "
        "(shared/proxysql/schema-3.0.1.sql) or set PROXYSQL_SCHEMA=/path/to/schema.sql"
    )


def chapter(title):
    print(f"\n== {title}", flush=True)


def show(text):
    print(f"{'':14}{text}", flush=True)


# ---- reading what happened --------------------------------------------------------------








def delta(later, earlier):
    """``later - earlier`` in ms with its own sign: "+246 ms", or "-2777 ms" when it came first."""
    return f"{(later - earlier) * 1000:+.0f} ms"


def route(lab, host, since):
    """Which path ran the promote that restored: the master's reactor or the minion's own job."""
    ret = first(lab.master_events("salt/job/"), since,
                lambda d: d.get("fun") == "proxysql_ha.promote" and d.get("id") == host.minion_id
                and restored(d.get("return") or {}))
    return "the master's reactor" if ret else "the minion's reconcile job (hook -> run_job)"


def wait_for_arrival(lab, host, since_generation):
    """Wait for a newer complete backup in ``host``'s inbox; return its name and arrival time."""
    name = lab.wait_until(lambda: newest_after(host, since_generation), ARRIVAL_SECONDS,
                          f"a new backup in {host.minion_id}'s inbox", interval=0.02)
    return name, time.time()


def newest_generation(host):
    names = host.backups("inbox")
    return generation(names[-1]) if names else 0


# ---- the story --------------------------------------------------------------------------


def a_ships(lab, a, b):
    chapter("1. A is MASTER and ships its configuration to B")
    config = a.config()
    lab.say(f"A: ProxySQL configuration (ProxySQL's real schema): "
            f"{len(config['mysql_replication_hostgroups'])} replication hostgroup pairs, "
            f"{len(config['mysql_servers'])} servers, {len(config['mysql_users'])} users, "
            f"{len(config['mysql_query_rules'])} query rules")
    name, _ = wait_for_arrival(lab, b, 0)
    lab.say(f"B: {name} arrived in B's inbox (A's ship job, enabled by promote; "
            "ssh to B's restricted receive command)")
    status, _ = a.salt_call("proxysql_ha.status")
    ship = status.get("last_ship") or {}
    lab.say(f"A: salt-call proxysql_ha.status -> role {status['role']}, ProxySQL running "
            f"{status['proxysql_running']}, last ship ok {ship.get('ok')} to {ship.get('target')}, "
            f"problems: {[p['kind'] for p in status['problems']] or 'none'}")


def change_reaches_peer(lab, source, target, label):
    """Save a new MySQL user on ``source``; return the saved configuration once ``target`` has it."""
    before = newest_generation(target)
    saved_at = time.time()
    user = f"lab_{source.name}_ops"
    source.admin_session(
        f"INSERT INTO mysql_users (username, password, default_hostgroup) VALUES "
        f"('{user}', '{proxysql_db.mysql_native_hash(user)}', 10); "
        "LOAD MYSQL USERS TO RUNTIME; SAVE MYSQL USERS TO DISK;")
    saved = source.config()
    lab.say(f"{label}: an operator's admin session (mariadb client on {label}'s admin interface "
            f"127.0.0.1:6032): INSERT INTO mysql_users ('{user}'); LOAD MYSQL USERS TO RUNTIME; "
            "SAVE MYSQL USERS TO DISK (the save: DELETE and INSERT committed separately, as "
            "ProxySQL does)", at=saved_at)
    name, arrived = wait_for_arrival(lab, target, before)
    noticed = first(source.events("manage_schedule"), saved_at,
                    lambda d: d.get("func") == "run_job" and d.get("name") == "proxysql_ha_ship")
    if not noticed:
        NOT_NOTICED.append(label)
        lab.say(f"{label}: FAILED: the engine never asked for the ship job after the save "
                "(no run_job on the minion's bus); the change came by the schedule")
    else:
        lab.say(f"{label}: the engine noticed the write and ran the ship job "
                f"({delta(noticed['t'], saved_at)})", at=noticed["t"])
    lab.say(f"{target.name.upper()}: generation {generation(name)} from {source.minion_id} arrived "
            f"{(arrived - saved_at) * 1000:.0f} ms after the save", at=arrived)
    return saved


def unsaved_change_alert(lab, a, b):
    """
    A change loaded to runtime but not saved on A: the engine's layer check alerts it naming
    MYSQL USERS, ``check`` says what to run; the operator saves and it clears. Returns A's
    configuration once B has the saved change.
    """
    chapter("2b. A change loaded to runtime but not saved: the alert, before any failover")
    user = f"lab_{a.name}_ops"  # the user change_reaches_peer added
    since = time.time()
    a.admin_session(f"UPDATE mysql_users SET max_connections = 500 WHERE username = '{user}'; "
                    "LOAD MYSQL USERS TO RUNTIME;")
    lab.say(f"A: admin session: UPDATE mysql_users SET max_connections = 500 WHERE username = "
            f"'{user}'; LOAD MYSQL USERS TO RUNTIME (and no SAVE)", at=since)
    alert = lab.wait_until(
        lambda: first(a.events("proxysql_ha/alert/config_not_saved"), since),
        ALERT_SECONDS, "the engine's config_not_saved alert on A", interval=0.1)
    lab.say(f"A: engine fired proxysql_ha/alert/config_not_saved ({delta(alert['t'], since)}): "
            f"{alert['data']['message']}", at=alert["t"])
    healthy, _ = a.salt_call("proxysql_ha.check")
    status, _ = a.salt_call("proxysql_ha.status")
    kinds = [p["kind"] for p in status["problems"]]
    lab.say(f"A: salt-call proxysql_ha.check -> {healthy}; problems {kinds}; admin "
            f"{status['admin']['address']} reachable {status['admin_reachable']}")
    before = newest_generation(b)
    saved_at = time.time()
    a.admin_session("SAVE MYSQL USERS TO DISK;")
    lab.say("A: the operator runs SAVE MYSQL USERS TO DISK", at=saved_at)
    wait_for_arrival(lab, b, before)
    healthy, _ = a.salt_call("proxysql_ha.check")
    lab.say(f"A: salt-call proxysql_ha.check -> {healthy}: the alert cleared; B has the saved "
            "change")
    if "config_not_saved" not in kinds or healthy is not True:
        NOT_NOTICED.append("A's unsaved change")
    return a.config()


def a_dies(lab, a, b):
    chapter("3. A dies: its link goes down, its ucarp and salt-minion are killed")
    died = time.time()
    a.kill()
    lab.say("A: link down, ucarp and salt-minion killed (SIGKILL: no down-script runs)", at=died)
    lab.wait_until(lambda: b.role() == "MASTER" and b.proxysql_running()
                   and first(b.events("proxysql_ha/promoted"), died, restored),
                   FAILOVER_SECONDS, "B to become MASTER and restore")
    return takeover(lab, b, died, "A died")


def takeover(lab, host, since, cause):
    """Narrate ``host``'s promotion after ``since``, step by step; return ProxySQL's start time."""
    who = host.name.upper()
    up = stepped(host, since, "up")
    hook = first(host.events("proxysql_ha/carp/MASTER"), since)
    promoted = first(host.events("proxysql_ha/promoted"), since, restored)
    report = promoted["data"]
    running = host.loaded()["started"]
    started = promoted["t"] - report["ms"] / 1000
    restore = report["restore"]
    steps = restore.get("steps_ms", {})
    lab.say(f"{who}: ucarp MASTER, up-script ran: VIP {lab.vip} added "
            f"({(up - since) * 1000:.0f} ms after {cause})", at=up)
    lab.say(f"{who}: the hook's events are on the minion's bus: reconcile job asked, "
            f"proxysql_ha/carp/MASTER ({delta(hook['t'], up)})", at=hook["t"])
    lab.say(f"{who}: promote starts, through {route(lab, host, since)} "
            f"({delta(started, hook['t'])})", at=started)
    lab.say(f"{who}: restored {restore['chosen']} in {restore['ms']:.0f} ms (stop step "
            f"{steps.get('stop', 0):.0f} ms, verified copy installed {steps.get('install', 0):.0f} "
            f"ms); ProxySQL (stand-in) started on it", at=running)
    lab.say(f"{who}: promote done in {report['ms']:.0f} ms: ship job enabled, purge job disabled",
            at=promoted["t"])
    show(f"{cause} -> ProxySQL running on {who}: {(running - since) * 1000:.0f} ms "
         f"(ucarp's detection {(up - since) * 1000:.0f} ms; up-script -> ProxySQL running "
         f"{(running - up) * 1000:.0f} ms)")
    return running


def compare(lab, host, want, source):
    """Print ``host``'s live configuration against ``want`` table by table; True when equal."""
    raw = host.config()
    loaded = host.loaded()["config"]
    # without what ProxySQL writes itself at start: its uuid, the default global_variables
    got, wanted = proxysql_db.without_startup_writes(raw), proxysql_db.without_startup_writes(want)
    tables = sorted(set(raw) | set(want))
    equal = [t for t in tables if t == "global_settings" or got.get(t) == wanted.get(t)]
    show(f"{'table':32}{source + ' saved':>14}{host.name.upper() + ' loaded':>12}")
    for table in MAIN_TABLES:
        verdict = "equal" if table in equal else "DIFFERENT"
        show(f"{table:32}{len(want.get(table, [])):>14}{loaded.get(table, 0):>12}   {verdict}")
    others = [t for t in tables if t not in MAIN_TABLES and t != "global_settings"]
    show(f"{len(others)} other tables: {'equal' if set(others) <= set(equal) else 'DIFFERENT'} "
         f"({sum(len(want.get(t, [])) for t in others)} rows)")
    # the uuid alone: an install also writes its own token there (proxysql_ha_install)
    uuid_of = lambda config: dict(config.get("global_settings", [])).get("uuid")  # noqa: E731
    own = "kept its own" if uuid_of(raw) != uuid_of(want) else "TOOK THE PEER'S"
    show(f"global_settings: {host.name.upper()} {own} ProxySQL Cluster uuid")
    same = len(equal) == len(tables)
    rows = sum(len(want.get(t, [])) for t in tables if t != "global_settings")
    lab.say(f"{host.name.upper()}: configuration equals {source}'s last saved one, row for row "
            f"({rows} rows in {len(tables) - 1} tables; not counting what ProxySQL writes itself "
            f"at start: its uuid and default global_variables): {same}")
    return same


def a_returns(lab, a, b):
    chapter("4. A returns as BACKUP; shipping reverses")
    back = time.time()
    a.revive()
    lab.say("A: back as after a reboot (no VIP), link up, salt-minion connected, ucarp started",
            at=back)
    demoted = lab.wait_until(lambda: first(a.events("proxysql_ha/demoted"), back,
                                            lambda d: d.get("stopped")),
                             FAILOVER_SECONDS, "A's demote to stop ProxySQL")
    down = stepped(a, back, "down")
    lab.say("A: ucarp BACKUP, down-script ran (B is MASTER: A does not preempt)", at=down)
    say_demoted(lab, a, demoted)
    return change_reaches_peer(lab, b, a, "B")


def say_demoted(lab, host, demoted):
    lab.say(f"{host.name.upper()}: demote done in {demoted['data']['ms']:.0f} ms: ProxySQL "
            "stopped, ship job disabled, purge job enabled", at=demoted["t"])


def switch_back(lab, a, b, want):
    chapter("5. Planned switchover: the VIP moves back to A")
    asked = time.time()
    b.step_down()
    lab.say("B: ucarp told to give up MASTER (SIGUSR2: BACKUP, 3 s pause, then listens)",
            at=asked)
    lab.wait_until(lambda: a.role() == "MASTER" and a.proxysql_running()
                   and first(a.events("proxysql_ha/promoted"), asked, restored),
                   FAILOVER_SECONDS, "A to become MASTER and restore")
    demoted = lab.wait_until(lambda: first(b.events("proxysql_ha/demoted"), asked,
                                            lambda d: d.get("stopped")),
                             FAILOVER_SECONDS, "B's demote to stop ProxySQL")
    lab.say("B: ucarp BACKUP, down-script ran: VIP removed", at=stepped(b, asked, "down"))
    say_demoted(lab, b, demoted)
    takeover(lab, a, asked, "the switchover began")
    return compare(lab, a, want, "B")


def final_status(lab):
    chapter("6. Both nodes, as Salt sees them")
    status = lab.salt(["node-a", "node-b"], "proxysql_ha.status")
    for minion in sorted(status):
        report = status[minion]
        lab.say(f"{minion}: role {report['role']}, ProxySQL running {report['proxysql_running']}, "
                f"newest received {(report.get('newest_valid_received') or {}).get('name')}, "
                f"problems: {[p['kind'] for p in report['problems']] or 'none'}")


def leftovers(prefix, directory):
    """Namespaces and processes of this run still there after teardown."""
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                timeout=10, check=False).stdout
    ours = [line.split()[0] for line in namespaces.splitlines() if line.startswith(prefix)]
    processes = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if str(directory).encode() in (proc / "cmdline").read_bytes():
                processes.append(int(proc.name))
        except OSError:
            continue
    return ours, processes


def warm_failover(schema):
    """
    A second lab with ``standby: warm``: B's ProxySQL already runs and applies each backup A
    ships; when A dies the takeover only moves the VIP (B's ProxySQL keeps its pid).
    """
    with Lab(schema, pillar={"standby": "warm"}) as lab:
        a, b = lab.host("a"), lab.host("b")
        chapter("W. A warm standby (standby: warm): B's ProxySQL runs and applies what A ships")
        name = lab.wait_until(lambda: newest_after(b, 0), 4 * ARRIVAL_SECONDS,
                              "A's first backup in B's inbox", interval=0.1)
        lab.wait_until(lambda: (b.node.state_dir / "verify.json").exists()
                       and not (b.node.state_dir / "transition.json").exists(),
                       4 * ARRIVAL_SECONDS, "B to apply what A shipped")
        pid = b.node.pidfile.read_text().strip()
        verify = json.loads((b.node.state_dir / "verify.json").read_text())
        lab.say(f"B: applied {name} to its running ProxySQL (pid {pid}): installed, PROXYSQL "
                f"FLUSH CONFIGDB, LOAD ... FROM DISK / TO RUNTIME; runtime checked against the "
                f"file: verified {verify.get('verified')}, problems {verify.get('problems') or 'none'}")
        died = time.time()
        a.kill()
        lab.say("A: link down, ucarp and salt-minion killed", at=died)
        promoted = lab.wait_until(
            lambda: b.role() == "MASTER" and first(b.events("proxysql_ha/promoted"), died),
            FAILOVER_SECONDS, "B to become MASTER")
        up = stepped(b, died, "up")
        after = b.node.pidfile.read_text().strip()
        lab.say(f"B: ucarp MASTER, up-script ran: VIP {lab.vip} added "
                f"({(up - died) * 1000:.0f} ms after A died)", at=up)
        lab.say(f"B: promote done in {promoted['data']['ms']:.0f} ms: nothing to restore "
                f"({promoted['data'].get('apply', {}).get('how')}), ProxySQL pid {after} "
                f"{'unchanged' if after == pid else 'CHANGED'}", at=promoted["t"])
        show(f"warm takeover: only the VIP moved; B's ProxySQL kept pid {pid}")
        return after == pid


def main():
    schema = schema_file()
    try:
        require()
    except LabUnavailable as exc:
        sys.exit(f"demo: {exc}")
    began = time.monotonic()
    print("proxysql-ha two-host lab: real ucarp, sshd, salt-master and minions in network "
          "namespaces;\nProxySQL is played by a stand-in (standin/proxysql_standin.py). "
          "[ms] since the lab began.\n")
    try:
        with Lab(schema, keep_dir=bool(os.environ.get("PROXYSQL_HA_LAB_KEEP"))) as lab:
            a, b = lab.host("a"), lab.host("b")
            a_ships(lab, a, b)
            chapter("2. A configuration change saved on A reaches B")
            last_a = change_reaches_peer(lab, a, b, "A")
            last_a = unsaved_change_alert(lab, a, b)
            a_dies(lab, a, b)
            ok = compare(lab, b, last_a, "A")
            last_b = a_returns(lab, a, b)
            ok = switch_back(lab, a, b, last_b) and ok
            final_status(lab)
            prefix, directory = lab.prefix, lab.dir
        ok = warm_failover(schema) and ok
    except LabUnavailable as exc:
        sys.exit(f"demo: {exc}")
    except KeyboardInterrupt:
        sys.exit("\ndemo: interrupted; the lab was torn down")
    namespaces, processes = leftovers(prefix, directory)
    chapter("Torn down")
    print(f"namespaces {prefix}* left: {namespaces or 'none'}; processes left: "
          f"{processes or 'none'}; total {time.monotonic() - began:.1f} s")
    if NOT_NOTICED:
        print(f"demo: FAILED: the engine did not notice the save on {', '.join(NOT_NOTICED)}")
    if not ok or namespaces or processes or NOT_NOTICED:
        sys.exit(1)


if __name__ == "__main__":
    main()
