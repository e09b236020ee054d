"""Head screening: which heads look at an emotion's words (Δattention), or attribution patching.

    causal-heads screen --model smollm2-135m --emotion gratitude [--sweep SWEEP.json] --output OUT.json
    causal-heads screen --method attribution --model smollm2-135m --emotion gratitude [--sweep SWEEP.json]

The attention screen's method (definition, references, statistics) is in
:mod:`harness.analysis.screen`; attribution patching (every head's patch effect estimated from
one forward and one backward pass) in :mod:`harness.analysis.attribution`.
"""

from __future__ import annotations

import argparse
import os

from harness.analysis.screen import REFERENCES
from harness.analysis.screen_job import (
    METHODS,
    SCREEN_SCHEMA,
    ScreenJob,
    ScreenOptions,
    attention_reach,
    attention_unit,
    run_screen,
)
from harness.cli.placement import add_placement_options, placement_kwargs
from harness.core.errors import UserError, check_options
from harness.core.results import check_replaceable, check_writable


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="causal-heads screen", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--emotion", required=True)
    ap.add_argument("--target", default="neutral", help="prompt set of the comparable tokens [neutral]")
    ap.add_argument("--n-prompts", type=int, default=70)
    ap.add_argument(
        "--split",
        choices=("discovery", "confirmation", "all"),
        default=None,
        help="which prompts to screen on [discovery where the sets have splits, else all]",
    )
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
    return ap


def _print_attribution(job: ScreenJob, top: int, sweep: str | None) -> None:
    doc, rows, comparison = job.document, job.rows, job.document["versus_sweep"]
    print(f"{'rank':>4} {'head':>6} {'est. Δ':>8}  95% CI              share up")
    for r in rows[:top]:
        print(
            f"{r['rank']:>4} {r['head']:>6} {r['mean']:+8.3f}  [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]  "
            f"{100 * r['share_up']:.0f}%"
        )
    print(
        f"{len(rows)} heads × {doc['n_prompts']} prompts in {doc['seconds']:.1f} s (one forward + backward); "
        f"wrote {job.path} and {job.png}"
    )
    if comparison:
        line = (
            f"versus the causal sweep {sweep}: Spearman ρ = {comparison['spearman_rho']:+.3f}; "
            f"top-{comparison['top']} overlap {comparison['top_overlap']}/{comparison['top']}"
        )
        if "sign_agreement" in comparison:
            line += f"; signs agree on {comparison['sign_agreement']:.0%} of {comparison['pairs']} head × prompt pairs"
        print(line)


def _print_attention(job: ScreenJob, top: int, sweep: str | None) -> None:
    doc, rows, comparison = job.document, job.rows, job.document["versus_sweep"]
    print(f"{'rank':>4} {'head':>6} {'Δattn':>8}  95% CI              emotion  {doc['target']}")
    for r in rows[:top]:
        print(
            f"{r['rank']:>4} {r['head']:>6} {r['mean']:+8.3f}  [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]  "
            f"{r['emotion_mass']:.3f}    {r['neutral_mass']:.3f}"
        )
    excluded, no_keyword = len(doc["excluded_prompts"]), len(doc["excluded_no_keyword"])
    print(
        f"{len(rows)} heads × {doc['n_used']} {attention_unit(doc)} ({doc['reference']} reference) in "
        f"{doc['seconds']:.1f} s ({excluded} left out: {no_keyword} emotion prompts without a keyword token, "
        f"{excluded - no_keyword} whose keywords all lie beyond {attention_reach(doc)}; "
        f"{sum(doc['clipped_tokens'])} more keyword tokens clipped in those used); wrote {job.path} and {job.png}"
    )
    if comparison:
        print(
            f"versus the causal sweep {sweep}: Spearman ρ = {comparison['spearman_rho']:+.3f} "
            f"(p = {comparison['spearman_p']:.2g}); top-{comparison['top']} overlap "
            f"{comparison['top_overlap']}/{comparison['top']}"
        )


def main(argv: list[str] | None = None) -> int:
    """``python -m harness screen --model M --emotion E``: ranked Δattention table, heatmap PNG and JSON."""
    args = _parser().parse_args(argv)
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
    opts = ScreenOptions(
        emotion=args.emotion,
        model=args.model,
        target=args.target,
        n_prompts=args.n_prompts,
        split=args.split,
        seed=args.seed,
        reference=args.reference,
        method=args.method,
        patch_mode=args.patch_mode,
        sweep=args.sweep,
        placement=place,
    )
    job = run_screen(opts, args.output)
    (_print_attribution if args.method == "attribution" else _print_attention)(job, args.top, args.sweep)
    return 0


if __name__ == "__main__":
    from harness.core.errors import run_cli

    run_cli(main)
