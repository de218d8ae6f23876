"""Fixtures for the whole suite: the shared material that lies beside the repository.

``tests`` is a package (each test directory has an ``__init__.py``), so pytest puts the
repository root on ``sys.path`` and test code imports helpers as ``tests.support.<module>``.
"""

from pathlib import Path

import pytest

from tests.support import proxysql_db

SHARED_DIR = Path(__file__).resolve().parent.parent.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir():
    """``<repo>/../shared``; skips the test when ProxySQL's schema files are not there."""
    marker = proxysql_db.schema_path(SHARED_DIR, "3.0.1")
    if not marker.is_file():
        pytest.skip(f"shared material absent: {marker} does not exist (expected at <repo>/../shared)")
    return SHARED_DIR


@pytest.fixture(scope="session")
def schema_sql(shared_dir):
    """``schema_sql(version)``: ProxySQL's ``CREATE TABLE`` statements for a ``SCHEMA_VERSIONS`` entry."""

    def load(version):
        path = proxysql_db.schema_path(shared_dir, version)
        if not path.is_file():
            pytest.skip(f"shared schema file absent: {path} does not exist")
        return proxysql_db.read_schema(path)

    return load
