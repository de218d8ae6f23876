"""Two proxysql-ha nodes, A and B, on this machine, driven through Salt's real loader (no daemons).

Each node has its own directories under the test's ``tmp_path`` (``standin.node``), its own
ProxySQL stand-in, and its own ``proxysql_ha`` pillar. A ships into B's inbox and B into A's.
The role comes from the pillar's ``vip`` on ``lo``: ``127.0.0.1`` is there (MASTER),
``127.0.0.66`` is not (BACKUP). ``Pair.fail_over`` swaps the two.

A Salt loader takes about two seconds to build, so each node's loader is built once per session
(its minion configuration and ``root_dir`` under pytest's temporary directory); a test's first
call on a node writes that node's pillar file and reloads its loader (about a second: fresh
modules for each test). A later ``configure`` in the same test only recompiles the pillar and
clears ``__context__`` (what a new ``salt-call`` would start with), a tenth of that.
"""

import hashlib
import json
import os
import sqlite3

import pytest
import salt._logging
import salt.config
from saltfactories.utils.functional import Loaders

from standin import proxysql_db
from standin.node import Node

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MASTER_VIP = "127.0.0.1"  # on lo: the node is MASTER
BACKUP_VIP = "127.0.0.66"  # not on lo: the node is BACKUP (integration tests move 127.0.0.77)
# A short quiet window keeps the suite fast; the timeouts stay far above what an operation needs.
FAST = {"settle": 0.1, "settle_timeout": 2.0, "lock_timeout": 5.0}
# The nodes, and the users of each one's own configuration (they differ, so a restore shows).
USERS = {"node-a": 20, "node-b": 5}


@pytest.fixture(scope="session")
def node_loaders(tmp_path_factory):
    """``{node name: Loaders}``: each node's Salt loader, with its own root_dir and pillar_roots."""
    loaders = {}
    for name in USERS:
        home = tmp_path_factory.mktemp(f"{name}-minion")
        pillar_dir = home / "pillar"
        pillar_dir.mkdir()
        (pillar_dir / "top.sls").write_text('base:\n  "*":\n    - proxysql_ha\n')
        (pillar_dir / "proxysql_ha.sls").write_text("{}\n")
        config = {
            "id": f"proxysql-ha-functional-{name}",
            "root_dir": str(home / "root"),
            "file_client": "local",
            "file_roots": {"base": [str(home / "states")]},
            "pillar_roots": {"base": [str(pillar_dir)]},
            "module_dirs": [os.path.join(REPO, "_modules")],
            "utils_dirs": [os.path.join(REPO, "_utils")],
            "enable_fqdns_grains": False,
        }
        (home / "minion").write_text(json.dumps(config))
        opts = salt.config.minion_config(str(home / "minion"))
        loaders[name] = Loaders(opts, loaded_base_name=f"{__name__}.{name}")
    yield loaders
    # Salt queues early log records for a console it expects to set up later; hand them to
    # pytest's handlers now, not to a closed stderr at exit ("--- Logging error ---").
    salt._logging.shutdown_temp_handler()


class HaNode:
    """A node under test: its paths (those of ``node``), its pillar, and its module (``ha``) through the loader.

    ``configure`` only records the pillar: the loader is reloaded with it when ``ha`` is next used,
    so a test that never calls a node does not pay for reloading it.
    """

    def __init__(self, node, loaders, vip, peer):
        self.node = node
        self.loaders = loaders
        self.vip = vip
        self.peer = peer
        self.overrides = dict(FAST)
        self.explicit_pillar = None
        self.loaded = False
        self.reloaded = False  # the loader was rebuilt for this test already

    def __getattr__(self, name):
        return getattr(self.node, name)

    def pillar(self):
        """The pillar this node runs with: its own, or the one given to ``configure``."""
        if self.explicit_pillar is not None:
            return self.explicit_pillar
        return self.node.pillar(vip=self.vip, peer_path=self.peer.inbox_dir, **self.overrides)

    def configure(self, pillar=None, **overrides):
        """Run with ``pillar`` instead of the node's own, or with the node's own and ``overrides``."""
        self.overrides.update(overrides)
        self.explicit_pillar = pillar
        self.loaded = False

    @property
    def ha(self):
        """``proxysql_ha`` as Salt's loader serves it, with this node's pillar: ``node.ha.backup()``."""
        if not self.loaded:
            pillar_dir = self.loaders.opts["pillar_roots"]["base"][0]
            with open(os.path.join(pillar_dir, "proxysql_ha.sls"), "w", encoding="utf-8") as handle:
                json.dump({"proxysql_ha": self.pillar()}, handle)  # JSON is YAML: the default renderer reads it
            if self.reloaded:
                self.refresh_pillar()
            else:
                self.loaders.reload_all()
                self.reloaded = True
            self.loaded = True
        return self.loaders.modules.proxysql_ha

    def refresh_pillar(self):
        """The pillar file's new content for the loaded modules, without rebuilding them.

        As the minion's own pillar refresh does (``salt.minion.Minion.pillar_refresh``): the
        compiled pillar becomes ``__pillar__`` of the modules and of their inner ``__salt__``
        loader. ``__context__`` and the cache dir are emptied as ``reload_all`` does.
        """
        self.loaders.reset_state()
        self.loaders.refresh_pillar()
        pillar = self.loaders.opts["pillar"]
        modules = self.loaders.modules
        modules.pack["__pillar__"] = pillar
        inner = getattr(modules, "_dunder_salt", None)
        if inner is not None and hasattr(inner, "pack"):
            inner.pack["__pillar__"] = pillar

    def backups(self, directory=None):
        """Base names of the complete backups (``.db`` and ``.json``) in ``directory`` (default: outgoing)."""
        directory = directory or self.backup_dir
        if not directory.is_dir():
            return []
        names = {p.stem for p in directory.glob("proxysql-ha-*.db")}
        return sorted(n for n in names if (directory / f"{n}.json").is_file())

    def manifest(self, name, directory=None):
        return json.loads(((directory or self.backup_dir) / f"{name}.json").read_text())

    def shared_config(self):
        """The live db's configuration without what ProxySQL writes itself at start (the node's
        uuid in ``global_settings``, the default ``global_variables``): ``comparable_config``."""
        return proxysql_db.comparable_config(self.live_db)

    def live_uuid(self):
        return dict(proxysql_db.dump_config(self.live_db)["global_settings"])["uuid"]

    def save_users(self, count):
        """Save ``count`` users into the live db as ``SAVE MYSQL USERS TO DISK`` does; return the rows."""
        conn = sqlite3.connect(self.live_db)
        try:
            columns = [c[1] for c in conn.execute("PRAGMA table_info(mysql_users)")]
            template = conn.execute("SELECT * FROM mysql_users LIMIT 1").fetchone()
        finally:
            conn.close()
        rows = [
            tuple(f"user{i:04d}" if col == "username" else value for col, value in zip(columns, template))
            for i in range(count)
        ]
        proxysql_db.save_table(self.live_db, "mysql_users", rows)
        return rows


class Pair:
    """Nodes ``a`` (MASTER) and ``b`` (BACKUP), each shipping into the other's inbox."""

    def __init__(self, root, a, b):
        self.root = root  # the test's tmp_path, holding both nodes
        self.a = a
        self.b = b

    def fail_over(self):
        """CARP moves the VIP: A becomes BACKUP and B MASTER (or back)."""
        self.a.vip, self.b.vip = self.b.vip, self.a.vip
        self.a.configure()
        self.b.configure()

    def files(self):
        """Every file under both nodes: ``{relative path: (mode, mtime_ns, sha256)}``; symlinks by target.

        The state dir's ``facts.json`` and ``pidfile.json`` are left out: caches (of inspected
        backups, of where ProxySQL writes its pid file), which any call may refresh, not a
        change of state.
        """
        state = {}
        for directory, _, names in os.walk(self.root):
            for name in names:
                path = os.path.join(directory, name)
                key = os.path.relpath(path, self.root)
                if key.endswith(("/ha/state/facts.json", "/ha/state/pidfile.json")):
                    continue
                if os.path.islink(path):
                    state[key] = ("symlink", os.readlink(path))
                    continue
                st = os.stat(path)
                with open(path, "rb") as handle:
                    state[key] = (st.st_mode, st.st_mtime_ns, hashlib.sha256(handle.read()).hexdigest())
        return state


@pytest.fixture
def nodes(tmp_path, schema_path_of):
    """Nodes ``node-a`` and ``node-b`` with their datadirs created, no database yet."""
    schema = schema_path_of("3.0.1")
    return tuple(Node(name, tmp_path / name, schema).create() for name in USERS)


@pytest.fixture
def pair(nodes, node_loaders, schema_sql):
    """A (MASTER) and B (BACKUP), each with its own ProxySQL 3.0.1 database; stand-ins stopped at the end."""
    node_a, node_b = nodes
    for seed, node in enumerate(nodes, start=1):
        proxysql_db.build_db(node.live_db, schema_sql("3.0.1"), users=USERS[node.name], seed=seed)
    a = HaNode(node_a, node_loaders[node_a.name], MASTER_VIP, node_b)
    b = HaNode(node_b, node_loaders[node_b.name], BACKUP_VIP, node_a)
    try:
        yield Pair(node_a.root.parent, a, b)
    finally:
        for node in (a, b):
            node.standin("stop")
            node.loaders.reset_state()

