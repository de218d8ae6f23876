"""Salt extension keeping a ProxySQL pair's configuration database highly available.

When installed with pip, the repository's ``_modules``, ``_states`` and ``_utils``
directories become the ``modules``, ``states`` and ``utils`` subpackages here, which
Salt's loader finds through the ``salt.loader`` entry point.
"""

import pathlib

PACKAGE_ROOT = pathlib.Path(__file__).resolve().parent
