"""The demo's narration prints a time difference with its own sign (never "+-2777 ms")."""

import importlib.util

from tests.unit.conftest import REPO


def demo():
    spec = importlib.util.spec_from_file_location("demo_narration", REPO / "demo" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_delta_is_printed_with_its_own_sign():
    delta = demo().delta
    assert delta(10.246, 10.0) == "+246 ms"
    assert delta(10.0, 12.777) == "-2777 ms"
    assert delta(5.0, 5.0) == "+0 ms"


def test_the_narration_never_puts_a_plus_before_a_computed_delta():
    text = (REPO / "demo" / "demo.py").read_text()
    assert "(+{" not in text
