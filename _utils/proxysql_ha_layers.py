"""
Pure rules over ProxySQL's three configuration layers (disk, memory, runtime).

Input: ``{module: {"disk": c, "memory": c, "runtime": c}}``, one comparable
checksum or digest per layer (e.g. ``proxysql_ha_admin.layer_digests``); a
layer given as None is unknown and judged by nothing. Runtime shows some
modules in another shape than memory and disk (e.g. a user as two rows):
``disk_runtime`` and ``memory_runtime``, where given, are disk and memory in
runtime's shape and are what ``runtime`` is compared with. Output: problems as plain
dicts, ``{"problem": name, "modules": [...], "message": text}``, sorted by module.
"""

__virtualname__ = "proxysql_ha_layers"


def __virtual__():
    return __virtualname__


def _differs(a, b):
    return a is not None and b is not None and a != b


def _shaped(lay, layer):
    """``layer`` in runtime's shape where given, else as it is."""
    return lay.get(f"{layer}_runtime", lay.get(layer))


def differences(layers):
    """
    ``{module: {"runtime_unlike_disk", "memory_unlike_disk", "memory_unlike_runtime"}}``
    from per-layer digests (see the module's docstring); an unknown layer differs from nothing.
    """
    return {module: {"runtime_unlike_disk": _differs(lay.get("runtime"), _shaped(lay, "disk")),
                     "memory_unlike_disk": _differs(lay.get("memory"), lay.get("disk")),
                     "memory_unlike_runtime": _differs(_shaped(lay, "memory"), lay.get("runtime"))}
            for module, lay in layers.items()}


def config_problems(layers):
    """:func:`difference_problems` of per-layer digests (:func:`differences`)."""
    return difference_problems(differences(layers))


def difference_problems(found):
    """
    ``config_not_saved`` (memory or runtime differs from disk: a failover would
    lose the change) and ``config_not_loaded`` (memory differs from runtime:
    ProxySQL does not run what the admin edited), each naming its modules and,
    per module, which layer differs and the command that settles it, from
    ``found``: ``{module: {"runtime_unlike_disk", "memory_unlike_disk",
    "memory_unlike_runtime"}}`` (e.g. ``proxysql_ha_admin.check_layers``).
    Never suggests saving for the operator: the message says what to run.
    """
    not_saved, not_loaded = {}, {}
    for module, flags in sorted(found.items()):
        if flags["runtime_unlike_disk"]:
            not_saved[module] = f"{module}: runtime differs from disk; run SAVE {module} TO DISK"
        elif flags["memory_unlike_disk"]:
            not_saved[module] = (f"{module}: memory differs from disk; run SAVE {module} TO DISK "
                                 f"(or LOAD {module} FROM DISK to drop the edit)")
        if flags["memory_unlike_runtime"]:
            not_loaded[module] = (f"{module}: memory differs from runtime; run LOAD {module} TO "
                                  f"RUNTIME (or SAVE {module} FROM RUNTIME to drop the edit)")
    problems = []
    if not_saved:
        problems.append({
            "problem": "config_not_saved", "modules": list(not_saved),
            "message": "; ".join(not_saved.values()) + ": a failover would lose it",
        })
    if not_loaded:
        problems.append({
            "problem": "config_not_loaded", "modules": list(not_loaded),
            "message": "; ".join(not_loaded.values()),
        })
    return problems


def new_alerts(previous, problems):
    """
    The problems to alert on now: those whose kind is new or names a module it
    did not name at the last look (``previous``: ``{kind: [modules]}``). Pure.
    """
    return [p for p in problems
            if not set(p["modules"]) <= set((previous or {}).get(p["problem"]) or ())]


def seen(problems):
    """``{kind: [modules]}`` of ``problems``, what :func:`new_alerts` compares with next time."""
    return {p["problem"]: p["modules"] for p in problems}


def restore_problems(differences):
    """
    ``restore_not_loaded`` when ProxySQL's runtime after an install differs from
    the installed file: ``differences`` is ``{module: {"missing", "extra",
    "disk_unlike_file"}}`` (``proxysql_ha_admin.verify_installed``); the problem
    names the modules and, per module, how many rows differ each way.
    """
    found, elsewhere = {}, False
    for module, diff in sorted(differences.items()):
        parts = []
        if diff.get("missing"):
            parts.append(f"{diff['missing']} row(s) of the file not in runtime")
        if diff.get("extra"):
            parts.append(f"{diff['extra']} runtime row(s) not in the file")
        if diff.get("disk_unlike_file"):
            elsewhere = True
            parts.append(f"its disk tables ({', '.join(diff['disk_unlike_file'])}) are not the "
                         "installed file's")
        if parts:
            found[module] = f"{module}: {', '.join(parts)}"
    if not found:
        return []
    remedy = ("the disk ProxySQL has open is not the file installed: PROXYSQL FLUSH CONFIGDB "
              "was not done, or ProxySQL uses another datadir than proxysql_ha:datadir"
              if elsewhere else
              "LOAD <module> FROM DISK and LOAD <module> TO RUNTIME, or restart it")
    return [{
        "problem": "restore_not_loaded", "modules": list(found),
        "rows": {m: {k: differences[m].get(k) for k in ("missing", "extra")} for m in found},
        "message": f"ProxySQL does not run the restored file: {'; '.join(found.values())} "
                   f"({remedy})",
    }]
