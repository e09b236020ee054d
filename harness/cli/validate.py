"""The whole pipeline on models whose mechanism is known: recall, power and false positives.

    causal-heads validate                         # 20 draws per ground-truth model, the table
    causal-heads validate --quick --json          # 2 draws of 16 prompts: the per-commit check
    causal-heads validate --output fixtures/groundtruth/validation.json --markdown docs/validation.md   # the release record
    causal-heads validate --quick --check fixtures/groundtruth/validation.json    # exit 1 if worse than the record

Per draw: the attention and attribution screens, the causal sweep, ``--write-claims``, hand claims
about causal, inert and distractor heads, one family of claims evaluated as pytest would, every
claim read against the model's ``truth.json``. See :mod:`harness.validation`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import sys
import tempfile

from harness.core.errors import check_options, run_cli
from harness.core.results import atomic_write_text, check_output_path, check_replaceable, environment, write_result
from harness.model import groundtruth
from harness.model.loading import file_sha256
from harness.validation.record import check_against, markdown_table, read_record
from harness.validation.run import Settings, run_validation, tokens
from harness.validation.summary import SCHEMA, validation_document
from harness.validation.truth import load_truth

QUICK = {"runs": 2, "n_prompts": 16}
BEGIN, END = "<!-- validate:begin -->", "<!-- validate:end -->"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="causal-heads validate", description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(groundtruth.MODELS), help="comma-separated [all: %(default)s]")
    ap.add_argument("--runs", type=int, default=20, help="independent draws per model [20]")
    ap.add_argument("--n-prompts", type=int, default=24, help="prompt pairs per draw [24]")
    ap.add_argument("--random-heads", type=int, default=3, help="random-head control size [3]")
    ap.add_argument("--max-tokens", type=int, default=30, help="tokens generated per prompt [30]")
    ap.add_argument("--seed", type=int, default=0, help="base seed; draw r uses seed + 1000 r [0]")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK['runs']} draws of {QUICK['n_prompts']} prompts")
    ap.add_argument("--json", action="store_true", help="print the document as JSON instead of the table")
    ap.add_argument("--output", help="write the versioned document here (.json)")
    ap.add_argument("--markdown", help="rewrite the table between the validate markers of this markdown file")
    ap.add_argument("--check", metavar="RECORD", help="exit 1 where power or false positives are worse than RECORD")
    ap.add_argument("--keep", metavar="DIR", help="keep every draw's prompts, screens, sweep and findings in DIR")
    ap.add_argument("--force", action="store_true", help="replace an --output file that holds another kind of document")
    return ap


def _check(args: argparse.Namespace) -> list[str]:
    if args.quick:
        args.runs, args.n_prompts = QUICK["runs"], QUICK["n_prompts"]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        groundtruth.check(m)
    check_options(
        [
            (bool(models), "--models", repr(args.models), "one or more of " + ", ".join(groundtruth.MODELS)),
            (1 <= args.runs <= 1000, "--runs", args.runs, "in [1, 1000]"),
            (
                4 <= args.n_prompts <= 200,
                "--n-prompts",
                args.n_prompts,
                "in [4, 200] (the pools hold 400 pairs: 2 x n a draw)",
            ),
            (0 <= args.random_heads <= 3, "--random-heads", args.random_heads, "in [0, 3] (3 other heads per layer)"),
            (1 <= args.max_tokens <= 64, "--max-tokens", args.max_tokens, "in [1, 64]"),
            (0 <= args.seed <= 10**9, "--seed", args.seed, "in [0, 1e9]"),
        ]
    )
    if args.output:
        check_output_path(args.output)
        check_replaceable("--output", args.output, SCHEMA, args.force)
    if args.markdown and not args.markdown.endswith(".md"):
        check_options([(False, "--markdown", args.markdown, "a .md file")])
    return models


def _write_markdown(path: str, table: str) -> None:
    """Replace the text between the markers (or append them with the table)."""
    text = open(path, encoding="utf-8").read() if os.path.isfile(path) else ""
    block = f"{BEGIN}\n{table}{END}"
    if BEGIN in text and END in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text + ("\n" if text else "") + block + "\n"
    atomic_write_text(path, text)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    models = _check(args)
    record = read_record(args.check) if args.check else None
    truths = [load_truth(m) for m in models]
    settings = Settings(n_prompts=args.n_prompts, random_heads=args.random_heads, max_tokens=args.max_tokens)
    workdir = args.keep or tempfile.mkdtemp(prefix="causal-heads-validate-")
    log = (lambda line: print(line, file=sys.stderr)) if args.json else print
    try:
        results = run_validation(truths, settings, args.runs, args.seed, workdir, log)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    recorded = {"runs": args.runs, "seed": args.seed, **vars(settings)}
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    doc = validation_document(results, recorded, {"created": created, **environment(), "models_files": _files(models)})
    for truth in truths:  # the tokens each model's claims generated (what its truth decides)
        doc["models"][truth.model]["max_tokens"] = tokens(truth, settings)
    if args.output:
        write_result(doc, args.output)
    if args.markdown:
        _write_markdown(args.markdown, markdown_table(doc))
    print(json.dumps(doc["models"], indent=2) if args.json else markdown_table(doc))
    problems = check_against(doc, record) if record else []
    for p in problems:
        print(f"worse than {args.check}: {p}", file=sys.stderr)
    return 1 if problems else 0


def _files(models: list[str]) -> dict[str, dict[str, str]]:
    """The sha256 of each model's weights and truth file (what the figures are about)."""
    return {
        m: {
            "weights_sha256": file_sha256(os.path.join(groundtruth.model_dir(m), "model.safetensors")),
            "truth_sha256": file_sha256(groundtruth.truth_path(m)),
        }
        for m in models
    }


if __name__ == "__main__":
    run_cli(main)
