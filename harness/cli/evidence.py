"""The main job: run every claim about one model and turn the results into evidence.

    causal-heads evidence [--model smollm2-135m] [--out reports] [--device D --dtype T]
                          [--backend ray --ray-address A --workers N] [-- PYTEST ARGS...]

The steps and exit codes are in :mod:`harness.analysis.evidence`.
"""

from __future__ import annotations

import argparse
import os

from harness.analysis.evidence import BROKEN, check_job_inputs, check_out_folder, run_claims, verdict_table
from harness.cli.placement import add_placement_options, check_placement, forwarded_pytest_options
from harness.core.errors import UserError, run_cli
from harness.core.outputs import Staging
from harness.core.results import atomic_write_text
from harness.model import groundtruth
from harness.model.loading import DEFAULT_MODEL, weights_absent
from harness.report.circuit_block import circuit_markdown
from harness.report.discovery import discovery_markdown
from harness.report.trust import trust_markdown


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="causal-heads evidence", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"run the claims about this model [{DEFAULT_MODEL}]; NAME=PATH for weights in a directory",
    )
    ap.add_argument("--out", default="reports", help="folder for findings, evidence, report and plots")
    ap.add_argument("--force", action="store_true", help="replace files in --out that no job wrote")
    add_placement_options(ap, backend=True)
    ap.add_argument("pytest_args", nargs="*", help="after --: more pytest arguments (e.g. -k head_21_1)")
    args = ap.parse_args(argv)
    check_placement(args)  # a missing GPU or an unreachable Ray cluster: exit 2 before anything runs

    check_job_inputs(args.model, args.pytest_args)
    name, sep, _ = args.model.partition("=")
    absent = None if sep else weights_absent(name)
    if absent:  # every claim would be skipped: say so before running anything
        raise UserError(absent)

    out = os.path.abspath(args.out)
    check_out_folder(out, args.force)
    with Staging(out) as stage:
        doc = run_claims(stage, ["--model", args.model, *forwarded_pytest_options(args), *args.pytest_args], "evidence")
        if doc is None:
            return BROKEN
        text = "\n".join(
            [
                "# Evidence",
                "",
                *verdict_table(doc),
                "",
                *discovery_markdown(doc.get("claims", [])),
                *circuit_markdown(doc.get("claims", [])),
                f"HTML evidence: {os.path.join(out, 'evidence.html')}",
                f"markdown report: {os.path.join(out, 'phase7_head_patching_report.md')}",
                "",
                *trust_markdown(groundtruth.shipped_record()),
            ]
        )
        atomic_write_text(stage.path("summary.md"), text)
        stage.commit()
    print("\n" + text, end="")
    return 0


if __name__ == "__main__":
    run_cli(main)
