"""All-heads causal sweep on the next-token keyword log-probability.

    causal-heads sweep --model smollm2-135m --emotion gratitude --output OUT.json [--write-claims]

The method is in :mod:`harness.analysis.sweep`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from harness.analysis.sweep import CLAIM_METRICS, SCHEMA, compare_sweeps, load_sweep
from harness.analysis.sweep_job import SweepJob, SweepOptions, run_sweep, write_sweep_claims
from harness.claims.spec import MAX_RANDOM_HEADS
from harness.cli.placement import add_placement_options, check_placement
from harness.core.errors import UserError, check_options, reading_error
from harness.core.results import check_replaceable, check_writable
from harness.distributed.ray_backend import DEFAULT_WORKERS, RayBackend


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


def _parser() -> argparse.ArgumentParser:
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
    ap.add_argument("--n-prompts", type=int, default=70, help="the first N prompt pairs of the split [70]")
    ap.add_argument(
        "--split",
        choices=("discovery", "confirmation", "all"),
        default=None,
        help="which prompts to select heads on; written claims are evaluated on the other split "
        "[discovery where the sets have splits, else all]",
    )
    ap.add_argument("--target", default="neutral")
    ap.add_argument("--top", type=int, default=15, help="rows of the ranked table to print")
    ap.add_argument(
        "--output", default=None, help="JSON result (default results/sweeps/<model>_<emotion>[_<mode>].json)"
    )
    ap.add_argument("--force", action="store_true", help="replace another kind of --output / --write-claims file")
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
    ap.add_argument(
        "--claim-prompts",
        type=int,
        default=None,
        metavar="N",
        help="n_prompts of written claims [as many as the sweep, at most the confirmation split's]",
    )
    ap.add_argument(
        "--bootstrap",
        type=int,
        default=0,
        metavar="B",
        help="resample the prompts B times: each head's share of resamples whose top --claim-heads it is in, "
        "and its rank interval [0 = off]",
    )
    ap.add_argument(
        "--min-stability",
        type=float,
        metavar="S",
        help="with --write-claims and --bootstrap: write only heads selected in at least this share of resamples",
    )
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
    return ap


def _check(args: argparse.Namespace) -> None:
    """Every option, and every output location, before the model is loaded: a bad one must not cost the sweep."""
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
                args.claim_prompts is None or args.claim_prompts >= 2,
                "--claim-prompts",
                args.claim_prompts,
                "an integer >= 2",
            ),
            (0 <= args.bootstrap <= 100_000, "--bootstrap", args.bootstrap, "an integer in [0, 100000]"),
            (
                args.min_stability is None or 0 < args.min_stability <= 1,
                "--min-stability",
                args.min_stability,
                "a share in (0, 1]",
            ),
            (
                0 <= args.random_heads <= MAX_RANDOM_HEADS,
                "--random-heads",
                args.random_heads,
                f"an integer in [0, {MAX_RANDOM_HEADS}]",
            ),
        ]
    )
    if args.min_stability is not None and not (args.write_claims and args.bootstrap):
        raise UserError("--min-stability filters written claims: it needs --write-claims and --bootstrap B")
    if args.write_claims:
        check_writable("--write-claims", args.write_claims, extensions=(".toml",))
        if not args.force and os.path.isfile(args.write_claims) and not _written_by_a_sweep(args.write_claims):
            raise UserError(
                f"--write-claims {args.write_claims!r} holds claims a sweep did not write (a hand-written file); "
                "give another path, or pass --force to replace it"
            )
    if args.output:
        check_writable("--output", args.output, extensions=(".json",))
        check_replaceable("--output", args.output, SCHEMA, args.force)
    else:
        check_writable("--output (default)", os.path.join("results", "sweeps"), folder=True)


def _print(job: SweepJob, top: int, combine: int) -> None:
    doc, rows, combos = job.document, job.rows, job.combos
    stable = "selection" in doc
    extra = f"  selected (of {doc['selection']['resamples']})  rank 95%" if stable else ""
    print(f"{'rank':>4} {'head':>6} {'mean Δ':>8}  95% CI              share up{extra}")
    for r in rows[:top]:
        shown = (
            f"  {100 * r['selected_share']:>8.0f}%          {r['rank_interval'][0]}-{r['rank_interval'][1]}"
            if stable
            else ""
        )
        print(
            f"{r['rank']:>4} {r['head']:>6} {r['mean']:+8.3f}  [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]  "
            f"{100 * r['share_up']:.0f}%{shown}"
        )
    print(f"{len(rows)} heads × {doc['n_prompts']} prompts in {doc['seconds']:.1f} s; wrote {job.path} and {job.png}")
    va = doc["attribution"]
    print(
        f"attribution patching (one forward + backward, {va['attribution_s']:.1f} s) vs this sweep: Spearman ρ "
        f"{va['spearman_rho']:+.3f}, top-{va['top']} overlap {va['top_overlap']}/{va['top']}, signs agree on "
        f"{va['sign_agreement']:.0%} of {va['pairs']} head × prompt pairs (|Δ| > {va['floor']:g})"
    )
    if combine and not combos:
        print(f"fewer than 2 heads have a CI above 0: no combinations ({len(job.top)} such head(s))")
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


def _written_by_a_sweep(path: str) -> bool:
    """Whether a claims file is one ``--write-claims`` wrote (its first line says so)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.readline().startswith("# Generated by `python -m harness sweep")
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    """``python -m harness sweep --model M --emotion E``: ranked table, heatmap PNG and JSON."""
    args = _parser().parse_args(argv)
    place = check_placement(args)  # a missing GPU, an unknown dtype or an unreachable Ray cluster: exit 2 now
    if args.compare:
        path_a, path_b = args.compare
        return _compare_main(path_a, path_b, args.margin, args.top)
    _check(args)
    opts = SweepOptions(
        emotion=args.emotion,
        model=args.model,
        patch_mode=args.patch_mode,
        n_prompts=args.n_prompts,
        split=args.split,
        target=args.target,
        seed=args.seed,
        combine=args.combine,
        bootstrap=args.bootstrap,
        select_k=args.claim_heads,
        placement=place,
    )
    backend = (
        RayBackend(args.ray_address, DEFAULT_WORKERS if args.workers is None else args.workers)
        if args.backend == "ray"
        else None
    )
    job = run_sweep(opts, args.output, backend=backend)
    _print(job, args.top, args.combine)
    if args.write_claims:
        command = "python -m harness sweep " + shlex.join(sys.argv[1:] if argv is None else argv)
        written = write_sweep_claims(
            job,
            args.write_claims,
            claim_heads=args.claim_heads,
            random_heads=args.random_heads,
            claim_metric=args.claim_metric,
            claim_prompts=args.claim_prompts,
            command=command,
            min_stability=args.min_stability,
        )
        if not written:
            print(f"no head's CI lies above 0: no claims written to {args.write_claims}")
            return 0
        print(f"wrote {written} claims to {args.write_claims}")
    return 0


if __name__ == "__main__":
    from harness.core.errors import run_cli

    run_cli(main)
