"""Head screening: which heads look at an emotion's words (Δattention), or attribution patching.

    causal-heads screen --model smollm2-135m --emotion gratitude [--sweep SWEEP.json] --output OUT.json
    causal-heads screen --method attribution --model smollm2-135m --emotion gratitude [--sweep SWEEP.json]

The attention screen's method (definition, references, statistics) is in
:mod:`harness.analysis.screen`; attribution patching (every head's patch effect estimated from
one forward and one backward pass) in :mod:`harness.analysis.attribution`.
"""

from __future__ import annotations

import numpy as np

from harness.analysis.attribution import agreement, attribution
from harness.analysis.screen import (
    MIN_TARGETS_PER_DISTANCE,
    REFERENCES,
    check_sweep_matches,
    compare_with_sweep,
    mean_ci,
    screen,
)
from harness.analysis.sweep import load_sweep
from harness.cli.placement import add_placement_options, placement_kwargs
from harness.core.errors import UserError, check_options
from harness.core.results import check_replaceable, check_writable, environment, file_stem
from harness.model.loading import load_model
from harness.patch.modes import get_mode
from harness.report.plots import document_with_heatmap
from harness.run.prompts import load_emotion_prompts, load_prompt_set

SCREEN_SCHEMA = "causal-heads/screen"
METHODS = ("attention", "attribution")


def _attribution_main(args, handle, sources, targets, sweep_doc) -> int:
    """``--method attribution``: ranked estimates with bootstrap CIs, heatmap, agreement with a sweep."""
    import os
    import time

    start = time.perf_counter()
    result = attribution(handle, targets, sources, args.emotion, mode=args.patch_mode)
    seconds = time.perf_counter() - start
    rows = result.ranked_rows(seed=args.seed)
    comparison = None
    if sweep_doc is not None:
        causal = np.asarray(sweep_doc["deltas"], dtype=float)
        same = causal.shape == result.deltas.shape and sweep_doc.get("patch_mode", "z") == args.patch_mode
        comparison = (
            agreement(result.deltas, causal).to_dict()
            if same
            else compare_with_sweep(result.deltas.mean(-1), sweep_doc)
        )
    out = args.output or os.path.join("results", "screens", f"{file_stem(handle.name)}_{args.emotion}_attribution.json")
    doc = {
        "schema": SCREEN_SCHEMA,
        "schema_version": 2,
        "method": "attribution",
        "model": handle.provenance(),
        "emotion": args.emotion,
        "target": args.target,
        "n_prompts": len(targets),
        "patch_mode": args.patch_mode,
        "alignment": "last",
        "measure": "estimated Δ next-token keyword log-prob of the sweep's patch: (z_new − z)·∂M/∂z at the "
        "final prompt position (attribution patching); see harness/analysis/attribution.py",
        "ci": "percentile bootstrap over target prompts",
        "seconds": seconds,
        **environment(),
        "ranked": rows,
        "versus_sweep": comparison,
        "deltas": result.deltas.tolist(),
        "baseline": result.baseline.tolist(),
    }
    png = document_with_heatmap(
        doc,
        out,
        result.deltas.mean(-1),
        f"{handle.name}: attribution estimate of Δ {args.emotion} keyword log-prob ({args.patch_mode}, last)",
        label="mean estimated Δ over prompts (nats)",
    )
    print(f"{'rank':>4} {'head':>6} {'est. Δ':>8}  95% CI              share up")
    for r in rows[: args.top]:
        print(
            f"{r['rank']:>4} {r['head']:>6} {r['mean']:+8.3f}  [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]  "
            f"{100 * r['share_up']:.0f}%"
        )
    print(
        f"{len(rows)} heads × {len(targets)} prompts in {seconds:.1f} s (one forward + backward); wrote {out} and {png}"
    )
    if comparison:
        line = (
            f"versus the causal sweep {args.sweep}: Spearman ρ = {comparison['spearman_rho']:+.3f}; "
            f"top-{comparison['top']} overlap {comparison['top_overlap']}/{comparison['top']}"
        )
        if "sign_agreement" in comparison:
            line += f"; signs agree on {comparison['sign_agreement']:.0%} of {comparison['pairs']} head × prompt pairs"
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m harness screen --model M --emotion E``: ranked Δattention table, heatmap PNG and JSON."""
    import argparse
    import os
    import time

    ap = argparse.ArgumentParser(prog="causal-heads screen", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--emotion", required=True)
    ap.add_argument("--target", default="neutral", help="prompt set of the comparable tokens [neutral]")
    ap.add_argument("--n-prompts", type=int, default=70)
    ap.add_argument("--top", type=int, default=15, help="rows of the ranked table to print")
    ap.add_argument("--output", default=None, help="JSON result (default results/screens/<model>_<emotion>.json)")
    ap.add_argument("--force", action="store_true", help="replace an --output file that holds another kind of document")
    ap.add_argument(
        "--sweep",
        default=None,
        help="a `causal-heads sweep` JSON of the same model and emotion: "
        "report the rank correlation of screen and causal effect",
    )
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    ap.add_argument(
        "--reference",
        default="pooled",
        choices=REFERENCES,
        help="comparable tokens: the mean over every target prompt at each distance (pooled, "
        "default) or the paired target prompt only (paired)",
    )
    ap.add_argument(
        "--method",
        default="attention",
        choices=METHODS,
        help="attention (Δattention to keyword tokens, default) or attribution (attribution patching: "
        "each head's estimated effect of the sweep's patch on the next-token keyword log-prob)",
    )
    ap.add_argument(
        "--patch-mode", default="z", help="the patch attribution patching estimates [z] (--method attribution)"
    )
    add_placement_options(ap, batch=False)
    args = ap.parse_args(argv)
    place = placement_kwargs(args)  # a missing GPU or unknown dtype: exit 2 now
    if args.n_prompts < 2:
        raise UserError(f"--n-prompts {args.n_prompts}: need at least 2 prompt pairs for a CI")
    check_options(
        [
            (args.seed >= 0, "--seed", args.seed, "an integer >= 0"),
            (args.top >= 0, "--top", args.top, "an integer >= 0"),
        ]
    )
    if args.output:  # before the model is loaded: a bad location must not cost the screen
        check_writable("--output", args.output, extensions=(".json",))
        check_replaceable("--output", args.output, SCREEN_SCHEMA, args.force)
    else:
        check_writable("--output (default)", os.path.join("results", "screens"), folder=True)
    sources = load_emotion_prompts(args.emotion).head(args.n_prompts)
    targets = load_prompt_set(args.target).head(args.n_prompts)

    if args.method == "attention" and args.patch_mode != "z":
        raise UserError(f"--patch-mode {args.patch_mode}: only with --method attribution")
    get_mode(args.patch_mode)
    sweep_doc = load_sweep(args.sweep) if args.sweep else None
    handle = load_model(args.model, **place)
    if sweep_doc is not None:
        try:
            check_sweep_matches(sweep_doc, handle, args.emotion)
        except ValueError as exc:
            raise UserError(f"--sweep {args.sweep}: {exc}") from None
    if args.method == "attribution":
        return _attribution_main(args, handle, sources, targets, sweep_doc)
    start = time.perf_counter()
    try:
        result = screen(handle, sources, targets, args.emotion, target=args.target, reference=args.reference)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    seconds = time.perf_counter() - start
    if len(result.used) < 2:
        raise UserError(f"only {len(result.used)} {args.emotion} prompt(s) contain a keyword token; need 2")
    rows = []
    low, high = mean_ci(result, seed=args.seed)
    for rank, (layer, head, mean) in enumerate(result.ranked(), 1):
        rows.append(
            {
                "rank": rank,
                "head": f"{layer}:{head}",
                "mean": mean,
                "ci_low": float(low[layer, head]),
                "ci_high": float(high[layer, head]),
                "emotion_mass": float(result.emotion_mass[layer, head].mean()),
                "neutral_mass": float(result.neutral_mass[layer, head].mean()),
            }
        )
    comparison = None
    if sweep_doc is not None:
        comparison = compare_with_sweep(result.deltas.mean(-1), sweep_doc)  # checked above
    name = file_stem(handle.name)
    out = args.output or os.path.join("results", "screens", f"{name}_{args.emotion}.json")
    pooled = result.reference == "pooled"
    unit = "emotion prompts" if pooled else "prompt pairs"
    beyond = (
        f"the distances {MIN_TARGETS_PER_DISTANCE}+ {args.target} prompts reach"
        if pooled
        else f"the paired {args.target} prompt's length"
    )
    doc = {
        "schema": SCREEN_SCHEMA,
        "schema_version": 2,
        "model": handle.provenance(),
        "emotion": args.emotion,
        "target": args.target,
        "reference": result.reference,
        "n_used": len(result.used),
        "excluded_prompts": result.excluded,
        "excluded_no_keyword": result.no_keyword,
        "query_position": "last prompt position",
        "measure": "Δattention = attention mass on keyword tokens (emotion prompt) − mass on tokens at the "
        "same distances from the end of the text in "
        + ("the target prompts (mean over those that reach each distance)" if pooled else "the paired target prompt")
        + "; see harness/screen.py",
        "ci": (
            "percentile bootstrap resampling emotion and target prompts independently"
            if pooled
            else "BCa bootstrap over prompt pairs"
        ),
        "keyword_tokens": result.keyword_tokens,
        "clipped_tokens": result.clipped_tokens,
        "seconds": seconds,
        **environment(),
        "ranked": rows,
        "versus_sweep": comparison,
        "deltas": result.deltas.tolist(),
    }
    png = document_with_heatmap(  # the document and its heatmap go in place together
        doc,
        out,
        result.deltas.mean(-1),
        f"{handle.name}: Δattention to {args.emotion} keywords ({result.reference} reference)",
        label=f"mean Δattention over {unit}",
    )
    print(f"{'rank':>4} {'head':>6} {'Δattn':>8}  95% CI              emotion  {args.target}")
    for r in rows[: args.top]:
        print(
            f"{r['rank']:>4} {r['head']:>6} {r['mean']:+8.3f}  [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]  "
            f"{r['emotion_mass']:.3f}    {r['neutral_mass']:.3f}"
        )
    print(
        f"{len(rows)} heads × {len(result.used)} {unit} ({result.reference} reference) in {seconds:.1f} s "
        f"({len(result.excluded)} left out: {len(result.no_keyword)} emotion prompts without a keyword token, "
        f"{len(result.excluded) - len(result.no_keyword)} whose keywords all lie beyond {beyond}; "
        f"{sum(result.clipped_tokens)} more keyword tokens clipped in those used); wrote {out} and {png}"
    )
    if comparison:
        print(
            f"versus the causal sweep {args.sweep}: Spearman ρ = {comparison['spearman_rho']:+.3f} "
            f"(p = {comparison['spearman_p']:.2g}); top-{comparison['top']} overlap "
            f"{comparison['top_overlap']}/{comparison['top']}"
        )
    return 0


if __name__ == "__main__":
    from harness.core.errors import run_cli

    run_cli(main)
