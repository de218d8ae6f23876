"""A clean copy of the repository: what a checkout holds, without the virtualenv and build debris.

A salt-master that serves the live repository root lists the virtualenv's 15 000 files on every
``saltutil.sync_all`` and file request (seconds each time): serve a clean copy instead.

Standard library only, and no pytest, so the tests and the lab share it.
"""

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOT_CHECKED_OUT = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info",
                                         "__pycache__", ".pytest_cache")


def clean_copy(destination, source=REPO):
    """Copy ``source`` (the repository) to ``destination`` without what a checkout lacks; return it."""
    return Path(shutil.copytree(source, destination, ignore=NOT_CHECKED_OUT))
