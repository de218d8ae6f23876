"""Fixtures for the whole suite: the shared material that lies beside the repository.

``tests`` is a package (each test directory has an ``__init__.py``), so pytest puts the
repository root on ``sys.path``; test-only helpers are ``tests.support.<module>``, the stand-ins shared with the lab, demo and bench ``standin.<module>``.

ProxySQL's DDL comes from ``<repo>/../shared/proxysql``; ``PROXYSQL_SCHEMA`` (a file of
``CREATE TABLE`` statements, e.g. ``sqlite3 /var/lib/proxysql/proxysql.db .schema``) replaces
the current version's (3.0.1) there. The other versions and ``upgrades.json`` still need
``../shared``. With ``CI`` set, a test that would skip fails instead (``tests.support.skips``).
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
