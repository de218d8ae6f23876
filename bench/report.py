"""The benchmark's results as Markdown (docs/BENCHMARKS.md): pure functions."""

from bench.stats import fmt, table

TARGETS = {
    "idle": "≤ 5 ms CPU, no connection",
    "changed": "no slower than the classic recipe on the large database",
    "restore": "≤ 500 ms on the large database",
    "failover_up": "p95 ≤ 1 s",
    "failover_down": "p95 ≤ 3 s",
    "rpo": "p95 ≤ 3 s",
}


def render(results, command, machine, date, quick):
    parts = [
        "# Benchmarks",
        "",
        f"Measured {date} on {machine}, by `{command}`."
        + (" Quick mode: one run of each part on small data; not the reference numbers." if quick else ""),
        "Medians unless a percentile is named. The classic recipe is the plain-script approach "
        "this project replaces, reimplemented in `bench/classic/` as a faithful baseline: a cron job "
        "running `sqlite3 proxysql.db \".backup FILE\"` and `scp` to the standby, and a devd action "
        "that copies the newest file by mtime into the datadir, chowns it and starts ProxySQL, "
        "without any validation. Both sides run in the same run on the same data and the same sshd.",
        "",
    ]
    parts += _local(results["local"])
    parts += _lab(results["lab"])
    return "\n".join(parts) + "\n"


def _skipped(title, section):
    return [f"## {title}", "", f"Skipped: {section['skipped']}.", ""]


def _local(local):
    if "skipped" in local:
        return _skipped("On one machine (1-4)", local)
    idle = local["idle"]
    out = [
        "## 1. Idle shipping tick (configuration unchanged)",
        "",
        f"Target: {TARGETS['idle']}.",
        "",
        table(["what", "CPU", "wall", "SSH connections"], [
            ["`proxysql_ha.ship` called with nothing new", fmt(idle["ship_cpu_ms"], "ms"),
             fmt(idle["ship_wall_ms"], "ms"), f"{idle['ssh_connections']} in {idle['runs']} calls"],
            ["engine tick (`stat()` of proxysql.db)", fmt(idle["engine_tick_cpu_us"], "µs"), "–", "0"],
        ]),
        "",
        "As a Salt schedule job the same call also costs the minion's fork and return "
        "(about 70 ms of CPU per run, measured on Salt 3008.4: shared/proxysql/NOTES.md); that is "
        "why a saved change is noticed by the engine's `stat()` every 0.25 s, and the ship job "
        "itself runs every 10 s only as a safety net.",
        "",
        "## 2. A saved change: backup + verify + ship",
        "",
        f"Target: {TARGETS['changed']}, while doing the checks it skips (settle window, "
        "change detection, integrity_check, schema fingerprint, manifest, sha256 on arrival).",
        "",
    ]
    rows = []
    for size, row in local["changed"].items():
        rows.append([f"{size} ({row['size_mb']:.1f} MB)", fmt(row["ours_wall_ms"], "ms"),
                     fmt(row["ours_cpu_ms"], "ms"), fmt(row["classic_wall_ms"], "ms"),
                     fmt(row["classic_cpu_ms"], "ms"), fmt(row["wall_ratio"]),
                     fmt(row["ours_with_settle_ms"], "ms")])
    out += [table(["database", "ours wall", "ours CPU", "classic wall", "classic CPU",
                   "wall ratio", "ours right after the save"], rows), "",
            "\"Ours right after the save\" includes the settle window (0.5 s without a write, so a "
            "half-saved database is never copied); the other columns start once it has passed.", ""]
    out += ["## 3. Restore: full validation vs the classic unvalidated copy", "",
            f"Target: {TARGETS['restore']}. Both include starting ProxySQL (the stand-in).", ""]
    rows = [[size, fmt(row["ours_wall_ms"], "ms"), fmt(row["ours_install_ms"], "ms"),
             fmt(row["classic_wall_ms"], "ms"), fmt(row["wall_ratio"])]
            for size, row in local["restore"].items()]
    out += [table(["database", "ours (choose, verify, install, start)", "of which install",
                   "classic (copy, chown, start)", "wall ratio"], rows), ""]
    out += ["## 4. Cost as the work grows", "",
            "Each operation in a fresh process: time, and peak memory (RSS) above the same "
            "process doing nothing (Python with Salt's exceptions imported, about 110 MB).", ""]
    rows = [[f"{row['users']:,} / {row['rules']:,}", f"{row['size_mb']:.1f} MB",
             *[f"{fmt(row[op][0], 'ms')}, +{row[op][1]:.1f} MB" for op in ("backup", "verify", "restore")]]
            for row in local["growth"]]
    out += [table(["users / rules", "size", "backup", "verify", "restore copy"], rows), ""]
    out += _inspection(local.get("inspection"))
    return out


def _inspection(row):
    """Judging candidates: one read each, so ten cost ten times one and memory stays flat."""
    if not row:
        return []
    one, ten = row["verify"], row["inspect10"]
    return [f"Inspection of a candidate ({row['users']:,} users, {row['size_mb']:.1f} MB: one read, "
            "one open in memory), one against ten in one process:", "",
            table(["candidates", "time", "peak memory above idle", "time per candidate"],
                  [["1", fmt(one[0], "ms"), f"+{one[1]:.1f} MB", fmt(one[0], "ms")],
                   ["10", fmt(ten[0], "ms"), f"+{ten[1]:.1f} MB", fmt(ten[0] / 10, "ms")]]), ""]


def _lab(lab):
    if "skipped" in lab:
        return _skipped("In the two-host lab (5-6)", lab)
    out = ["## 5. Failover time in the two-host lab", "",
           "From ucarp running the up-script on the new MASTER to ProxySQL started with the "
           f"restored configuration. Targets: master up {TARGETS['failover_up']}, master down "
           f"{TARGETS['failover_down']}.", ""]
    rows = [[name, row["n"], fmt(row["p50_ms"], "ms"), fmt(row["p95_ms"], "ms")]
            for name, row in lab["failover"].items()]
    out += [table(["", "failovers", "p50", "p95"], rows), ""]
    out += ["## 6. RPO in the two-host lab", "",
            f"From a saved change on the MASTER to a valid copy on the BACKUP. Target: {TARGETS['rpo']}.", ""]
    rows = [[name, row["n"], fmt(row["p50_ms"], "ms"), fmt(row["p95_ms"], "ms")]
            for name, row in lab["rpo"].items()]
    out += [table(["", "changes", "p50", "p95"], rows), ""]
    if lab.get("notes"):
        out += lab["notes"] + [""]
    if "idle" in lab:
        out += _idle(lab["idle"])
    return out


def _idle(idle):
    """The idle cost of each node above a bare salt-minion (one cgroup per minion)."""
    if "skipped" in idle:
        return _skipped("Idle cost per node in the two-host lab", idle)
    target = idle["target_pct"]
    rows = [[f"host {name.upper()}", fmt(pct, "%"), fmt(pct - idle["bare_pct"], "%"),
             "yes" if pct - idle["bare_pct"] <= target else "NO"]
            for name, pct in sorted(idle["nodes"].items())]
    rows.append(["bare salt-minion (no extension)", fmt(idle["bare_pct"], "%"), "-", "-"])
    return ["## Idle cost per node in the two-host lab", "",
            f"CPU of each salt-minion with everything it forks (a cgroup per minion, "
            f"{idle['seconds']:g} s of nothing changing), in % of one core. Target: at most "
            f"{target:g} % above a bare minion.", "",
            table(["", "CPU", "above the bare minion", "within target"], rows), ""]
