"""A small mutation check: does any test notice when one operator or constant changes?

    .venv/bin/python tools/mutants.py harness/regress.py -- tests/test_regress.py [more pytest args]
        [--only-lines 10-80] [--max 60] [--timeout 180] [--seed 0]

Each mutant changes one site of the module (a comparison, an arithmetic or boolean operator,
``not``, a number, ``True``/``False``, a ``return`` value), writes it in place, runs the given
tests with ``-x``, and restores the file (also on Ctrl-C; after a ``kill -9`` run
``git checkout <module>``). A mutant the tests pass is "survived": either a missing test or an
equivalent mutant (read the printed source line to tell which). Run it alone on the machine: each mutant
is a pytest process. No dependency beyond the standard library; ``mutmut`` would add one and
rewrites the whole tree.
"""

from __future__ import annotations

import argparse
import ast
import copy
import random
import subprocess
import sys
import time
from pathlib import Path

SWAP_CMP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
            ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn, ast.NotIn: ast.In}
SWAP_BIN = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Mult,
            ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult}


def sites(tree) -> list[tuple[int, str, int]]:
    """``(node index in ast.walk order, kind, line)`` of every mutable site."""
    out = []  # strings (docstrings, messages) are never sites
    for i, node in enumerate(ast.walk(tree)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Compare) and type(node.ops[0]) in SWAP_CMP:
            out.append((i, "cmp", line))
        elif isinstance(node, ast.BinOp) and type(node.op) in SWAP_BIN:
            out.append((i, "bin", line))
        elif isinstance(node, ast.BoolOp):
            out.append((i, "bool", line))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
            out.append((i, "unary", line))
        elif isinstance(node, ast.Constant) and isinstance(node.value, (bool, int, float)):
            out.append((i, "const", line))
        elif isinstance(node, ast.Return) and node.value is not None:
            out.append((i, "return", line))
    return out


def mutate(tree, index: int) -> str:
    """The source of ``tree`` with the site at ``index`` changed."""
    tree = copy.deepcopy(tree)
    node = list(ast.walk(tree))[index]
    if isinstance(node, ast.Compare):
        node.ops[0] = SWAP_CMP[type(node.ops[0])]()
    elif isinstance(node, ast.BinOp):
        node.op = SWAP_BIN[type(node.op)]()
    elif isinstance(node, ast.BoolOp):
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif isinstance(node, ast.UnaryOp):  # `not x` -> `x`, `-x` -> `x`
        class Drop(ast.NodeTransformer):
            def visit_UnaryOp(self, n):
                return n.operand if n is node else self.generic_visit(n)
        tree = Drop().visit(tree)
    elif isinstance(node, ast.Constant):
        v = node.value
        node.value = (not v) if isinstance(v, bool) else (v + 1 if isinstance(v, int) else v * 1.5 + 0.1)
    elif isinstance(node, ast.Return):
        node.value = ast.Constant(value=None)
    return ast.unparse(ast.fix_missing_locations(tree))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("module")
    ap.add_argument("pytest_args", nargs="+")
    ap.add_argument("--only-lines", default=None, help="A-B: only sites on these lines")
    ap.add_argument("--max", type=int, default=0, help="at most this many mutants (a seeded sample)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--kinds", default="cmp,bin,bool,unary,const,return")
    args = ap.parse_args(argv)

    path = Path(args.module)
    original = path.read_text()
    tree = ast.parse(original)
    kinds = set(args.kinds.split(","))
    found = [s for s in sites(tree) if s[1] in kinds]
    if args.only_lines:
        lo, hi = map(int, args.only_lines.split("-"))
        found = [s for s in found if lo <= s[2] <= hi]
    if args.max and len(found) > args.max:
        found = sorted(random.Random(args.seed).sample(found, args.max))
    lines = original.splitlines()
    survived = []
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *args.pytest_args]
    print(f"{len(found)} mutants of {path}", flush=True)
    try:
        for n, (index, kind, line) in enumerate(found, 1):
            source = mutate(tree, index)
            if ast.dump(ast.parse(source)) == ast.dump(tree):
                continue
            path.write_text(source)
            t0 = time.time()
            try:
                rc = subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    timeout=args.timeout).returncode
                verdict = "SURVIVED" if rc == 0 else "killed"
            except subprocess.TimeoutExpired:
                verdict = "timeout"
            finally:
                path.write_text(original)
            text = lines[line - 1].strip() if 0 < line <= len(lines) else ""
            print(f"[{n}/{len(found)}] {verdict:8s} {kind:6s} {path}:{line}  {text[:90]}  ({time.time() - t0:.0f}s)",
                  flush=True)
            if verdict == "SURVIVED":
                survived.append((kind, line, text))
    finally:
        path.write_text(original)
    print(f"\n{len(survived)} of {len(found)} survived")
    for kind, line, text in survived:
        print(f"  {kind:6s} {path}:{line}  {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
