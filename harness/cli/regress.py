"""Regression of findings: what changed between two findings documents.

    causal-heads regress OLD.json NEW.json

Exit 1 when a claim supported in OLD is lost in NEW; see :mod:`harness.findings.regress`.
"""

from __future__ import annotations

import argparse

from harness.core.errors import run_cli
from harness.findings.regress import format_report, lost_claims, regression
from harness.findings.schema import load_document, require_complete


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="causal-heads regress", description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    args = ap.parse_args(argv)
    old, new = (require_complete(load_document(p), p) for p in (args.old, args.new))
    context, rows = regression(old, new)
    print(format_report(context, rows))
    return 1 if lost_claims(rows) else 0


if __name__ == "__main__":
    run_cli(main)
