"""Fixtures for the unit tests of the ``_utils`` modules.

The ``_utils`` directory is put on ``sys.path`` so the tests import the modules the way Salt's
loader names them (``import proxysql_ha_config``): they are plain Python and need no loader.
"""

import sys
from pathlib import Path

import pytest

from tests.support import proxysql_db

UTILS_DIR = Path(__file__).resolve().parents[2] / "_utils"
if str(UTILS_DIR) not in sys.path:
    sys.path.insert(0, str(UTILS_DIR))


@pytest.fixture
def make_db(tmp_path, schema_sql):
    """``make_db(name, version="3.0.1", **build_args)``: a new ProxySQL database in ``tmp_path``."""

    def make(name, version="3.0.1", **build_args):
        path = tmp_path / name
        proxysql_db.build_db(path, schema_sql(version), **build_args)
        return path

    return make
