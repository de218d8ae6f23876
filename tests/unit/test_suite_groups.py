"""The xdist groups of ``--dist loadgroup`` (tests/conftest.py): what shares a resource stays on one worker.

With ``-n N --dist loadgroup`` the suite runs in one session on several workers; a module that
moves 127.0.0.77 on lo and is not in ``MOVES_LO_VIP`` would run beside the other one, and an
e2e module outside the ``lab`` group would build a lab of its own on another worker.
"""

import re
from pathlib import Path

from tests.conftest import MOVES_LO_VIP, xdist_group_of

REPO = Path(__file__).resolve().parent.parent.parent
# What a module uses when it moves the daemon tests' VIP on lo (tests/integration/conftest.py).
MOVES_VIP = re.compile(r"\b(vip_absent|node_b|run_hook|remove_vip)\b")


def test_every_integration_module_that_moves_the_lo_vip_is_in_the_one_group():
    movers = sorted(p.relative_to(REPO).as_posix()
                    for p in (REPO / "tests" / "integration").glob("test_*.py")
                    if MOVES_VIP.search(p.read_text(encoding="utf-8")))
    assert movers == sorted(MOVES_LO_VIP)
    assert {xdist_group_of(path) for path in movers} == {"vip-127.0.0.77"}


def test_every_e2e_module_runs_in_the_lab_group_and_unit_tests_in_none():
    e2e = [p.relative_to(REPO).as_posix() for p in (REPO / "tests" / "e2e").glob("test_*.py")]
    assert e2e and {xdist_group_of(path) for path in e2e} == {"lab"}
    assert xdist_group_of("tests/unit/test_judge.py") is None
    assert xdist_group_of("tests/functional/test_restore.py") is None


def test_each_other_integration_module_is_a_group_of_its_own():
    others = [p.relative_to(REPO).as_posix()
              for p in (REPO / "tests" / "integration").glob("test_*.py")
              if p.relative_to(REPO).as_posix() not in MOVES_LO_VIP]
    assert others and [xdist_group_of(path) for path in others] == others
