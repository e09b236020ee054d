"""All-heads causal sweep on the next-token keyword log-probability.

    causal-heads sweep --model smollm2-135m --emotion gratitude --output OUT.json [--write-claims]

The method is in :mod:`harness.analysis.sweep`.
"""

from __future__ import annotations

from harness.analysis.attribution import agreement, attribution
from harness.analysis.sweep import (
    CLAIM_METRICS,
    SCHEMA,
    SCHEMA_VERSION,
    claim_rows,
    combinations,
    compare_sweeps,
    load_sweep,
    sweep,
)
from harness.claims.spec import MAX_RANDOM_HEADS, claims_toml, load_claims
from harness.cli.placement import add_placement_options, check_placement
from harness.core.errors import UserError, check_options, reading_error
from harness.core.results import atomic_write_text, check_replaceable, check_writable, environment, file_stem
from harness.distributed.ray_backend import DEFAULT_WORKERS, RayBackend
from harness.model.loading import load_model
from harness.patch.modes import get_mode
from harness.report.plots import document_with_heatmap
from harness.run.prompts import load_emotion_prompts, load_prompt_set


def _compare_main(path_a: str, path_b: str, margin: float, top: int) -> int:

    docs = [load_sweep(path) for path in (path_a, path_b)]
    if not 0 < margin < float("inf"):
        raise UserError(f"--margin {margin}: must be finite and > 0 (nats)")
    try:
        res = compare_sweeps(*docs, margin=margin)
    except (KeyError, ValueError) as exc:
        raise UserError(f"--compare {path_a} {path_b}: {reading_error(exc)}") from None
    a, b = res["mode_a"], res["mode_b"]
    c = res["counts"]
    print(
        f"{b} vs {a}, per head over {docs[0]['n_prompts']} prompts (paired t / TOST ±{margin} nats, Holm over "
        f"{len(res['heads'])} heads): {c['differ']} differ, {c['equivalent']} equivalent, "
        f"{c['inconclusive']} inconclusive; Spearman ρ of the mean effects {res['spearman_rho']:+.3f}"
    )
    print(f"{'head':>6} {a:>12} {b:>12} {'difference':>10}  verdict")
    for r in res["heads"][:top]:
        print(f"{r['head']:>6} {r['mean_a']:+12.3f} {r['mean_b']:+12.3f} {r['difference']:+10.3f}  {r['verdict']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m harness sweep --model M --emotion E``: ranked table, heatmap PNG and JSON."""
    import argparse
    import os
    import time

    ap = argparse.ArgumentParser(prog="causal-heads sweep", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--emotion", help="emotion whose prompts are the patch source (required unless --compare)")
    ap.add_argument(
        "--compare",
        nargs=2,
        metavar=("A.json", "B.json"),
        help="no sweep: compare two sweep results head by head (e.g. pattern_v vs v_only)",
    )
    ap.add_argument("--margin", type=float, default=0.1, help="equivalence margin for --compare, nats [0.1]")
    ap.add_argument(
        "--patch-mode",
        default="z",
        help="z, pattern_v, v_only, pattern_only, zero, mean (always with 'last' alignment) [z]",
    )
    ap.add_argument("--n-prompts", type=int, default=70)
    ap.add_argument("--target", default="neutral")
    ap.add_argument("--top", type=int, default=15, help="rows of the ranked table to print")
    ap.add_argument(
        "--output", default=None, help="JSON result (default results/sweeps/<model>_<emotion>[_<mode>].json)"
    )
    ap.add_argument("--force", action="store_true", help="replace an --output file that holds another kind of document")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    ap.add_argument(
        "--combine",
        type=int,
        default=4,
        metavar="K",
        help="also patch the top 2..K heads (those whose CI lies above 0) together and "
        "compare with each alone [4; 0 = off]",
    )
    ap.add_argument(
        "--write-claims",
        default=None,
        metavar="TOML",
        help="write the top heads as claim rows for the suite (e.g. causal_tests/sweep_claims.toml)",
    )
    ap.add_argument("--claim-heads", type=int, default=3, help="how many top heads become claims [3]")
    ap.add_argument("--random-heads", type=int, default=6, help="random-head control size of written claims [6]")
    ap.add_argument(
        "--claim-metric",
        choices=CLAIM_METRICS,
        default="logprob",
        help="what written claims measure in 30-token generations: <emotion>_logprob (model-side "
        "keyword log-mass, continuous) or <emotion>_keywords (counts in the text; on SmolLM2 at "
        "their floor in ~95%% of replies, so such claims come out 'untestable') [logprob]",
    )
    add_placement_options(ap, batch=False, backend=True)
    args = ap.parse_args(argv)
    place = check_placement(args)  # a missing GPU, an unknown dtype or an unreachable Ray cluster: exit 2 now
    if args.compare:
        return _compare_main(*args.compare, args.margin, args.top)
    if not args.emotion:
        raise UserError("--emotion is required (or --compare A.json B.json)")
    if args.combine < 0 or args.combine == 1:
        raise UserError(f"--combine {args.combine}: must be 0 (off) or at least 2")
    if args.claim_heads < 1:
        raise UserError(f"--claim-heads {args.claim_heads}: must be at least 1")
    if args.n_prompts < 2:
        raise UserError(f"--n-prompts {args.n_prompts}: need at least 2 prompts for a CI")
    check_options(
        [
            (args.seed >= 0, "--seed", args.seed, "an integer >= 0"),
            (args.top >= 0, "--top", args.top, "an integer >= 0"),
            (
                0 <= args.random_heads <= MAX_RANDOM_HEADS,
                "--random-heads",
                args.random_heads,
                f"an integer in [0, {MAX_RANDOM_HEADS}]",
            ),
        ]
    )
    # every output location before the model is loaded: a bad one must not cost the sweep
    if args.write_claims:
        check_writable("--write-claims", args.write_claims, extensions=(".toml",))
    if args.output:
        check_writable("--output", args.output, extensions=(".json",))
        check_replaceable("--output", args.output, SCHEMA, args.force)
    else:
        check_writable("--output (default)", os.path.join("results", "sweeps"), folder=True)

    get_mode(args.patch_mode)
    sources = load_emotion_prompts(args.emotion).head(args.n_prompts)
    targets = load_prompt_set(args.target).head(args.n_prompts)
    handle = load_model(args.model, **place)
    start = time.perf_counter()
    if args.backend == "ray":  # layers sharded across the actors; the same numbers as here
        backend = RayBackend(args.ray_address, args.workers or DEFAULT_WORKERS)
        layers = list(range(handle.shape.n_layers))
        result = backend.sweep(args.model, targets, sources, args.emotion, mode=args.patch_mode, layers=layers, **place)
    else:
        result = sweep(handle, targets, sources, args.emotion, mode=args.patch_mode)
    seconds = time.perf_counter() - start
    # the attribution-patching screen on the same prompts, scored against this sweep (how far to trust it)
    start = time.perf_counter()
    estimate = attribution(handle, targets, sources, args.emotion, mode=args.patch_mode)
    versus_attribution = {
        **agreement(estimate.deltas, result.deltas).to_dict(),
        "attribution_s": time.perf_counter() - start,
        "sweep_s": seconds,
    }
    rows = result.ranked_rows(seed=args.seed)
    # "top heads": best mean first, among those whose CI lies above 0 (combinations and claims alike)
    top = [tuple(map(int, r["head"].split(":"))) for r in rows if r["ci_low"] > 0]
    combos = (
        combinations(handle, targets, sources, result, top[: args.combine], seed=args.seed)
        if min(args.combine, len(top)) >= 2
        else []
    )
    name = file_stem(handle.name)
    suffix = "" if args.patch_mode == "z" else f"_{args.patch_mode}"
    out = args.output or os.path.join("results", "sweeps", f"{name}_{args.emotion}{suffix}.json")
    doc = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "model": handle.provenance(),
        "emotion": args.emotion,
        "target": args.target,
        "n_prompts": len(targets),
        "patch_mode": args.patch_mode,
        "alignment": "last",
        "metric": "next-token keyword log-prob mass",
        "seconds": seconds,
        **environment(),
        "ranked": rows,
        "combinations": combos,
        "attribution": versus_attribution,
        "deltas": result.deltas.tolist(),
        "baseline": result.baseline.tolist(),
    }
    png = document_with_heatmap(  # the document and its heatmap go in place together
        doc,
        out,
        result.deltas.mean(-1),
        f"{handle.name}: Δ {args.emotion} keyword log-prob ({args.patch_mode}, last)",
    )
    print(f"{'rank':>4} {'head':>6} {'mean Δ':>8}  95% CI              share up")
    for r in rows[: args.top]:
        print(
            f"{r['rank']:>4} {r['head']:>6} {r['mean']:+8.3f}  [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]  "
            f"{100 * r['share_up']:.0f}%"
        )
    print(f"{len(rows)} heads × {len(targets)} prompts in {seconds:.1f} s; wrote {out} and {png}")
    va = versus_attribution
    print(
        f"attribution patching (one forward + backward, {va['attribution_s']:.1f} s) vs this sweep: Spearman ρ "
        f"{va['spearman_rho']:+.3f}, top-{va['top']} overlap {va['top_overlap']}/{va['top']}, signs agree on "
        f"{va['sign_agreement']:.0%} of {va['pairs']} head × prompt pairs (|Δ| > {va['floor']:g})"
    )
    if args.combine and not combos:
        print(f"fewer than 2 heads have a CI above 0: no combinations ({len(top)} such head(s))")
    if combos:
        print(
            f"\ntop-k heads (CI above 0) patched together vs alone (mean Δ, nats):\n{'k':>2}  {'together':>8}  95% CI"
            f"              additive  best single        gain over best [95% CI], p"
        )
        for c in combos:
            print(
                f"{c['k']:>2}  {c['mean']:+8.3f}  [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]  {c['additive']:+8.3f}"
                f"  {c['best_single']:>6} {c['best_single_mean']:+.3f}  {c['gain_over_best']:+.3f} "
                f"[{c['gain_ci_low']:+.3f}, {c['gain_ci_high']:+.3f}], p = {c['gain_p']:.3g}"
            )
    if args.write_claims:
        claims = claim_rows(
            args.model,
            args.emotion,
            args.target,
            len(targets),
            rows,
            combos,
            n_heads=args.claim_heads,
            random_heads=args.random_heads,
            source_file=out,
            weights=handle.provenance().get("weights_sha256", ""),
            mode=args.patch_mode,
            claim_metric=args.claim_metric,
        )
        if not claims:
            print(f"no head's CI lies above 0: no claims written to {args.write_claims}")
            return 0
        import shlex
        import sys

        command = "python -m harness sweep " + shlex.join(sys.argv[1:] if argv is None else argv)
        header = (
            f"Generated by `{command}`\non {time.strftime('%Y-%m-%d', time.gmtime())} from the sweep in "
            f"{out}. Do not edit by hand: rerun the command.\n"
            f"Loaded by the claims suite next to claims.toml (all tier slow)."
        )
        atomic_write_text(args.write_claims, claims_toml(claims, header))
        load_claims(args.write_claims)  # what we wrote must load
        print(f"wrote {len(claims)} claims to {args.write_claims}")
    return 0


if __name__ == "__main__":
    from harness.core.errors import run_cli

    run_cli(main)
