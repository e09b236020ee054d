"""The nightly regression of findings as one command (the workflow runs it; so can you).

    python -m harness nightly [--last LAST.json] [--out reports] [-- PYTEST ARGS...]

1-2. As ``harness.analysis.evidence`` (the main job), for every model's claims: ``pytest causal_tests -m
   claim --html OUT/evidence.html --self-contained-html --findings OUT/findings.json`` plus
   PYTEST ARGS, then the markdown report and plots. Claims that do not hold are findings, not
   a broken night; a usage or internal error, no claim collected or no new findings document
   stops with exit 3.
3. Compares with LAST when that file exists (``causal-heads regress``); a missing LAST is the
   first night and says so.
4. Writes OUT/nightly.md (verdicts, what changed, the regression table); when
   ``$GITHUB_STEP_SUMMARY`` is set, appends it there too.

Exit status: 0, 1 when a finding was lost, 2 on unusable input, 3 when the claims run broke.
"""

from __future__ import annotations

import argparse
import os

from harness.analysis.evidence import BROKEN, check_job_inputs, check_out_folder, run_claims, verdict_table
from harness.cli.placement import add_placement_options, check_placement, forwarded_pytest_options
from harness.core.errors import UserError, run_cli
from harness.core.outputs import Staging
from harness.core.results import atomic_write_text
from harness.findings.regress import format_report, lost_claims, regression
from harness.findings.schema import load_document, require_complete
from harness.report.text import cell


def summary_markdown(doc: dict, context: list[str], rows: list[dict] | None, last: str | None) -> str:

    out = ["# Nightly findings", "", *verdict_table(doc)]
    out += ["", "## Against the last night", ""]
    if rows is None:
        out.append(f"no earlier findings at {cell(last)}: nothing to compare" if last else "no earlier findings given")
        return "\n".join(out) + "\n"
    out += [f"- {cell(line).replace(' -&gt; ', ' → ')}" for line in context] or [
        "- inputs unchanged (commit, packages, weights, data files)"
    ]
    out.append("")
    if not rows:
        out.append("no changes: every verdict and effect is as before")
    else:
        out += ["| claim | change | old → new | detail |", "|---|---|---|---|"]
        out += [
            f"| {cell(r['claim'])} | {'**LOST** ' if r['lost'] else ''}{cell(r['change'])} | "
            f"{cell(r['old'])} → {cell(r['new'])} | {cell(r['detail'])} |"
            for r in rows
        ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="causal-heads nightly", description=__doc__.splitlines()[0])
    ap.add_argument("--last", help="last night's findings.json (absent file: first night)")
    ap.add_argument("--out", default="reports", help="folder for findings, evidence, report and plots")
    ap.add_argument("--force", action="store_true", help="replace files in --out that no job wrote")
    add_placement_options(ap, backend=True)
    ap.add_argument("pytest_args", nargs="*", help="after --: more pytest arguments (e.g. --claims FILE -k ID)")
    args = ap.parse_args(argv)
    check_placement(args)
    # read last night's document first: a bad one should not cost a whole claims run
    if args.last and os.path.exists(args.last) and not os.path.isfile(args.last):
        raise UserError(f"--last {args.last!r} is not a file (a missing file means the first night)")
    last = require_complete(load_document(args.last), args.last) if args.last and os.path.isfile(args.last) else None
    check_job_inputs("", args.pytest_args)
    out = os.path.abspath(args.out)
    check_out_folder(out, args.force)
    with Staging(out) as stage:
        doc = run_claims(stage, [*forwarded_pytest_options(args), *args.pytest_args], "nightly")
        if doc is None:
            return BROKEN
        rows = None
        context: list[str] = []
        if last is not None:
            context, rows = regression(last, doc)
            print(format_report(context, rows))
        else:
            print(
                f"no earlier findings at {args.last}: nothing to compare"
                if args.last
                else "no --last: nothing to compare"
            )
        text = summary_markdown(doc, context, rows, args.last)
        atomic_write_text(stage.path("nightly.md"), text)
        stage.commit()
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as fh:
            fh.write(text)
    return 1 if lost_claims(rows or []) else 0


if __name__ == "__main__":
    run_cli(main)
