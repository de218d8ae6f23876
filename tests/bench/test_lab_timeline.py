"""
How the lab bench reads one failover from what the lab recorded (pure: made-up events, no lab):
which path restored, and the steps of each path.
"""

from bench import lab_bench

UP = 1000.0  # epoch of the up-script


class FakeHost:
    minion_id = "node-b"

    def __init__(self, events):
        self._events = events

    def events(self, tag=""):
        return [e for e in self._events if e["tag"].startswith(tag)]

    def transitions(self):
        return [(UP, "up")]


def event(t, tag, **data):
    return {"t": UP + t, "tag": tag, "data": data}


def report(ms=300.0):
    return {"ms": ms, "start_ms": 100.0,
            "restore": {"restored": True, "ms": 20.0, "steps_ms": {"install": 18.0}}}


def minion_events(extra=()):
    return [
        event(0.05, "proxysql_ha/carp/MASTER", timestamp=UP + 0.04, state="MASTER"),
        event(0.06, "manage_schedule", func="run_job", name=lab_bench.RECONCILE_JOB),
        event(0.20, "manage_schedule", func="list"),   # the plan
        event(0.45, "manage_schedule", func="list"),   # the schedule step, after the start
        *extra,
    ]


def reactor_events(restored_by_reactor):
    ret = {"restored": True} if restored_by_reactor else {}
    return [
        event(0.08, "proxysql_ha/carp/MASTER", id="node-b", data={"state": "MASTER"}),
        event(0.10, "salt/job/1/new", fun=lab_bench.PROMOTE, minions=["node-b"]),
        event(0.60, "salt/job/1/ret/node-b", fun=lab_bench.PROMOTE, id="node-b",
              **{"return": {"acted": True, "restore": ret} if ret else {"acted": False}}),
    ]


def test_a_failover_the_reconcile_job_restored_is_read_as_the_minions_path():
    host = FakeHost(minion_events())
    promoted = event(0.50, "proxysql_ha/promoted", **report())  # began at +0.2 s
    row = lab_bench.timeline(host, UP - 1, promoted, {"started": UP + 0.40},
                             reactor_events(restored_by_reactor=False))
    assert row["by"] == "minion"
    assert round(row["hook"]) == 40 and round(row["relay"]) == 20
    assert round(row["dispatch"]) == 140 and row["reactor"] is None
    assert round(row["total"]) == 400 and round(row["promote"]) == 200
    assert round(row["published"]) == 100  # the reactor's job, which lost the race
    assert round(row["schedule"]) == 50 and round(row["plan"]) == 300 - 20 - 100 - 50


def test_a_failover_the_reactors_promote_restored_is_read_as_the_reactors_path():
    host = FakeHost(minion_events())
    promoted = event(0.50, "proxysql_ha/promoted", **report())
    row = lab_bench.timeline(host, UP - 1, promoted, {"started": UP + 0.40},
                             reactor_events(restored_by_reactor=True))
    assert row["by"] == "reactor"
    assert round(row["relay"]) == 40  # hook (+0.04) to the event on the master's bus (+0.08)
    assert round(row["reactor"]) == 20  # to the job's publication (+0.10)
    assert round(row["dispatch"]) == 100  # to promote's start (+0.20)


def test_without_the_schedule_steps_list_the_plan_keeps_the_whole_rest():
    host = FakeHost([e for e in minion_events() if e["data"].get("func") != "list"])
    split = lab_bench.split_plan(host, UP + 0.2, report())
    assert split == {"plan": 300.0 - 20 - 100, "schedule": None, "after": None}


def test_promotes_own_plan_time_splits_the_rest_into_before_and_after_the_start():
    host = FakeHost(minion_events())
    split = lab_bench.split_plan(host, UP + 0.2, dict(report(), plan_ms=12.0))
    assert {key: round(value, 6) for key, value in split.items()} == \
        {"plan": 12.0, "schedule": 50.0, "after": 300.0 - 20 - 100 - 50 - 12.0}
    row = {"hook": 40.0, "relay": 5.0, "dispatch": 200.0, "reactor": None, "install": 20.0,
           **split}
    assert lab_bench.own_share(row) == 277.0
    assert lab_bench.own_share(dict(row, dispatch=None)) is None


def test_the_warm_note_judges_the_vip_p95_and_says_why_when_the_warm_lab_failed():
    rows = {"race": [{"total": 100.0, "vip": 150.0}], "reactor": [{"total": 100.0, "vip": 160.0}],
            "down": [{"total": 100.0, "vip": 170.0}], "classic": [{"total": 100.0, "vip": 130.0}],
            "warm": [{"total": None, "vip": 40.0, "hook": 30.0, "restarted": False, "how": "serving"},
                     {"total": None, "vip": 120.0, "hook": 35.0, "restarted": True, "how": "serving"}]}
    failover = {lab_bench.ROWS[key]: lab_bench.failover_summary(value) for key, value in rows.items()}
    note = lab_bench.warm_note(failover, {"timelines": rows})
    assert "warm p95 120.0 ms (MISSED) on the VIP" in note
    assert "restarted: 1 of 2" in note and "30.0 ms after the up-script" in note
    assert "50.0 ms (race (as set up)), 60.0 ms (reactor alone), 70.0 ms (master down)" in note
    del failover[lab_bench.ROWS["warm"]]
    assert lab_bench.warm_note(failover, {"warm_skipped": "the warm lab run failed: x"}) == \
        "Warm standby row: skipped: the warm lab run failed: x."


def test_the_health_note_gives_each_step_from_the_death_and_the_grace_it_ran_with():
    rows = [{"total": 9000.0, "vip": 9100.0, "released": 3000.0, "carp": 4000.0, "start": 900.0},
            {"total": 9400.0, "vip": 9500.0, "released": 3200.0, "carp": 4200.0, "start": 1000.0}]
    failover = {lab_bench.ROWS["health"]: lab_bench.failover_summary(rows)}
    profile = {"timelines": {"health": rows}, "settings": {"health_grace": (2, 5.0)}}
    note = lab_bench.health_note(failover, profile)
    assert "2 times ProxySQL was stopped" in note and "`health:grace`, 2 s in the lab, the default 5 s, and one that fails ends it at once" in note
    assert "gave up the VIP 3000.0 ms after the death" in note and "up-script 4000.0 ms later" in note
    assert "p95 9500.0 ms from the death" in note
    assert lab_bench.health_note({}, profile) == "Health row: not measured in this run."
