"""Calibration on the model's own null data: an A/A test of the claims' statistics.

    causal-heads calibrate --model smollm2-135m --pool 10 --datasets 1000 --output reports/calibration.json

The method is in :mod:`harness.analysis.calibrate`; exit 1 when a test rejects more often than
alpha on null data or the bootstrap CI undercovers.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

from harness.analysis.calibrate import CI_CONFIDENCE, SCHEMA, format_table
from harness.analysis.calibrate_job import (
    CalibrationReport,
    CalibrationSettings,
    Pools,
    generated_pools,
    run_calibration,
    stored_pools,
    write_calibration,
)
from harness.cli.placement import add_placement_options, placement_kwargs
from harness.core.errors import UserError, check_options, run_cli
from harness.core.results import check_output_path, check_replaceable
from harness.metrics import get_metric


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="causal-heads calibrate", description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="registered name, HF id or local directory [smollm2-135m]")
    ap.add_argument("--profile", help="sampling settings from harness/run/profiles.toml [baseline]")
    ap.add_argument(
        "--metrics",
        help="comma-separated; default: the seed's table (sentiment, politeness, "
        "every emotion's keywords and log-prob), or every metric of --pools",
    )
    ap.add_argument("--n-prompts", type=int, help="target prompts (default: the profile's)")
    ap.add_argument("--max-tokens", type=int, help="new tokens per continuation (default: the profile's)")
    ap.add_argument("--pool", type=int, help="sampled continuations per prompt [10]")
    ap.add_argument(
        "--pools",
        metavar="FILE",
        help="reuse the scored continuations of an earlier --output .json instead of generating",
    )
    ap.add_argument("--samples", type=int, default=1, help="continuations per prompt and condition [1]")
    ap.add_argument("--datasets", type=int, default=1000, help="null datasets drawn from the pool [1000]")
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--shift", type=float, default=0.0, help="plant this true mean Δ (power instead of size)")
    ap.add_argument(
        "--margin",
        type=float,
        help="also run the equivalence claims' TOST with this margin (size at |shift| >= margin, power inside)",
    )
    ap.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples per dataset [2000]")
    ap.add_argument(
        "--seed", type=int, help="generation seed (default: the profile's, or --pools' seed); datasets use it too"
    )
    ap.add_argument("--output", help="write the versioned result document here (.json or .pkl)")
    ap.add_argument("--force", action="store_true", help="replace an --output file that holds another kind of document")
    add_placement_options(ap, batch=False)
    return ap


# Upper bounds: --datasets 100000000 once grew to 24 GB before the kernel killed it; 100,000 null
# datasets give a false-positive rate to ±0.001, and a million resamples a p-value to ±0.001.
MAX_DATASETS = 100_000
MAX_RESAMPLES = 1_000_000


def _check(args: argparse.Namespace) -> None:
    checks = [
        (args.samples >= 1, "--samples", args.samples, ">= 1"),
        (1 <= args.datasets <= MAX_DATASETS, "--datasets", args.datasets, f"in [1, {MAX_DATASETS}]"),
        (0 < args.alpha < 1, "--alpha", args.alpha, "in (0, 1)"),
        (100 <= args.resamples <= MAX_RESAMPLES, "--resamples", args.resamples, f"in [100, {MAX_RESAMPLES}]"),
        (args.margin is None or 0 < args.margin < math.inf, "--margin", args.margin, "finite and > 0"),
        (math.isfinite(args.shift), "--shift", args.shift, "a finite number"),
        (args.seed is None or args.seed >= 0, "--seed", args.seed, "an integer >= 0"),
    ]
    if not args.pools:
        args.pool = 10 if args.pool is None else args.pool
        checks.insert(
            0,
            (
                args.pool >= 2 * args.samples,
                "--pool/--samples",
                f"{args.pool}/{args.samples}",
                "a pool of at least 2 × samples",
            ),
        )
    check_options(checks)


def _pools(args: argparse.Namespace, metrics: list[str] | None) -> Pools:
    if not args.pools:
        return generated_pools(
            args.model,
            profile=args.profile,
            n_prompts=args.n_prompts,
            max_tokens=args.max_tokens,
            seed=args.seed,
            pool=args.pool,
            metrics=metrics,
            placement=placement_kwargs(args),
        )
    given = [
        flag
        for flag, v in (
            ("--model", args.model),
            ("--profile", args.profile),
            ("--n-prompts", args.n_prompts),
            ("--max-tokens", args.max_tokens),
            ("--pool", args.pool),
        )
        if v is not None
    ]
    if given:
        raise UserError(
            f"{', '.join(given)} cannot be combined with --pools: its continuations were generated "
            f"with the settings recorded in {args.pools}"
        )
    return stored_pools(args.pools, metrics, samples=args.samples, seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    placement_kwargs(args)  # a missing GPU or unknown dtype: exit 2 before any work
    _check(args)
    metrics = [m.strip() for m in args.metrics.split(",")] if args.metrics else None
    for m in metrics or ():
        get_metric(m)
    if args.output:
        check_output_path(args.output)
        check_replaceable("--output", args.output, SCHEMA, args.force)
    t0 = time.perf_counter()
    pools = _pools(args, metrics)
    settings = CalibrationSettings(args.samples, args.datasets, args.alpha, args.shift, args.margin, args.resamples)
    report = CalibrationReport.of(run_calibration(pools, settings))
    print(format_table(report.rows))
    if args.output:
        write_calibration(args.output, pools, settings, report.rows, time.perf_counter() - t0)
        print(f"wrote {args.output}", file=sys.stderr)
    if report.liberal:
        print(f"rejects more often than alpha {args.alpha} on null data: {', '.join(report.liberal)}", file=sys.stderr)
    if report.narrow:
        print(
            f"the {CI_CONFIDENCE:.0%} bootstrap CI of the mean covers the true mean less often than that: "
            f"{', '.join(report.narrow)}",
            file=sys.stderr,
        )
    return 1 if report.liberal or report.narrow else 0


if __name__ == "__main__":
    run_cli(main)
