"""tools/mutants.py: every site kind yields exactly one changed program, docstrings and strings are left alone."""

from __future__ import annotations

import ast
import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("mutants", os.path.join(ROOT, "tools", "mutants.py"))
mutants = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mutants)

SOURCE = '''def f(x, y):
    """Doc 1."""
    if not x and -y < 3:
        return x + y
    return "text"
'''


def test_each_site_gives_one_distinct_mutant_and_strings_are_not_sites():
    tree = ast.parse(SOURCE)
    found = mutants.sites(tree)
    assert sorted(kind for _, kind, _ in found) == ["bin", "bool", "cmp", "const", "return", "return",
                                                     "unary", "unary"]
    full = [mutants.mutate(tree, i) for i, _, _ in found]
    assert all("Doc 1." in m for m in full)  # the docstring is never touched
    bodies = set(full)
    assert len(bodies) == len(found)  # every mutant differs from the others...
    assert ast.unparse(tree) not in bodies  # ...and from the original
    expected = {"if not x or -y < 3:", "if x and -y < 3:", "if not x and y < 3:", "if not x and -y <= 3:",
                "if not x and -y < 4:", "return x - y", "return None"}
    assert all(any(e in b for b in bodies) for e in expected), bodies
