"""One head's circuits: direct logit attribution, OV circuit, QK (attention) behaviour.

    causal-heads circuit dla|ov|qk --model smollm2-135m --head 21:1 --emotion gratitude [--json]
    causal-heads circuit curve --model smollm2-135m --emotion gratitude --sweep SWEEP.json --sizes 1,2,5

Writes a JSON document (``"head": "L:H"``, the analysis' results) and a PNG beside it. The
definitions (final norm scale frozen for DLA, the OV approximation, the QK parts) are in
:mod:`harness.analysis.circuit`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from harness.analysis.circuit import ANALYSES
from harness.analysis.circuit_job import SCHEMA, run_circuit
from harness.cli import curve
from harness.cli.placement import add_placement_options, placement_kwargs
from harness.core.errors import check_options
from harness.core.results import check_replaceable, check_writable

MAX_TOKENS = 256


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    if given and given[0] == "curve":  # faithfulness curves of the top-k heads (harness.cli.curve)
        return curve.main(given[1:])
    ap = argparse.ArgumentParser(prog="causal-heads circuit", description=__doc__.splitlines()[0])
    ap.add_argument("analysis", choices=ANALYSES, help="dla (direct logit attribution), ov or qk")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--head", required=True, help="one head, L:H")
    ap.add_argument("--emotion", required=True, help="whose prompts are the source and whose keywords are measured")
    ap.add_argument("--target", default="neutral", help="prompt set generated from [neutral]")
    ap.add_argument("--n-prompts", type=int, default=20)
    ap.add_argument("--max-tokens", type=int, default=30, help="greedy tokens generated per target prompt (dla, qk)")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    ap.add_argument(
        "--output", default=None, help="JSON result (default results/circuits/<model>_<L>_<H>_<analysis>.json)"
    )
    ap.add_argument("--force", action="store_true", help="replace an --output file that holds another kind of document")
    ap.add_argument("--json", action="store_true", help="print the JSON document instead of a summary")
    add_placement_options(ap, batch=False)
    args = ap.parse_args(argv)
    place = placement_kwargs(args)
    check_options(
        [
            (args.n_prompts >= 2, "--n-prompts", args.n_prompts, "an integer >= 2 (a CI needs two prompts)"),
            (1 <= args.max_tokens <= MAX_TOKENS, "--max-tokens", args.max_tokens, f"an integer in [1, {MAX_TOKENS}]"),
            (args.seed >= 0, "--seed", args.seed, "an integer >= 0"),
        ]
    )
    if args.output:
        check_writable("--output", args.output, extensions=(".json",))
        check_replaceable("--output", args.output, SCHEMA, args.force)
    else:
        check_writable("--output (default)", os.path.join("results", "circuits"), folder=True)
    job = run_circuit(
        args.analysis,
        args.head,
        args.emotion,
        model=args.model,
        target=args.target,
        n_prompts=args.n_prompts,
        max_tokens=args.max_tokens,
        seed=args.seed,
        placement=place,
        output=args.output,
    )
    doc, out, png = job.document, job.path, job.png
    if args.json:
        print(json.dumps(doc, indent=1, ensure_ascii=False))
        return 0
    print(summary(doc))
    print(f"wrote {out} and {png}")
    return 0


def summary(doc: dict) -> str:
    r, head = doc["result"], doc["head"]
    if doc["analysis"] == "dla":
        t, s = r["target_generated"], r["source_final_position"]
        promoted = ", ".join(repr(x["token"]) for x in r["promoted_tokens"][:8])
        return (
            f"head {head}: direct effect on log p({doc['emotion']} keywords), final norm scale frozen\n"
            f"  {doc['target']} prompts, generated positions: {t['mean']:+.4f} nats [{t['ci_low']:+.4f}, {t['ci_high']:+.4f}]"
            f" over {t['n_prompts']} prompts\n"
            f"  {doc['emotion']} prompts, final position:   {s['mean']:+.4f} nats [{s['ci_low']:+.4f}, {s['ci_high']:+.4f}]\n"
            f"  tokens it promotes most: {promoted}"
        )
    if doc["analysis"] == "ov":
        src, tgt = r["source"], r["target"]
        tops = ", ".join(repr(x["token"]) for x in src["top_tokens"][:8])
        return (
            f"head {head} (KV head {doc['kv_head']}) OV circuit over {src['n_tokens']} {doc['emotion']} tokens: writes {tops}\n"
            f"  keyword tokens' centred logit: {src['keyword_mean_logit']:+.4f} reading {doc['emotion']} tokens, "
            f"{tgt['keyword_mean_logit']:+.4f} reading {doc['target']} tokens (median rank {src['keyword_median_rank']:.0f})\n"
            f"  copying: {src['copying_share']:.1%} of source tokens have themselves in their top 10"
        )
    parts = r["from_generated_positions"]
    lines = [f"head {head}: attention from generated positions ({doc['target']} prompts), mean mass [95% CI]"]
    lines += [f"  {p:<20} {v['mean']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]" for p, v in parts.items()]
    kw = r["source_final_position_on_keywords"]
    lines.append(f"  from the {doc['emotion']} prompts' final position onto their keywords: {kw['mean']:.3f}")
    return "\n".join(lines)


if __name__ == "__main__":
    from harness.core.errors import run_cli

    run_cli(main)
