"""Render the seed-style markdown report and plots from a findings document (never from HTML).

    causal-heads report reports/findings.json --markdown reports/phase7_head_patching_report.md
    causal-heads report --json-schema docs/findings.schema.json

The sections are described in :mod:`harness.report.markdown`. ``--json-schema PATH`` writes the
findings document's JSON Schema, generated from its model (``make schema``).
"""

from __future__ import annotations

import argparse
import os

from harness.core.errors import UserError, run_cli
from harness.core.results import atomic_write_text, check_writable, refuse_inputs_as_outputs
from harness.findings.schema import json_schema_text
from harness.report.markdown import write_report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="causal-heads report", description=__doc__.splitlines()[0])
    ap.add_argument("findings", nargs="?")
    ap.add_argument("--markdown")
    ap.add_argument("--plots-dir", default=os.path.join("results", "baseline", "plots", "heads"))
    ap.add_argument("--json-schema", metavar="PATH", help="write the findings document's JSON Schema here instead")
    args = ap.parse_args(argv)
    if args.json_schema:
        if args.findings or args.markdown:
            raise UserError("--json-schema writes the schema alone: give no findings file or --markdown")
        check_writable("--json-schema", args.json_schema, extensions=(".json",))
        atomic_write_text(args.json_schema, json_schema_text())
        print(f"wrote {args.json_schema}")
        return 0
    if not args.findings or not args.markdown:
        raise UserError("give a findings file and --markdown PATH (or --json-schema PATH)")
    refuse_inputs_as_outputs({"--markdown": args.markdown}, [args.findings])
    check_writable("--markdown", args.markdown, extensions=(".md",))
    check_writable("--plots-dir", args.plots_dir, folder=True)
    written = write_report(args.findings, args.markdown, args.plots_dir)
    print(f"wrote {args.markdown} and {written} plots in {args.plots_dir}")
    return 0


if __name__ == "__main__":
    run_cli(main)
