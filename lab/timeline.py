"""
Reading what happened in the lab, from recorded events and ucarp's script runs: shared by
``make demo``, the end-to-end tests and the benchmark.
"""


def first(events, since, test=lambda data: True):
    """The first recorded event at or after ``since`` (epoch) whose data passes ``test``, or None."""
    return next((e for e in events if e["t"] >= since and test(e["data"])), None)


def restored(data):
    """Whether a promote report (``proxysql_ha/promoted``, a job's return) says it restored."""
    return bool((data.get("restore") or {}).get("restored"))


def stepped(host, since, direction):
    """Epoch time of the first ucarp ``up``/``down`` script run on ``host`` after ``since``."""
    return next((t for t, d in host.transitions() if t >= since and d == direction), None)
