"""Salt extension keeping a ProxySQL pair's configuration database highly available.

When installed with pip, the repository's ``_modules``, ``_states``, ``_utils``,
``_engines`` and ``_beacons`` directories become the ``modules``, ``states``, ``utils``,
``engines`` and ``beacons`` subpackages here, which Salt's loader finds through the
``salt.loader`` entry point.
"""

import pathlib

PACKAGE_ROOT = pathlib.Path(__file__).resolve().parent
# The loader directories this package provides (setup.cfg's package_dir).
LOADER_DIRS = ("modules", "states", "utils", "engines", "beacons")
