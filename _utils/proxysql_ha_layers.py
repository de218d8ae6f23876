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


def config_problems(layers):
    """
    ``config_not_saved`` (memory or runtime differs from disk: a failover would
    lose the change) and ``config_not_loaded`` (memory differs from runtime:
    ProxySQL does not run what the admin edited), each naming its modules.
    """
    not_saved = sorted(
        module for module, lay in layers.items()
        if _differs(lay.get("memory"), lay.get("disk"))
        or _differs(lay.get("runtime"), _shaped(lay, "disk"))
    )
    not_loaded = sorted(
        module for module, lay in layers.items()
        if _differs(_shaped(lay, "memory"), lay.get("runtime"))
    )
    problems = []
    if not_saved:
        problems.append({
            "problem": "config_not_saved", "modules": not_saved,
            "message": f"changed in memory or runtime but not saved to disk: {', '.join(not_saved)}; "
                       "a failover would lose it (SAVE <module> TO DISK, or LOAD <module> FROM DISK "
                       "to drop it)",
        })
    if not_loaded:
        problems.append({
            "problem": "config_not_loaded", "modules": not_loaded,
            "message": f"memory differs from runtime: {', '.join(not_loaded)} "
                       "(LOAD <module> TO RUNTIME, or SAVE <module> FROM RUNTIME)",
        })
    return problems


def restore_problems(installed, runtime):
    """
    ``restore_not_loaded`` when the runtime checksums after an install differ
    from those of the installed file (``{module: checksum}`` each); a module
    missing on either side counts as differing.
    """
    modules = sorted(
        module for module in set(installed) | set(runtime)
        if installed.get(module) is None or installed.get(module) != runtime.get(module)
    )
    if not modules:
        return []
    return [{
        "problem": "restore_not_loaded", "modules": modules,
        "message": f"ProxySQL does not run the restored file for: {', '.join(modules)} "
                   "(LOAD <module> FROM DISK and LOAD <module> TO RUNTIME, or restart it)",
    }]
