"""Render the seed-style markdown report and plots from a findings document (never from HTML).

    causal-heads report reports/findings.json --markdown reports/phase7_head_patching_report.md

The sections are described in :mod:`harness.report.markdown`.
"""

from __future__ import annotations

import argparse
import os

from harness.core.errors import run_cli
from harness.core.results import check_writable, refuse_inputs_as_outputs
from harness.report.markdown import write_report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="causal-heads report", description=__doc__.splitlines()[0])
    ap.add_argument("findings")
    ap.add_argument("--markdown", required=True)
    ap.add_argument("--plots-dir", default=os.path.join("results", "baseline", "plots", "heads"))
    args = ap.parse_args(argv)
    refuse_inputs_as_outputs({"--markdown": args.markdown}, [args.findings])
    check_writable("--markdown", args.markdown, extensions=(".md",))
    check_writable("--plots-dir", args.plots_dir, folder=True)
    written = write_report(args.findings, args.markdown, args.plots_dir)
    print(f"wrote {args.markdown} and {written} plots in {args.plots_dir}")
    return 0


if __name__ == "__main__":
    run_cli(main)
