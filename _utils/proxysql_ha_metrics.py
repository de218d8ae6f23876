"""
Metrics in node_exporter's textfile format, and the counters behind them.

Pure logic except :func:`write_textfile`: :func:`facts` turns what the module
gathered once (its ``status()`` report, the counters kept in the state dir, the
recorded role) into plain numbers, :func:`render` turns those into the text
format (``# HELP`` / ``# TYPE`` lines, one prefix ``proxysql_ha_``, base units,
``_seconds``, ``_timestamp_seconds``, ``_total``). Labels take only values from
fixed, small sets (a role, a problem kind, ``local``/``received``, the version).

Counters persist in ``<state_dir>/metrics.json`` (written atomically by the
module under its lock): :func:`bump` is the pure update.
"""

import math
import os

__virtualname__ = "proxysql_ha_metrics"

VERSION = "0.1.0"  # setup.cfg's version (a unit test keeps them equal)
PREFIX = "proxysql_ha_"
COUNTERS_STATE = "metrics.json"
ROLES = ("MASTER", "BACKUP", "INIT")
# Every problem kind `check` knows (each is a 0/1 gauge, so an alert can match it).
PROBLEM_KINDS = (
    "role_unreadable", "proxysql_unknown", "master_proxysql_down", "backup_proxysql_up",
    "backup_invalid", "backup_stale", "ship_failed", "received_invalid",
    "datadir_missing", "ssh_key_missing",
    "admin_unreachable", "admin_denied", "config_not_saved", "config_not_loaded",
    "restore_not_loaded", "backup_config_changed",
)
COUNTER_NAMES = ("ship_failures", "restores", "failovers")


def __virtual__():
    return __virtualname__


def version():
    """The extension's version."""
    return VERSION


def bump(counters, name, amount=1, **gauges):
    """A copy of ``counters`` with ``name`` raised by ``amount`` and ``gauges`` set."""
    if name not in COUNTER_NAMES:
        raise ValueError(f"unknown counter {name!r}")
    out = dict(counters or {})
    out[name] = int(out.get(name, 0) or 0) + amount
    out.update(gauges)
    return out


def facts(report, counters, role_state, version, now):
    """
    The numbers to publish, from one ``status()`` ``report``, the persisted
    ``counters`` (``metrics.json``), the recorded ``role_state`` (``role.json``:
    ``vip_released`` is counted there when present) and the extension's
    ``version``. ``None`` means unknown: the sample is left out (its HELP stays).
    """
    counters = counters or {}
    role_state = role_state or {}
    last_ship = report.get("last_ship") or {}
    found = {p.get("kind") for p in report.get("problems") or ()}

    def backup(entry):
        if not entry or not entry.get("valid"):
            return None, None
        return entry.get("age"), entry.get("generation")

    local_age, local_gen = backup(report.get("newest_valid_backup"))
    recv_age, recv_gen = backup(report.get("newest_valid_received"))
    restore_ms = counters.get("last_restore_ms")
    return {
        "version": str(version),
        "role": report.get("role"),
        "proxysql_running": _bool(report.get("proxysql_running")),
        "proxysql_serving": _bool(report.get("proxysql_serving")),
        "backup_age": {"local": local_age, "received": recv_age},
        "backup_generation": {"local": local_gen, "received": recv_gen},
        "last_ship_success": last_ship.get("last_success"),
        "ship_failures": int(counters.get("ship_failures", 0) or 0),
        "restores": int(counters.get("restores", 0) or 0),
        "last_restore_duration": None if restore_ms is None else restore_ms / 1000.0,
        "failovers": int(counters.get("failovers", 0) or 0),
        "vip_releases": _int(role_state.get("vip_released")),
        "problems": {kind: int(kind in found)
                     for kind in sorted(set(PROBLEM_KINDS) | {k for k in found if k})},
        "generated": now,
    }


def _bool(value):
    return None if value is None else int(bool(value))


def _int(value):
    """A count kept in state: a number, or a list of events (its length); 0 when absent."""
    if isinstance(value, bool) or value is None:
        return int(bool(value))
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, (list, tuple, dict)):
        return len(value)
    return 1


def render(data):
    """The textfile for ``data`` (from :func:`facts`): HELP and TYPE for every metric."""
    out = []

    def metric(name, kind, help_text, samples):
        out.append(f"# HELP {PREFIX}{name} {help_text}")
        out.append(f"# TYPE {PREFIX}{name} {kind}")
        for labels, value in samples:
            if value is None:
                continue
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            out.append(f"{PREFIX}{name}{'{' + text + '}' if text else ''} {_number(value)}")

    metric("info", "gauge", "The proxysql-ha extension's version (always 1).",
           [((("version", data["version"]),), 1)])
    metric("role", "gauge", "1 for this node's CARP role, 0 for the others; no sample when the "
           "role cannot be read.",
           [] if data["role"] not in ROLES else
           [((("role", r),), int(r == data["role"])) for r in ROLES])
    metric("proxysql_running", "gauge", "1 when ProxySQL runs, 0 when not; no sample when unknown.",
           [((), data["proxysql_running"])])
    metric("proxysql_serving", "gauge", "1 when ProxySQL answers on its admin interface, 0 when "
           "not; no sample when not known.", [((), data["proxysql_serving"])])
    metric("backup_age_seconds", "gauge", "Age of the newest valid backup: local (outgoing) or "
           "received (inbox).",
           [((("source", s),), data["backup_age"][s]) for s in ("local", "received")])
    metric("backup_generation", "gauge", "Generation of the newest valid backup: local or received.",
           [((("source", s),), data["backup_generation"][s]) for s in ("local", "received")])
    metric("last_ship_success_timestamp_seconds", "gauge",
           "Unix time of the last successful ship to the peer.", [((), data["last_ship_success"])])
    metric("ship_failures_total", "counter", "Ships to the peer that failed.",
           [((), data["ship_failures"])])
    metric("restores_total", "counter", "Restores of a backup into ProxySQL's datadir.",
           [((), data["restores"])])
    metric("last_restore_duration_seconds", "gauge", "How long the last restore took.",
           [((), data["last_restore_duration"])])
    metric("failovers_total", "counter", "Times this node took over as MASTER.",
           [((), data["failovers"])])
    metric("vip_releases_total", "counter", "Times this node gave up the virtual IP on its own.",
           [((), data["vip_releases"])])
    metric("problem", "gauge", "1 while check reports this problem kind, else 0.",
           [((("kind", k),), v) for k, v in data["problems"].items()])
    metric("metrics_timestamp_seconds", "gauge", "Unix time these metrics were gathered.",
           [((), data["generated"])])
    return "\n".join(out) + "\n"


def _escape(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value):
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return "NaN"
    return repr(round(value, 6))


def write_textfile(directory, name, text, new_tmp, publish):
    """
    Write ``text`` as ``directory/name`` atomically: a temporary file of the
    store's naming (``new_tmp``; not ending in ``.prom``, so the collector never
    reads it half written), made 0644 (node_exporter runs as its own user; the
    file holds no secret), then renamed (``publish``).
    """
    tmp = new_tmp(directory, ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        final = os.path.join(directory, name)
        publish(tmp, final)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return final
