"""bench/mutations.py's list applies to the current tree, so it cannot rot unnoticed."""

import ast
import re
from pathlib import Path

from bench import mutations

REPO = Path(__file__).resolve().parent.parent.parent


def test_every_snippet_is_found_exactly_once_in_the_current_tree():
    assert mutations.stale() == {}


def test_names_are_unique_and_every_mutation_changes_its_file():
    names = [m.name for m in mutations.MUTATIONS]
    assert len(names) == len(set(names))
    assert all(m.snippet != m.replacement and m.guard for m in mutations.MUTATIONS)


def test_every_catching_test_exists():
    tree = ast.parse((REPO / mutations.GUARDS).read_text(encoding="utf-8"))
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    for mutation in mutations.MUTATIONS:
        assert mutation.catch, mutation.name
        for node_id in mutation.catch:
            path, test = node_id.split("::")
            assert path == mutations.GUARDS
            assert re.sub(r"\[.*\]$", "", test) in defined, (mutation.name, test)


def test_planting_in_a_copy_changes_the_copy_only(tmp_path):
    mutation = mutations.MUTATIONS[0]
    original = (REPO / mutation.path).read_text(encoding="utf-8")
    tree = mutations.copy_tree(tmp_path)

    mutations.plant(tree, mutation)

    planted = (tree / mutation.path).read_text(encoding="utf-8")
    assert planted == original.replace(mutation.snippet, mutation.replacement)
    assert (REPO / mutation.path).read_text(encoding="utf-8") == original
    assert (tree / "tests/functional/test_guards.py").is_file()
    assert mutations.stale(tree, [mutation]) == {mutation.name: 0}
