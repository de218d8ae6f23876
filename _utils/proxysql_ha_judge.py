"""
The verdict on one backup, from its manifest and its inspected facts: pure, no
I/O, every rule in one place.

ProxySQL's start-up (``ProxySQL_Admin::init()``) first runs its
``disk_upgrade_*()`` migrations, which recognise older table layouts by their
exact DDL text, rename the old table to ``<table>_v<N>``, create the current
one and copy the rows; then ``check_and_build_standard_tables()`` drops and
re-creates empty every one of its tables whose text still differs, and creates
the missing ones. Tables it does not know are never touched. So a table of a
backup is:

* ``kept``: its DDL equals the local ProxySQL's;
* ``migrated``: its DDL is a layout ProxySQL migrates (``MIGRATIONS``);
* ``created_empty``: the backup lacks it (nothing is lost);
* ``unserved``: the local ProxySQL does not know it (left in the file, not used);
* lost, and the backup refused, when it holds rows and would be dropped.

``MIGRATIONS`` is this project's own record of the migratable layouts of
ProxySQL 3.0.1 (lib/ProxySQL_Admin_Disk_Upgrade.cpp): per table, the sha256 of
each layout's exact DDL text, the name the old table is renamed to, whether
the rows are copied, and the columns the copy leaves out. A test checks it
against ``shared/proxysql/upgrades.json``.
"""

import hashlib
import math
import re

__virtualname__ = "proxysql_ha_judge"

FUTURE_SKEW = 300  # seconds a backup may be dated ahead of this node's clock
STAMP_TOLERANCE = 0.001  # the name's stamp has millisecond precision


def _layout(renamed_to, copies=True, loses=()):
    return {"renamed_to": renamed_to, "copies_rows": copies, "loses": tuple(loses)}


# table -> {sha256 of the old layout's exact DDL: what the migration does}
MIGRATIONS = {
    "mysql_servers": {
        "fe70a65e1808a60956892c867dc835c5c657eb6411b5240665a9acd5e7ccb3a1": _layout("mysql_servers_v110"),
        "c44dd10de8d799596a3bb6d82ddf1e81fbdf737c42263bde1f15cc7a2709b64a": _layout("mysql_servers_v120"),
        "61734ab0f1acd40ce43e0f67490096cc461f4349812a7ebb5e0208cd45880221": _layout("mysql_servers_v122"),
        "83c7d237090708151d8d19ce6a619ee616f8dd1beecdcf50a96d75fad0b878b6": _layout("mysql_servers_v144"),
        "01dc9017dffc8ff6b8c2f7e2525d6b69734b1e2b55b583a17efcc9b0b81ef6a6": _layout("mysql_servers_v200a"),
        "a8725f0a2ad13c8ada4f95e404348180cec328285191b2e5fbbcb9f10064d3b9": _layout("mysql_servers_v200b"),
        "25f938e3478c0d4cddba42366015012fba711b6662248c4344850a1886b3ade6": _layout("mysql_servers_v200c"),
    },
    "mysql_replication_hostgroups": {
        "9fde1497e7d0a9f564adbd5da6a17ce02b93fd76d7a033bdd714cf37d6e646ee": _layout("mysql_replication_hostgroups_v100"),
        "52f4803be69006ac2b4844574d786c93214bc383b50c0b836b858d0fc399e27f": _layout("mysql_replication_hostgroups_v122"),
        "399e4582772940a3991f745f72504d15febc76e725b503fee94ed021155fd919": _layout("mysql_replication_hostgroups_v145"),
        "9c84ab548b82ac248a127179d5a1544cbd06f6ad10c37d3048a402a9a98d179c": _layout("mysql_replication_hostgroups_v200"),
    },
    "mysql_group_replication_hostgroups": {
        "7ef3c43511f030be5df7463df217ce450b92c34a52d650007c6aec2c82e8505b": _layout("mysql_group_replication_hostgroups_v14"),
    },
    "mysql_galera_hostgroups": {
        "71eaca79d0267c14ea33af5272d73e78f0d66b9dcb60e3e57b1f54f45507ee0d": _layout("mysql_galera_hostgroups_v200a"),
    },
    "mysql_aws_aurora_hostgroups": {
        "eeda6c97cd02f9825a67bf325b6c80cbd8463989eb45aa7d5085396a2be8317e": _layout("mysql_aws_aurora_hostgroups_v208"),
    },
    "mysql_hostgroup_attributes": {
        "c2744bf40398179b1447644e59e568692662a61ad37e4bda19576c7e4e6cdef5": _layout("mysql_hostgroup_attributes_v250"),
        "bc191bbbfbc0d0e3ad2185c5dd68940b3f8cf4688b0efc7fcc8346d030a935ec": _layout("mysql_hostgroup_attributes_v252"),
    },
    "mysql_users": {
        "f7350c4c62662d28aef79301cb082950a87557a6b82909fdecc7772eb080b07d": _layout("mysql_users_v130"),
        "6aeed864e9e58b90d73f00a3c8e7670e318f70d4d6096f7521bd20503fef5be0": _layout("mysql_users_v140"),
        "fb06b9379185982ce20633c48ebbaf8427d68bfa9ab2f32a09efafc0f5e06704": _layout("mysql_users_v200"),
    },
    "mysql_query_rules": {
        "6775ca8718b59764050d3dfb8b2789d1648a2412ff219a9ba0e6430aee608fe9": _layout("mysql_query_rules_v110"),
        "34b3a985b8e927eac7cbac0ff2991181b0bb77162ddea79675a5cc6764ccba32": _layout("mysql_query_rules_v120a"),
        "26e27179f5450379a7f30393229ce91c8e3dff33fc6cf7c8145f0fb580bc5438": _layout("mysql_query_rules_v120g"),
        "b080be8ee19323a436c9efa5594468e90219191fdfc738e1f45b4755d0f5ff51": _layout("mysql_query_rules_v122"),
        "d1a591417014b3feb23be4cb2c90adeda218aa784f3d646439dba23b1d309a3d": _layout("mysql_query_rules_v131"),
        # V1_4_0a: renamed to _v40a, copied from _v140a (which does not exist): rows lost
        "959cd656134c9ede317e5dd50fad61b6868f4eaa1206660e573c8d3011e168d9": _layout("mysql_query_rules_v40a", copies=False),
        "140ac01ad77562fbbe3052bf881d0fc60c67677425db42c7a7d93969a213fbb8": _layout("mysql_query_rules_v140b", loses=("next_query_flagIN",)),
        "526da20955b1cb8df0f27fedf801c967c0f4d1226088e1fc9e8d5cfcf8e2b4ad": _layout("mysql_query_rules_v141", loses=("next_query_flagIN", "OK_msg")),
        "a0cec84e08a8a6f86ac3f7a8c8c879bc711876ffc4eb601692a3017b32088625": _layout("mysql_query_rules_v200a"),
        "69074e22ee6007fa98d32b485c5b9dac49ee4377998447f616d446dad494a7d0": _layout("mysql_query_rules_v200b"),
        "0228243d8ab255df34c2a6270c3c5b6b90ecbe49cb9fe29bb6b40b08996c2b31": _layout("mysql_query_rules_v200c"),
        "ce20d79949c1a75e63a718f114ed14e33fea02dfdb88b15be4398fa78f8ff962": _layout("mysql_query_rules_v200d"),
        "5c8bf90786df819e89420d0e8592a4f9c5a539d1079663be5db978e1d864f0f5": _layout("mysql_query_rules_v200e", loses=("cache_timeout",)),
    },
    "scheduler": {
        "f64d3982574a876b13e4a1589487e20a8e0c1848f9c4ae76ecf6ba3b08436b0d": _layout("scheduler_v120"),
        "320571624d24ad4173afdf4eab6f67517d2fc93b6e047665f2e2b2bbef1bf9f5": _layout("scheduler_v122a"),
        "43a94adfb85d0abc10f63f22a1751b67c24646fcdf5a22c46a94b0932eac8dc7": _layout("scheduler_v122b"),
    },
    "restapi_routes": {
        "f6eabff360d0d4e6aeddfda91d908728819728c60c677b91d97ad4b7be8d4163": _layout("restapi_routes_v2015"),
    },
}
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def lossy_columns():
    """``{table: [column]}``: the columns some migration leaves out, to count their values."""
    found = {}
    for table, layouts in MIGRATIONS.items():
        for layout in layouts.values():
            found.setdefault(table, set()).update(layout["loses"])
    return {table: sorted(columns) for table, columns in found.items() if columns}


def __virtual__():
    return __virtualname__


def printable(value, limit=200):
    """``value`` as text safe to print: control characters escaped, length bounded."""
    text = value if isinstance(value, str) else repr(value)
    text = _CONTROL_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return text if len(text) <= limit else text[:limit] + "..."


def judge(manifest, facts, expected, now):
    """
    The verdict on one backup: ``{"valid", "reason", "tables", "notes"}``.

    ``manifest``: the parsed manifest (``proxysql_ha_store.read_manifest``) with
    ``name_generation``, ``name_ts`` and ``name_node`` from its file name.
    ``facts``: ``proxysql_ha_inspect.inspect``. ``expected``: what the local
    ProxySQL uses, ``{"tables": {name: sql}}`` or ``{"fingerprint": hex}``,
    or ``{"error": reason}``. ``now``: this node's clock.
    """
    verdict = {"valid": False, "reason": None, "tables": None, "notes": []}
    for rule in (_manifest_rule, _file_rule, _objects_rule, _consistency_rule):
        reason = rule(manifest, facts, now)
        if reason:
            verdict["reason"] = reason
            return verdict
    reason, tables, notes = _schema_rule(facts, expected)
    verdict.update(reason=reason, tables=tables, notes=notes, valid=reason is None)
    return verdict


def _manifest_rule(manifest, facts, now):
    if manifest["generation"] != manifest["name_generation"]:
        return (f"manifest generation {manifest['generation']} differs from the name's "
                f"{manifest['name_generation']}")
    if manifest["node_id"] != manifest["name_node"]:
        return (f"manifest node {printable(manifest['node_id'])!s} differs from the name's "
                f"{manifest['name_node']}")
    created = manifest["created_ts"]
    if not math.isfinite(created):
        return "manifest time is not a finite number"
    if abs(created - manifest["name_ts"]) > STAMP_TOLERANCE + 1e-6:
        return "manifest time differs from the name's stamp"
    if manifest["name_ts"] > now + FUTURE_SKEW:
        return (f"dated in the future ({printable(manifest['created'])}): clock skew or forgery; "
                "it is never trusted until this node's clock passes it")
    return None


def _file_rule(manifest, facts, now):
    if facts["size"] != manifest["size"]:
        return f"size {facts['size']} differs from the manifest's {manifest['size']} (truncated?)"
    if facts["sha256"] != manifest["sha256"]:
        return "sha256 differs from the manifest's: the file changed or is corrupt"
    if facts["sqlite_error"]:
        return f"unreadable as SQLite: {printable(facts['sqlite_error'])}"
    if facts["integrity"] != "ok":
        return f"integrity_check failed (with CHECK and NOT NULL): {printable(facts['integrity'])}"
    missing = facts["missing_tables"]
    if missing:
        return "not a ProxySQL configuration database: missing tables " + ", ".join(missing)
    return None


def _objects_rule(manifest, facts, now):
    """ProxySQL's configuration database holds tables only: no trigger, view or index of its own."""
    foreign = [obj for obj in facts["objects"]
               if obj["type"] != "table" and obj["sql"] is not None]
    if foreign:
        names = ", ".join(f"{o['type']} {printable(o['name'], 64)}" for o in foreign[:5])
        return (f"it holds objects ProxySQL never creates ({names}): a trigger could rewrite "
                "rows on restore or inside ProxySQL")
    return None


def _consistency_rule(manifest, facts, now):
    if facts["ddl_fingerprint"] != manifest["ddl_fingerprint"]:
        return "the schema differs from the manifest's"
    if facts["row_counts"] != manifest["row_counts"]:
        return "row counts differ from the manifest's (torn or swapped copy)"
    return None


def _schema_rule(facts, expected):
    """``(reason or None, tables, notes)``: what the local ProxySQL's start-up does with the tables."""
    if expected.get("error"):
        return f"cannot check the schema: {expected['error']}", None, []
    if expected.get("tables") is None:
        if facts["served_fingerprint"] != expected["fingerprint"]:
            return ("its schema differs from proxysql_ha:schema_fingerprint; set the pillar from "
                    "a node of the backup's ProxySQL version, or start ProxySQL once"), None, []
        return None, {"kept": sorted(facts["served_tables"])}, []
    served = {name: facts["tables"][name] for name in facts["served_tables"]}
    others = set(facts["tables"]) - set(served)
    return compatibility(served, facts["row_counts"], facts["value_counts"], expected["tables"],
                         others)


def compatibility(backup, rows, values, local, leftover_names=()):
    """
    ProxySQL's start-up rule, table by table. ``backup`` and ``local`` map the
    tables they serve (earlier migrations' ``<table>_v<N>`` left out) to DDL text; ``rows`` the backup's row counts; ``values`` per table
    the non-NULL counts of its columns. Returns ``(reason, tables, notes)``.
    """
    tables = {"kept": [], "migrated": {}, "recreated_empty": [], "created_empty": [],
              "unserved": []}
    notes, lost = [], []
    for name in sorted(local):
        if name not in backup:
            tables["created_empty"].append(name)
            continue
        if backup[name] == local[name]:
            tables["kept"].append(name)
            continue
        layout = MIGRATIONS.get(name, {}).get(
            hashlib.sha256((backup[name] or "").encode()).hexdigest())
        count = rows.get(name, 0)
        if layout is None:
            if count:
                lost.append(f"{name} ({count} rows: a layout the local ProxySQL does not migrate)")
            else:
                tables["recreated_empty"].append(name)
            continue
        if layout["renamed_to"] in leftover_names and count:
            lost.append(f"{name} ({count} rows: {layout['renamed_to']} exists, the rename fails)")
            continue
        if not layout["copies_rows"] and count:
            lost.append(f"{name} ({count} rows: ProxySQL's migration does not copy them)")
            continue
        tables["migrated"][name] = layout["renamed_to"]
        for column in layout["loses"]:
            held = values.get(name, {}).get(column, 0)
            if held:
                notes.append(f"{name}.{column}: {held} values not carried over by the migration")
    for name in sorted(set(backup) - set(local)):
        tables["unserved"].append(name)
        if rows.get(name):
            notes.append(f"{name}: {rows[name]} rows the local ProxySQL does not serve")
    if lost:
        return ("ProxySQL's start-up would drop rows of " + "; ".join(lost)), tables, notes
    return None, tables, notes


def installed_problem(facts, candidate, expected, node_uuid):
    """
    Why the installed copy of a judged backup (after the uuid was put back) must
    not replace the live database, or None. ``candidate``: the backup's verdict.
    """
    if facts["journal_mode"] != "delete":
        return f"journal mode {facts['journal_mode']}, not ProxySQL's rollback journal"
    for rule in (_file_rule, _objects_rule):
        reason = rule({"size": facts["size"], "sha256": facts["sha256"]}, facts, None)
        if reason:
            return reason
    wanted = node_uuid if "global_settings" in facts["tables"] else None
    if facts["global_settings"].get("uuid") != wanted:
        return "global_settings.uuid is not this node's after it was put back"
    rows = {t: n for t, n in facts["row_counts"].items() if t != "global_settings"}
    judged = {t: n for t, n in candidate["row_counts"].items() if t != "global_settings"}
    if rows != judged:
        changed = sorted(t for t in set(rows) | set(judged) if rows.get(t) != judged.get(t))
        return "rows changed while it was installed: " + ", ".join(changed[:5])
    return _schema_rule(facts, expected)[0]
