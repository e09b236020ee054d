"""Faithfulness curve: the top-k heads as circuits, k along a range, under each ablation.

    causal-heads circuit curve --model smollm2-135m --emotion gratitude --rank-by sweep \
        --sweep causal_tests/discovery/smollm2-135m_gratitude.json --sizes 1,2,5,10,20,50

The method (ranking on discovery, measuring on confirmation, MIB's CPR and CMD) is in
:mod:`harness.analysis.curve`.
"""

from __future__ import annotations

import argparse
import json

from harness.analysis.curve import RANKINGS, SCHEMA, CurveOptions, run_curve
from harness.cli.placement import add_placement_options, placement_kwargs
from harness.core.errors import UserError, check_options
from harness.core.results import check_replaceable, check_writable
from harness.patch.modes import ABLATIONS


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(sorted({int(x) for x in text.split(",") if x.strip()}))
    except ValueError:
        raise UserError(f"--sizes {text!r}: comma-separated circuit sizes, e.g. 1,2,5,10") from None
    if not sizes or sizes[0] < 1:
        raise UserError(f"--sizes {text!r}: sizes are at least 1 head")
    return sizes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="causal-heads circuit curve", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--emotion", required=True)
    ap.add_argument("--target", default="neutral")
    ap.add_argument("--rank-by", choices=RANKINGS, default="sweep")
    ap.add_argument("--sweep", help="the sweep document that ranks the heads (--rank-by sweep)")
    ap.add_argument("--sizes", default="1,2,5,10,20,50", help="circuit sizes [1,2,5,10,20,50]")
    ap.add_argument("--ablations", default="mean,zero", help=f"some of {', '.join(ABLATIONS)} [mean,zero]")
    ap.add_argument("--n-prompts", type=int, default=70)
    ap.add_argument("--max-tokens", type=int, default=1, help="tokens generated per prompt [1: the next token]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", default=None, help="JSON (default results/curves/<model>_<emotion>_<rank-by>.json)")
    ap.add_argument("--force", action="store_true", help="replace an --output file that holds another kind of document")
    ap.add_argument("--json", action="store_true", help="print the document")
    add_placement_options(ap, batch=False)
    args = ap.parse_args(argv)
    ablations = tuple(a.strip() for a in args.ablations.split(",") if a.strip())
    check_options(
        [
            (args.n_prompts >= 2, "--n-prompts", args.n_prompts, "an integer >= 2"),
            (1 <= args.max_tokens <= 256, "--max-tokens", args.max_tokens, "an integer in [1, 256]"),
            (
                bool(ablations) and set(ablations) <= set(ABLATIONS),
                "--ablations",
                args.ablations,
                f"some of {', '.join(ABLATIONS)}",
            ),  # fmt: skip
        ]
    )
    if args.output:
        check_writable("--output", args.output, extensions=(".json",))
        check_replaceable("--output", args.output, SCHEMA, args.force)
    opts = CurveOptions(
        emotion=args.emotion, sizes=_sizes(args.sizes), model=args.model, target=args.target, rank_by=args.rank_by,
        sweep=args.sweep, ablations=ablations, n_prompts=args.n_prompts, max_tokens=args.max_tokens, seed=args.seed,
        placement=placement_kwargs(args),
    )  # fmt: skip
    doc, out, png = run_curve(opts, args.output)
    if args.json:
        print(json.dumps(doc, indent=1, ensure_ascii=False))
        return 0
    print(f"{doc['model'].get('name')}: faithfulness of the top-k heads (ranked by {doc['rank_by']} on "
          f"{doc['ranked_on']}, measured on {doc['measured_on']}, {doc['n_prompts']} prompt pairs)")  # fmt: skip
    for mode, m in doc["ablations"].items():
        points = ", ".join(f"k={p['size']}: {p['faithfulness']:.3f}" for p in m["points"])
        print(f"  {mode}: empty {m['empty']:.3f}; {points}; CPR {m['cpr']:.3f}, CMD {m['cmd']:.3f}")
    print(f"wrote {out} and {png}")
    return 0
