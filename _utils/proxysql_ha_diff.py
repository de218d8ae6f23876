"""
Row-level differences between two ProxySQL configuration databases.

Pure: every function works on the tables already read (``{table: {"columns",
"key", "rows"}}``, see ``proxysql_ha_sqlite.contents``). Rows are matched by
the table's primary key; a table without one is compared as whole rows.
Output is bounded (``limit`` rows per table and kind, plus the counts) and
secrets are masked, so a report can go into an event or a log.
"""

__virtualname__ = "proxysql_ha_diff"

MASK = "<hidden>"
# not configuration, (table, key) pairs: the uuid ProxySQL writes itself at start, and the token
# each install writes (proxysql_ha_sqlite.INSTALL_STAMP), which no two copies share
IGNORED = {("global_settings", ("uuid",)), ("global_settings", ("proxysql_ha_install",))}
SECRET_WORDS = ("password", "credentials", "secret")


def __virtual__():
    return __virtualname__


def _secret(name):
    return any(word in str(name).lower() for word in SECRET_WORDS)


def _masked(table, columns, row):
    """``{column: value}`` of a row with secrets hidden: columns named like one, or a
    ``*_variables`` row whose variable name is one."""
    record = dict(zip(columns, row))
    hide_value = table.endswith("_variables") and _secret(record.get("variable_name", ""))
    for column in columns:
        if record[column] is not None and (_secret(column) or
                                           (hide_value and column == "variable_value")):
            record[column] = MASK
    return record


def _index(table, spec):
    """``{key: row}``; without a primary key, every distinct row is its own key (with a count)."""
    columns, key = spec["columns"], spec["key"]
    if not key:
        counted = {}
        for row in spec["rows"]:
            counted[tuple(row)] = counted.get(tuple(row), 0) + 1
        return {(row, n): row for row, count in counted.items() for n in range(count)}
    positions = [columns.index(name) for name in key]
    index = {}
    for row in spec["rows"]:
        k = tuple(row[p] for p in positions)
        if (table, k) not in IGNORED:
            index[k] = tuple(row)
    return index


def table_diff(table, old, new, limit):
    """What changed in one table from ``old`` to ``new`` (same columns): added, removed,
    changed rows (at most ``limit`` of each) and their counts."""
    columns = new["columns"]
    before, after = _index(table, old), _index(table, new)
    added = [k for k in after if k not in before]
    removed = [k for k in before if k not in after]
    changed = [k for k in after if k in before and before[k] != after[k]]
    result = {"counts": {"added": len(added), "removed": len(removed), "changed": len(changed)}}
    result["added"] = [_masked(table, columns, after[k]) for k in sorted(added, key=repr)[:limit]]
    result["removed"] = [_masked(table, columns, before[k])
                         for k in sorted(removed, key=repr)[:limit]]
    result["changed"] = [_change(table, columns, new["key"], before[k], after[k])
                         for k in sorted(changed, key=repr)[:limit]]
    return result


def _change(table, columns, key, old, new):
    old_m, new_m = _masked(table, columns, old), _masked(table, columns, new)
    return {"key": {name: new_m[name] for name in key},
            "columns": {c: {"old": old_m[c], "new": new_m[c]}
                        for c, a, b in zip(columns, old, new) if a != b}}


def diff(old, new, limit=20):
    """
    Differences from database ``old`` to ``new``: ``{"identical", "tables": {name:
    table_diff}}``, only the tables that differ; a table on one side only, or whose
    columns differ, is reported as such with its row count.
    """
    tables = {}
    for name in sorted(set(old) | set(new)):
        if name not in old or name not in new:
            side = "new" if name in new else "old"
            tables[name] = {"only_in": side, "rows": len((new if name in new else old)[name]["rows"])}
            continue
        if old[name]["columns"] != new[name]["columns"]:
            tables[name] = {"columns_differ": {"old": list(old[name]["columns"]),
                                               "new": list(new[name]["columns"])}}
            continue
        found = table_diff(name, old[name], new[name], limit)
        if any(found["counts"].values()):
            tables[name] = found
    return {"identical": not tables, "tables": tables}


def own_changes(base, ours, theirs, limit=20):
    """
    The changes ``ours`` holds that ``theirs`` does not have, shown as ``theirs`` ->
    ``ours``: with the common ``base`` (the copy ``ours`` started from), only the rows
    that ``ours`` changed since ``base`` and ``theirs`` has not in the same way; without
    one (None), every difference between ``theirs`` and ``ours``.
    """
    if base is None:
        return diff(theirs, ours, limit)
    touched = {}
    for name in ours:
        if name in base and name in theirs and base[name]["columns"] == ours[name]["columns"] \
                == theirs[name]["columns"]:
            b, o, t = _index(name, base[name]), _index(name, ours[name]), _index(name, theirs[name])
            touched[name] = {k for k in set(b) | set(o) if b.get(k) != o.get(k) and t.get(k) != o.get(k)}
    narrowed_ours, narrowed_theirs = {}, {}
    for name in set(ours) | set(theirs):
        if name not in touched:  # a table on one side only or reshaped: compared whole
            if name in ours:
                narrowed_ours[name] = ours[name]
            if name in theirs:
                narrowed_theirs[name] = theirs[name]
            continue
        keep = touched[name]
        narrowed_ours[name] = _only(name, ours[name], keep)
        narrowed_theirs[name] = _only(name, theirs[name], keep)
    return diff(narrowed_theirs, narrowed_ours, limit)


def _only(table, spec, keys):
    index = _index(table, spec)
    return dict(spec, rows=[row for k, row in index.items() if k in keys])
