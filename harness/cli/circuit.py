"""One head's circuits: direct logit attribution, OV circuit, QK (attention) behaviour.

    causal-heads circuit dla|ov|qk --model smollm2-135m --head 21:1 --emotion gratitude [--json]

Writes a JSON document (``"head": "L:H"``, the analysis' results) and a PNG beside it. The
definitions (final norm scale frozen for DLA, the OV approximation, the QK parts) are in
:mod:`harness.analysis.circuit`.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from harness.analysis.circuit import ANALYSES, dla, ov, qk
from harness.cli.placement import add_placement_options, placement_kwargs
from harness.core.errors import UserError, check_options
from harness.core.results import check_replaceable, check_writable, environment, file_stem
from harness.model.loading import load_model
from harness.patch.heads import parse_head_spec
from harness.report.plots import circuit_plot, document_with_plot
from harness.run.prompts import load_emotion_prompts, load_prompt_set

SCHEMA = "causal-heads/circuit"
SCHEMA_VERSION = 1
MAX_TOKENS = 256


def one_head(spec: str, handle) -> tuple[int, int]:
    """``--head L:H`` as one (layer, head) of this model, or a UserError naming the value."""
    heads = parse_head_spec(spec).resolve(handle.shape.n_layers, handle.shape.n_heads, handle.name)
    if len(heads) != 1:
        raise UserError(f"--head {spec!r}: names {len(heads)} heads; a circuit analysis takes one (e.g. 21:1)")
    return heads[0]


def main(argv: list[str] | None = None) -> int:
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
    sources = load_emotion_prompts(args.emotion).head(args.n_prompts)
    targets = load_prompt_set(args.target).head(args.n_prompts)
    handle = load_model(args.model, **place)
    layer, head = one_head(args.head, handle)
    start = time.perf_counter()
    if args.analysis == "dla":
        result = dla(handle, targets, sources, args.emotion, layer, head, max_tokens=args.max_tokens, seed=args.seed)
    elif args.analysis == "ov":
        result = ov(handle, targets, sources, args.emotion, layer, head)
    else:
        result = qk(handle, targets, sources, args.emotion, layer, head, max_tokens=args.max_tokens, seed=args.seed)
    doc = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "analysis": args.analysis,
        "head": f"{layer}:{head}",
        "kv_head": head // handle.shape.group_size,
        "model": handle.provenance(),
        "emotion": args.emotion,
        "target": args.target,
        "n_prompts": len(targets),
        "max_tokens": args.max_tokens,
        "seconds": time.perf_counter() - start,
        **environment(),
        "result": result,
    }
    out = args.output or os.path.join(
        "results", "circuits", f"{file_stem(handle.name)}_{layer}_{head}_{args.analysis}.json"
    )
    png = document_with_plot(doc, out, circuit_plot)
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
