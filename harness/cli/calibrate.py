"""Calibration on the model's own null data: an A/A test of the claims' statistics.

    causal-heads calibrate --model smollm2-135m --pool 10 --datasets 1000 --output reports/calibration.json

The method is in :mod:`harness.analysis.calibrate`; exit 1 when a test rejects more often than
alpha on null data or the bootstrap CI undercovers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
import time

import numpy as np

from harness.analysis.calibrate import (
    CI_CONFIDENCE,
    READABLE_VERSIONS,
    SCHEMA,
    SCHEMA_VERSION,
    calibrate,
    format_table,
    score_pool,
)
from harness.analysis.head_patching import generation_config, table_metrics
from harness.cli.placement import add_placement_options, placement_kwargs
from harness.core.errors import UserError, check_options, run_cli
from harness.core.results import (
    check_output_path,
    check_replaceable,
    command_line,
    environment,
    load_versioned,
    write_result,
)
from harness.metrics import get_metric
from harness.metrics.next_token import keyword_tracks
from harness.model.loading import file_sha256, load_model
from harness.run.generation import generate
from harness.run.profiles import resolve_run_config
from harness.run.prompts import load_prompt_set


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="causal-heads calibrate", description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="registered name, HF id or local directory [smollm2-135m]")
    ap.add_argument("--profile", help="sampling settings from harness/profiles.toml [baseline]")
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    placement_kwargs(args)  # a missing GPU or unknown dtype: exit 2 before any work

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
    metrics = [m.strip() for m in args.metrics.split(",")] if args.metrics else None
    for m in metrics or ():
        get_metric(m)
    if args.output:
        check_output_path(args.output)
        check_replaceable("--output", args.output, SCHEMA, args.force)
    t0 = time.perf_counter()
    if args.pools:
        pools, settings, provenance, seed = _stored_pools(args, metrics)
        gen_s = None
    else:
        pools, settings, provenance, seed, gen_s = _generated_pools(args, metrics)
    rows = [
        calibrate(
            pool,
            metric=m,
            lower=get_metric(m).lower,
            samples=args.samples,
            datasets=args.datasets,
            alpha=args.alpha,
            shift=args.shift,
            margin=args.margin,
            seed=seed,
            n_resamples=args.resamples,
        )
        for m, pool in pools.items()
    ]
    print(format_table(rows))

    if args.output:
        settings.update(
            samples=args.samples,
            datasets=args.datasets,
            alpha=args.alpha,
            shift=args.shift,
            margin=args.margin,
            bootstrap_resamples=args.resamples,
            dataset_seed=seed,
        )
        write_result(
            {
                "schema": SCHEMA,
                "schema_version": SCHEMA_VERSION,
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "command": command_line(),
                "settings": settings,
                "provenance": {**provenance, "analysis": environment()},
                "pools": {m: p.tolist() for m, p in pools.items()},
                "results": [r.to_dict() for r in rows],
                "generation_seconds": gen_s,
                "wall_seconds": time.perf_counter() - t0,
            },
            args.output,
        )
        print(f"wrote {args.output}", file=sys.stderr)
    liberal = [f"{r.metric} {t}" for r in rows for t in r.rejections if r.reading(t) == "too many rejections"]
    narrow = [f"{r.metric} ({r.coverage()[0]:.3f})" for r in rows if r.coverage_reading() == "undercovers"]
    if liberal:
        print(f"rejects more often than alpha {args.alpha} on null data: {', '.join(liberal)}", file=sys.stderr)
    if narrow:
        print(
            f"the {CI_CONFIDENCE:.0%} bootstrap CI of the mean covers the true mean less often than that: "
            f"{', '.join(narrow)}",
            file=sys.stderr,
        )
    return 1 if liberal or narrow else 0


def _generated_pools(args, metrics: list[str] | None):
    """Generate ``--pool`` unpatched continuations per target prompt and score them (default: the
    seed's table metrics)."""

    profile = args.profile or "baseline"
    run = resolve_run_config(
        profile, {"n_prompts": args.n_prompts, "max_tokens": args.max_tokens, "seed": args.seed, "samples": args.pool}
    )
    if not run.do_sample:
        raise UserError(
            f"profile {profile!r} decodes greedily: every continuation of a prompt would be "
            f"the same; calibration needs a sampling profile"
        )
    target_set = load_prompt_set(run.target)
    targets = target_set.head(run.n_prompts)
    gen_cfg = generation_config(run)
    t0 = time.perf_counter()
    handle = load_model(args.model or "smollm2-135m", **placement_kwargs(args))
    fmt = handle.prompt_format if run.prompt_format == "model" else run.prompt_format
    print(
        f"{handle.name}: {len(targets)} {run.target} prompts × {args.pool} samples × {run.max_tokens} tokens, no patch",
        file=sys.stderr,
        flush=True,
    )
    result = generate(handle, targets, gen_cfg, prompt_format=fmt, track=keyword_tracks(handle.tokenizer))
    gen_s = time.perf_counter() - t0
    settings = {
        "model": handle.name,
        "run": run.to_dict(),
        "generation": gen_cfg.to_dict(),
        "prompt_format": fmt,
        "pool": args.pool,
    }
    provenance = {
        "model": handle.provenance(),
        **environment(),
        "prompt_file": {"path": target_set.path, "sha256": target_set.sha256},
    }
    return score_pool(result, metrics or table_metrics()), settings, provenance, run.seed, gen_s


def _stored_pools(args, metrics: list[str] | None):
    """The scored continuations of an earlier calibration document (``--pools``), with its settings."""

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
    if not args.pools.endswith(".json"):
        raise UserError(f"--pools {args.pools!r}: must be a .json calibration document (pickles are never read)")
    doc = load_versioned(args.pools, SCHEMA, READABLE_VERSIONS, "calibration")
    stored = doc.get("pools")
    if not isinstance(stored, dict) or not stored:
        raise UserError(f"{args.pools}: has no pools of scores")
    for m in metrics or ():
        if m not in stored:
            raise UserError(f"metric {m!r} is not in {args.pools}; it has: {', '.join(stored)}")
    pools = {}
    for m in metrics or stored:
        try:
            pools[m] = np.asarray(stored[m], dtype=float)
        except (TypeError, ValueError):
            pools[m] = None
        if pools[m] is None or pools[m].ndim != 2 or pools[m].shape[0] < 2 or not np.all(np.isfinite(pools[m])):
            raise UserError(f"{args.pools}: pool {m!r} must be finite scores, [prompts >= 2][continuations]")
    width = min(p.shape[1] for p in pools.values())
    if width < 2 * args.samples:
        raise UserError(
            f"--samples {args.samples} is invalid: {args.pools} holds {width} continuations per "
            f"prompt, at least 2 × samples are needed"
        )
    settings, provenance = doc.get("settings"), doc.get("provenance")
    run_seed = settings.get("run", {}).get("seed") if isinstance(settings, dict) else None
    seed = settings.get("dataset_seed", run_seed) if isinstance(settings, dict) else None
    for ok, field_name, value, kind in (
        (isinstance(settings, dict), "settings", settings, "an object"),
        (isinstance(provenance, dict), "provenance", provenance, "an object"),
        (
            args.seed is not None or isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0,
            "settings.dataset_seed (or settings.run.seed)",
            seed,
            "an integer >= 0",
        ),
    ):
        if not ok:
            raise UserError(
                f"{args.pools}: field {field_name!r} = {value!r}: must be {kind} (write calibration "
                f"documents with causal-heads calibrate --output)"
            )
    settings = dict(settings)
    seed = args.seed if args.seed is not None else seed
    provenance = {**provenance, "pools_from": {"path": args.pools, "sha256": file_sha256(args.pools)}}
    return pools, settings, provenance, seed


if __name__ == "__main__":
    run_cli(main)
