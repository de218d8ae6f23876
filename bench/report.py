"""The benchmark's results as Markdown (docs/BENCHMARKS.md): pure functions."""

from bench.stats import fmt, table

TARGETS = {
    "idle": "≤ 5 ms CPU, no connection",
    "changed": "no slower than the classic recipe on the large database",
    "restore": "≤ 500 ms on the large database",
    "warm_apply": "≤ 0.5 s on the large (14 MB) database",
    "failover_warm": "p95 ≤ 100 ms",
    "failover_up": "p95 ≤ 1 s",
    "failover_down": "p95 ≤ 3 s",
    "rpo": "p95 ≤ 3 s",
    "noticed": "p95 ≤ 300 ms, none missed",
}


WARM_APPLY_MS = 500  # TARGETS["warm_apply"] in ms

# a failover row's target: (TARGETS key, ms, the p95 it judges: to ProxySQL running, or on the VIP)
FAILOVER_TARGETS = {"race": ("failover_up", 1000, "p95_ms"),
                    "reactor": ("failover_up", 1000, "p95_ms"),
                    "down": ("failover_down", 3000, "p95_ms"),
                    "warm": ("failover_warm", 100, "vip_p95_ms")}


def failover_verdict(key, row):
    """``"p95 ≤ 1 s: met"`` (or ``MISSED``) for the keyed failover row, "–" without a target."""
    if key not in FAILOVER_TARGETS:
        return "–"
    name, target_ms, column = FAILOVER_TARGETS[key]
    value = row.get(column)
    where = " on the VIP" if column.startswith("vip") else ""
    return f"{TARGETS[name]}{where}: {'met' if value is not None and value <= target_ms else 'MISSED'}"


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
    parts += ["## Summary", "", "The README's \"Measured\" table, written from this run by the same "
              "code (`bench/report.py`); the sections below hold the details.", "",
              README_BEGIN, readme_table(results), README_END, ""]
    parts += _local(results["local"])
    parts += _lab(results["lab"])
    if results.get("seconds") is not None:
        parts += [f"This run took {results['seconds'] / 60:.1f} min.", ""]
    return "\n".join(parts) + "\n"


def _skipped(title, section):
    return [f"## {title}", "", f"Skipped: {section['skipped']}.", ""]


def _local(local):
    if "skipped" in local:
        return _skipped("On one machine (1-4)", local)
    out = []
    for name, (title, renderer) in LOCAL_RENDERERS.items():
        part = local.get(name, {"skipped": "not measured in this run"})
        out += _skipped(title, part) if "skipped" in part else renderer(part)
    return out


def _idle(idle):
    return [
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
        "why a saved change is noticed by the engine (an inotify watch of the datadir, its `stat()` "
        "every 0.25 s where there is none), and the ship job itself runs every 15 min only as a "
        "safety net.",
        "",
    ]


def _restore(restore):
    rows = [[size, fmt(row["ours_wall_ms"], "ms"), fmt(row["ours_install_ms"], "ms"),
             fmt(row["classic_wall_ms"], "ms"), fmt(row["wall_ratio"])]
            for size, row in restore.items()]
    return ["## 3. Restore: full validation vs the classic unvalidated copy", "",
            f"Target: {TARGETS['restore']}. Both are timed until ProxySQL (the stand-in, whose "
            "start returns before it loads the database, as ProxySQL's does) has loaded the "
            "restored database (by its own timestamp) and the recipe's call has returned, "
            "whichever comes later.", "",
            table(["database", "ours (choose, verify, install, start)", "of which install",
                   "classic (copy, chown, start)", "wall ratio"], rows), ""]


def _warm_apply(warm):
    def step(row, *keys):
        values = [row.get("steps_p50_ms", {}).get(key) for key in keys]
        found = [value for value in values if value is not None]
        return fmt(sum(found), "ms") if found else "–"

    rows = [[size, f"{row['size_mb']:.1f} MB", fmt(row["p50_ms"], "ms"), fmt(row["p95_ms"], "ms"),
             step(row, "install"), step(row, "flush", "restart", "reload"), step(row, "verify"),
             str(row["runs"]), ", ".join(f"{how}{'' if ok and clean else ' (not verified)'}"
                                         for how, ok, clean in row["how"])]
            for size, row in warm.items()]
    return ["## 3b. A warm standby applies a received backup", "",
            f"Target: {TARGETS['warm_apply']}. `proxysql_ha.apply` on a warm BACKUP whose "
            "ProxySQL (the stand-in, with its admin interface) runs: install (verified copy, "
            "atomic rename), `PROXYSQL FLUSH CONFIGDB`, `LOAD <module> FROM DISK` and `TO RUNTIME` "
            "for every module through the mariadb client, then the runtime checked against the file.",
            "", table(["database", "size", "p50", "p95", "install (p50)",
                       "flush and loads (p50)", "verification (p50)", "runs", "how"], rows), "",
            "ProxySQL runs the new configuration once the loads return; the verification comes "
            "after, as one SELECT the admin interface runs in its SQLite (every row of the file "
            "looked up in its runtime table by primary key), so its cost is the same SQL a "
            "ProxySQL would run. The flush and the loads are the stand-in's work (Python, "
            "mysql-mimic): a ProxySQL does them in C++, which is not measured here.", ""]


def _growth(growth):
    rows = [[f"{row['users']:,} / {row['rules']:,}", f"{row['size_mb']:.1f} MB",
             *[f"{fmt(row[op][0], 'ms')}, +{row[op][1]:.1f} MB" for op in ("backup", "verify", "restore")]]
            for row in growth]
    return ["## 4. Cost as the work grows", "",
            "Each operation in a fresh process: time, and peak memory (RSS) above the same "
            "process doing nothing (Python with Salt's exceptions imported, about 110 MB).", "",
            table(["users / rules", "size", "backup", "verify", "restore copy"], rows), ""]


CONNECTION = {"cold": "cold (new connection)", "warm": "warm (multiplexed)"}


def _changed(changed):
    """Section 2: a saved change shipped, cold and warm, ours against the classic cron job."""
    first = next(iter(changed.values()))
    settle = f"{first['settle_s']:g} s"
    rows = []
    for size, entry in changed.items():
        for connection, row in entry["connections"].items():
            rows.append([f"{size} ({entry['size_mb']:.1f} MB)", CONNECTION[connection],
                         fmt(row["ours_from_save_ms"], "ms"), fmt(row["ours_wall_ms"], "ms"),
                         fmt(row["ours_cpu_ms"], "ms"), fmt(row["classic_wall_ms"], "ms"),
                         fmt(row["classic_cpu_ms"], "ms"), fmt(row["wall_ratio"])])
    return [
        "## 2. A saved change: backup + verify + ship",
        "",
        f"Target: {TARGETS['changed']}, while doing the checks it skips (settle window, "
        "change detection, integrity_check, schema fingerprint, manifest, sha256 on arrival).",
        "",
        table(["database", "connection", f"ours: save → valid copy on the peer (settle {settle} "
               "included)", "ours: the work, after the settle", "ours CPU (the work)",
               "classic: save → copy on the peer", "classic CPU", "work ratio (ours / classic)"],
              rows),
        "",
        f"The headline is the third column: from the save to a copy on the peer that its receive "
        f"command has checked (sha256) and kept, with the settle window of {settle} (the default: "
        "no write for that long, so a half-saved database is never copied) inside it. The "
        "classic cron job has no window and no checks: its column is the same span, save to copy. "
        "\"The work\" starts once the window has passed. Cold: no SSH multiplex master alive "
        "(ended with `ssh -O exit` before each run), so each side pays a key exchange; warm: over "
        "a master opened before the runs, ours with its own `ControlMaster=auto`, "
        "`ControlPersist=60`, the classic `scp` given the same options. In use, ours ships warm "
        "when changes come less than 60 s apart; a cron job a minute apart meets a master that "
        "is about to expire.",
        "",
        f"CPU: {first['cpu_method']}; the sending side only, for both recipes (the peer's sshd "
        "and receive command are left out of both), the multiplex master's work included.",
        "",
    ]


def _inspection_part(row):
    """Section 4b: the inspection rows, titled."""
    return ["## 4b. Inspection of candidates", ""] + _inspection(row)


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


LOCAL_RENDERERS = {
    "idle": ("1. Idle shipping tick", _idle),
    "changed": ("2. A saved change", _changed),
    "restore": ("3. Restore", _restore),
    "warm_apply": ("3b. Warm apply", _warm_apply),
    "growth": ("4. Cost as the work grows", _growth),
    "inspection": ("4b. Inspection of candidates", _inspection_part),
}


def _lab(lab):
    if "skipped" in lab:
        return _skipped("In the two-host lab (5-6)", lab)
    if "failover" not in lab:  # --parts lab_idle
        return (_skipped("In the two-host lab (5-6)", {"skipped": "only its idle cost was run"})
                + _idle_cost(lab["idle"], lab.get("settings")))
    out = ["## 5. Failover time in the two-host lab", "",
           "From ucarp running the up-script on the new MASTER to ProxySQL started with the "
           "restored configuration (a warm standby restores nothing: –), and to the new MASTER "
           "serving on the VIP: ProxySQL's traffic port accepting a TCP connection on the VIP, "
           "from a client in the lab's net namespace (neither host). Targets: master up "
           f"{TARGETS['failover_up']}, master down {TARGETS['failover_down']}, warm standby "
           f"{TARGETS['failover_warm']} on the VIP.", ""]
    rows = [[name, row["n"], fmt(row["p50_ms"], "ms"), fmt(row["p95_ms"], "ms"),
             fmt(row.get("vip_p50_ms"), "ms"), fmt(row.get("vip_p95_ms"), "ms"),
             failover_verdict(row.get("key"), row)]
            for name, row in lab["failover"].items()]
    out += [table(["", "failovers", "p50: ProxySQL running", "p95: ProxySQL running",
                   "p50: serving on the VIP", "p95: serving on the VIP", "target"], rows), ""]
    out += ["## 6. RPO in the two-host lab", "",
            f"From a saved change on the MASTER to a valid copy on the BACKUP. Target: {TARGETS['rpo']}.", ""]
    rows = [[name, row["n"], fmt(row["p50_ms"], "ms"), fmt(row["p95_ms"], "ms")]
            for name, row in lab["rpo"].items()]
    out += [table(["", "changes", "p50", "p95"], rows), ""]
    if lab.get("notes"):
        out += lab["notes"] + [""]
    if "idle" in lab:
        out += _idle_cost(lab["idle"], lab.get("settings"))
    return out


def _idle_cost(idle, settings=None):
    """The idle cost of each node above a bare salt-minion (one cgroup per minion)."""
    if "skipped" in idle:
        return _skipped("Idle cost per node in the two-host lab", idle)
    target = idle["target_pct"]
    forked = idle.get("forked_pct", {})
    rows = [[f"host {name.upper()}", fmt(pct, "%"), fmt(pct - idle["bare_pct"], "%"),
             fmt(forked[name], "%") if name in forked else "–",
             "yes" if pct - idle["bare_pct"] <= target else "NO"]
            for name, pct in sorted(idle["nodes"].items())]
    rows.append(["bare salt-minion (no extension)", fmt(idle["bare_pct"], "%"), "-", "-", "-"])
    return ["## Idle cost per node in the two-host lab", "",
            f"CPU of each salt-minion with everything it forks (a cgroup per minion, "
            f"{idle['seconds']:g} s of nothing changing), in % of one core. Target: at most "
            f"{target:g} % above a bare minion. The forked jobs: the cgroup's total less what "
            "the minion's long-lived processes (the minion, its engine) used.", "",
            table(["", "CPU", "above the bare minion", "of it, forked schedule jobs",
                   "within target"], rows), ""] + _idle_processes(idle) + _idle_settings(settings)


def _idle_processes(idle):
    """The profile: each long-lived process of each minion (by its Salt title), beside the bare one."""
    processes = idle.get("processes")
    if not processes:
        return []
    names = [name for name in ("a", "b", "bare") if name in processes]
    summed = {name: {} for name in names}
    for name in names:
        for label, pct in processes[name]:
            summed[name][label] = summed[name].get(label, 0.0) + pct
    labels = list(dict.fromkeys(label for name in names for label, _ in processes[name]))
    rows = [[f"`{label}`"] + [fmt(summed[name][label], "%") if label in summed[name] else "–"
                              for name in names] for label in labels]
    forked = idle.get("forked_pct", {})
    rows.append(["forked jobs (the rest of the cgroup)"]
                + [fmt(forked[name], "%") if name in forked else "–" for name in names])
    heads = {"a": "host A", "b": "host B", "bare": "bare salt-minion"}
    return ["Where it goes: the CPU of each process alive at the start of the window, named by "
            "the title Salt gives it (`/proc/<pid>/cmdline`; the process never retitled is "
            "`salt-minion`'s keep-alive parent), in % of one core. The bare minion has no "
            "engine and no schedule entries; the extension's `MinionProcessManager` also "
            "evaluates its four schedule entries every `loop_interval` (1 s, Salt's "
            "`Schedule.eval`), the engine process does the looks, and the layer check's "
            "mariadb client is among the forked jobs.", "",
            table([""] + [heads[name] for name in names], rows), ""]


def _idle_settings(settings):
    """What the idle rows ran with: the admin interface's layer check, the standby."""
    if not settings or "layer_check" not in settings:
        return []
    every, default = settings["layer_check"]
    if not settings.get("admin_enabled"):
        return [f"Measured with the admin interface not in use (`admin:enabled: false`, the "
                f"default): no layer check; standby {settings['standby']}.", ""]
    return [f"Measured with the admin interface in use (`admin:enabled: true`) and its layer "
            f"check every {every:g} s (`admin:layer_check_interval`, "
            f"{'the default' if every == default else f'the default is {default:g} s'}): each "
            "check forks the mariadb client on the MASTER (host A), counted in its forked jobs; "
            f"host B is the BACKUP and runs none. Standby {settings['standby']}.", ""]


# ---- the README's "Measured" table: written from the same results, between markers -----------

README_BEGIN = "<!-- bench:readme-table begin (written by `make bench`: bench/report.py) -->"
README_END = "<!-- bench:readme-table end -->"


def _ms(value):
    return "–" if value is None else f"{value:,.0f} ms"


def readme_table(results):
    """The README's summary table of this run, the same numbers as docs/BENCHMARKS.md."""
    local, lab = results["local"], results["lab"]
    rows = []
    idle = local.get("idle", {})
    if "ship_cpu_ms" in idle:
        rows.append(["idle ship tick (nothing changed)",
                     f"{fmt(idle['ship_cpu_ms'], 'ms')} CPU, {idle['ssh_connections']} connections",
                     "–", TARGETS["idle"]])
    changed = local.get("changed", {}).get("large") or local.get("changed", {}).get("small")
    if changed and "connections" in changed:
        size = f"{changed['size_mb']:.1f} MB db"
        for connection in ("cold", "warm"):
            row = changed["connections"][connection]
            rows.append([f"a saved change → valid copy on the peer, {size}, {connection} SSH "
                         f"(ours incl. the {changed['settle_s']:g} s settle window)",
                         _ms(row["ours_from_save_ms"]) + f" ({_ms(row['ours_wall_ms'])} after "
                         "the window)", _ms(row["classic_wall_ms"]) + " (no checks)",
                         TARGETS["changed"] + " (the work)"])
    restore = local.get("restore", {}).get("large") or local.get("restore", {}).get("small")
    if restore and "ours_wall_ms" in restore:
        rows.append(["restore with full validation (incl. ProxySQL's start)",
                     _ms(restore["ours_wall_ms"]), _ms(restore["classic_wall_ms"]) + " (no checks)",
                     TARGETS["restore"]])
    keyed = lab.get("keyed", {})
    failover, rpo = keyed.get("failover", {}), keyed.get("rpo", {})
    for key, label, target in (
            ("race", "failover p95, as set up (Salt master up: its reactor and the minion's "
                     "reconcile job race)", "failover_up"),
            ("reactor", "failover p95, the master's reactor alone", "failover_up"),
            ("down", "failover p95, Salt master down (the minion's reconcile job)", "failover_down")):
        if key in failover:
            classic = failover.get("classic") if key == "race" else None
            rows.append([label, _ms(failover[key]["p95_ms"]),
                         _ms(classic["p95_ms"]) + " (no checks)" if classic else "–",
                         TARGETS[target]])
    if "warm" in failover:
        warm, classic = failover["warm"], failover.get("classic", {})
        cold = failover.get("race", {})
        rows.append(["failover p95, warm standby: up-script → serving A's last saved configuration "
                     "on the VIP (a client's connect)", _ms(warm.get("vip_p95_ms"))
                     + f" (cold standby: {_ms(cold.get('vip_p95_ms'))})",
                     _ms(classic.get("vip_p95_ms")) + " (no checks)",
                     failover_verdict("warm", warm)])
    warm_apply = local.get("warm_apply", {}).get("large") or local.get("warm_apply", {}).get("small")
    if warm_apply and "p95_ms" in warm_apply:
        rows.append([f"a warm standby applies a received backup, {warm_apply['size_mb']:.1f} MB db, "
                     "p95 (install, flush, loads, verification)", _ms(warm_apply["p95_ms"]), "–",
                     TARGETS["warm_apply"] + (": met" if warm_apply["p95_ms"] <= WARM_APPLY_MS else ": MISSED")])
    idle_cost = lab.get("idle") or {}
    if "nodes" in idle_cost:
        above = {name: pct - idle_cost["bare_pct"] for name, pct in sorted(idle_cost["nodes"].items())}
        rows.append([f"idle cost above a bare salt-minion, {idle_cost['seconds']:g} s in the lab "
                     "(cgroup per minion, forked jobs included), MASTER A / BACKUP B",
                     " / ".join(fmt(value, "%") for value in above.values()) + " of a core", "–",
                     f"≤ {idle_cost['target_pct']:g} % on each node: "
                     + ("met" if all(value <= idle_cost["target_pct"] for value in above.values())
                        else "MISSED")])
    if "health" in failover:
        rows.append(["health failover p95: ProxySQL dead on the MASTER (its start broken) → the "
                     "peer serving on the VIP (grace, release, CARP, restore, start)",
                     _ms(failover["health"].get("vip_p95_ms")), "– (no health rule)", "–"])
    if "noticed" in rpo:
        rows.append(["a save noticed: saved change → the engine's run_job for the ship job, p95",
                     _ms(rpo["noticed"]["p95_ms"]) + (f" ({rpo['noticed']['missed']} not noticed)"
                                                      if rpo["noticed"].get("missed") else ""),
                     "–", TARGETS["noticed"]])
    if "ours" in rpo:
        rows.append([f"RPO p95 in the lab (settle {lab.get('settle_s', 0):g} s), saved change → "
                     "valid copy on the peer", _ms(rpo["ours"]["p95_ms"]),
                     "up to 60 s + transfer", TARGETS["rpo"]])
    return table(["what", "proxysql-ha", "classic recipe", "target"], rows)


def with_readme_table(readme, table_text):
    """``readme`` with the text between its markers replaced by ``table_text``."""
    if README_BEGIN not in readme or README_END not in readme:
        raise SystemExit(f"bench: the README has no {README_BEGIN!r} ... {README_END!r} markers")
    head, rest = readme.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    return f"{head}{README_BEGIN}\n{table_text}\n{README_END}{tail}"


def readme_block(text):
    """The table between the markers of ``text`` (the README or docs/BENCHMARKS.md), or None."""
    if README_BEGIN not in text or README_END not in text:
        return None
    return text.split(README_BEGIN, 1)[1].split(README_END, 1)[0].strip()
