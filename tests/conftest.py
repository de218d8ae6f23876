"""Fixtures for the whole suite: the shared material that lies beside the repository.

``tests`` is a package (each test directory has an ``__init__.py``), so pytest puts the
repository root on ``sys.path``; test-only helpers are ``tests.support.<module>``, the stand-ins shared with the lab, demo and bench ``standin.<module>``.

ProxySQL's DDL comes from ``<repo>/../shared/proxysql``; ``PROXYSQL_SCHEMA`` (a file of
``CREATE TABLE`` statements, e.g. ``sqlite3 /var/lib/proxysql/proxysql.db .schema``) replaces
the current version's (3.0.1) there. The other versions and ``upgrades.json`` still need
``../shared``. With ``CI`` set, a test that would skip fails instead (``tests.support.skips``).

With ``-n N --dist loadgroup`` the whole suite can run in one session on several workers:
:func:`xdist_group_of` keeps together on one worker what shares a resource or an expensive
module set-up (``make test`` still runs the lab's and the daemons' tests serially).
"""

import os
from pathlib import Path

import pytest

from standin import proxysql_db
from tests.support.skips import (  # noqa: F401  pylint: disable=unused-import
    pytest_make_collect_report,
    pytest_runtest_makereport,
    pytest_terminal_summary,
)

SHARED_DIR = Path(__file__).resolve().parent.parent.parent / "shared"
CURRENT = "3.0.1"  # the version PROXYSQL_SCHEMA stands for


def schema_override():
    """``PROXYSQL_SCHEMA`` as a Path, or None; a value naming no file is an error, not a skip."""
    value = os.environ.get("PROXYSQL_SCHEMA")
    if not value:
        return None
    path = Path(value)
    if not path.is_file():
        raise pytest.UsageError(f"PROXYSQL_SCHEMA={value}: no such file (a ProxySQL DDL file)")
    return path


# Integration modules that move 127.0.0.77 on lo for real (the CARP hook): one at a time.
MOVES_LO_VIP = ("tests/integration/test_failover_path.py", "tests/integration/test_formula.py")


def xdist_group_of(path):
    """The ``xdist_group`` of the tests in the file at ``path`` (relative to the repository,
    with ``/``), or None where its tests may run on any worker, beside anything.

    ``lab``: every e2e module, in one worker's session, so the lab of a kind is built once and
    the modules keep their order by kind (``tests/e2e/conftest.py``); ``vip-127.0.0.77``: the
    integration modules that move that address on lo; every other integration module is its
    own group (a salt-master and minions per module, started once); the quick bench is one
    group (its module runs ``bench.run --quick`` once).
    """
    if path.startswith("tests/e2e/"):
        return "lab"
    if path in MOVES_LO_VIP:
        return "vip-127.0.0.77"
    if path.startswith("tests/integration/") or path == "tests/bench/test_bench_quick.py":
        return path
    return None


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # before xdist's own scheduler for --dist loadgroup
def pytest_xdist_make_scheduler(config, log):
    """With ``--dist loadgroup``: the tests of a group of :func:`xdist_group_of` are one unit
    of work, sent to one worker in collection order; every other test is a unit of its own.

    (xdist's own loadgroup reads ``xdist_group`` marks into the node ids, which pytest 9.2's
    node ids no longer take: the groups are read from the test's path here instead.)
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling  # pylint: disable=import-outside-toplevel

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return xdist_group_of(nodeid.split("::", 1)[0]) or nodeid

    return ByGroup(config, log)


def pytest_configure(config):  # pylint: disable=unused-argument
    schema_override()  # a PROXYSQL_SCHEMA naming no file stops the run before it starts


@pytest.fixture(scope="session")
def shared_dir():
    """``<repo>/../shared``; skips the test when ProxySQL's schema files are not there."""
    marker = proxysql_db.schema_path(SHARED_DIR, CURRENT)
    if not marker.is_file():
        pytest.skip(f"needs ../shared: {marker} does not exist (expected at <repo>/../shared)")
    return SHARED_DIR


@pytest.fixture(scope="session")
def schema_path_of(request):
    """``schema_path_of(version)``: the DDL file of ProxySQL ``version`` (3.0.1: PROXYSQL_SCHEMA first)."""

    def path(version):
        override = schema_override()
        if override is not None and version == CURRENT:
            return override
        if override is None:
            request.getfixturevalue("shared_dir")
        found = proxysql_db.schema_path(SHARED_DIR, version)
        if not found.is_file():
            pytest.skip(f"needs ../shared: {found} (ProxySQL {version}'s DDL) does not exist"
                        + (f"; PROXYSQL_SCHEMA stands for {CURRENT} only" if override else ""))
        return found

    return path


@pytest.fixture(scope="session")
def schema_sql(schema_path_of):
    """``schema_sql(version)``: ProxySQL's ``CREATE TABLE`` statements for a ``SCHEMA_VERSIONS`` entry."""

    def load(version):
        return proxysql_db.read_schema(schema_path_of(version))

    return load
