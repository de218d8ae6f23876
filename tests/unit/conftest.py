"""Fixtures for the unit tests of the ``_utils`` modules, and for rendering the repo's SLS files.

The ``_utils`` directory is put on ``sys.path`` so the tests import the modules the way Salt's
loader names them (``import proxysql_ha_config``): they are plain Python and need no loader.
"""

import sys
from pathlib import Path

import pytest
import salt.config
import salt.loader
import salt.template

from standin import proxysql_db

REPO = Path(__file__).resolve().parents[2]
UTILS_DIR = REPO / "_utils"
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


@pytest.fixture(scope="session")
def formula_roots(tmp_path_factory):
    """A ``file_roots`` directory serving the repo's ``proxysql_ha/`` formula and nothing else.

    Serving the repo root would make Salt's fileserver walk every file of ``.venv``.
    """
    root = tmp_path_factory.mktemp("file_roots")
    (root / "proxysql_ha").symlink_to(REPO / "proxysql_ha")
    return root


@pytest.fixture
def render_sls(tmp_path, formula_roots):
    """``render_sls(path, functions, grains=None, **context)``: the data Salt renders from ``path``.

    Salt's own ``jinja|yaml`` renderers, as a master renders a reactor SLS or a minion a state
    SLS: ``functions`` is the ``salt`` dict the template sees; ``context`` holds ``data``,
    ``tag``, ``sls``... Jinja imports (``proxysql_ha/map.jinja``) come from ``formula_roots``.
    """

    def render(path, functions, grains=None, **context):
        opts = salt.config.minion_config(None)
        opts.update(file_client="local", file_roots={"base": [str(formula_roots)]},
                    cachedir=str(tmp_path / "salt-cache"), grains=grains or {})
        renderers = salt.loader.render(opts, functions)
        return salt.template.compile_template(str(path), renderers, opts["renderer"], opts["renderer_blacklist"],
                                              opts["renderer_whitelist"], **context)

    return render
