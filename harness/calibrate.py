"""Calibration on the model's own null data: an A/A test of the claims' statistics.

    python -m harness.calibrate --model smollm2-135m --pool 10 --datasets 1000 \\
        --output reports/calibration.json

The calibration tests in ``tests/test_stats.py`` show that the statistics keep their size on
data we simulated. This command asks the same of the data a claim actually sees: sampled
continuations of the target prompts, scored by the suite's metrics, with no patch at all.

1. Generate ``--pool`` sampled continuations per target prompt (the profile's sampling
   settings and seed; no hooks), tracking the keyword log-probabilities as claims do.
2. Score every continuation with every metric.
3. Draw ``--datasets`` null datasets. In each, every prompt gets ``2 × --samples`` distinct
   continuations of its pool, split at random into a "baseline" and a "patched" half; its Δ
   is the patched mean minus the baseline mean (samples averaged per prompt, as in a claim).
   The two halves are exchangeable, so every directional claim about Δ is false by
   construction and the true mean Δ is 0 (plus ``--shift``, a planted effect, if given).
4. Run the claims' statistics on every dataset, the functions the suite calls: the sign-flip
   permutation test of the mean (``increase`` and ``decrease`` claims), the exact sign test
   (``statistic = "sign"`` claims), and whether the 95% bootstrap CI of the mean covers the
   true mean.

Given the pool, the datasets are independent draws, so each rejection rate is a binomial
proportion: it is reported with its exact 95% interval. A test whose interval lies above
alpha rejects too often on this model's data (exit 1); one whose interval lies below alpha is
conservative (typically a metric at its floor: few prompts change at all, which the ``floor``
and ``untestable`` warnings of a claim report). Likewise a CI whose coverage interval lies
below 95% is too narrow (exit 1). Exit 2 on bad input.

``--pools FILE`` re-runs steps 3-4 on the scores stored in an earlier ``--output`` document
(other alpha, samples, shift or dataset count) without generating again; its settings and
provenance are carried over and the file's sha256 is recorded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from harness.errors import UserError, check_options, run_cli

SCHEMA = "causal-heads/calibration"
SCHEMA_VERSION = 1
TESTS = ("mean_increase", "mean_decrease", "sign_increase", "sign_decrease")
CI_CONFIDENCE = 0.95  # the claims' bootstrap CI of the mean Δ


@dataclass(frozen=True)
class NullCalibration:
    """Rejection counts of each claim test over ``datasets`` null (or shifted) datasets of one metric."""

    metric: str
    n_prompts: int
    samples: int  # continuations per prompt and condition, averaged per prompt
    datasets: int
    alpha: float
    shift: float  # the true mean Δ (0: the null)
    at_floor: float  # share of the pool's continuations at the metric's lower bound
    untestable: float  # share of datasets whose smallest attainable p (increase) is >= alpha
    rejections: dict  # test name (TESTS, then "equivalence" with a margin) -> datasets where p < alpha
    ci_covers: int  # datasets whose 95% bootstrap CI of the mean covers the true mean
    margin: float | None = None  # equivalence margin of the TOST ("equivalence": p < alpha declares |Δ| < margin)

    def rate(self, test: str) -> tuple[float, float, float]:
        """Rejection rate of ``test`` with its exact (Clopper-Pearson) 95% interval."""
        return _proportion(self.rejections[test], self.datasets)

    def coverage(self) -> tuple[float, float, float]:
        return _proportion(self.ci_covers, self.datasets)

    def coverage_reading(self) -> str:
        """``undercovers`` (the coverage's interval lies below 95%: the CI is too narrow),
        ``conservative`` (above) or ``calibrated``."""
        _, low, high = self.coverage()
        if high < CI_CONFIDENCE:
            return "undercovers"
        return "conservative" if low > CI_CONFIDENCE else "calibrated"

    def reading(self, test: str) -> str:
        """Where the rate is a size (directional tests with no shift; the TOST with ``|shift| >=
        margin``, where "equivalent" is false): ``too many rejections`` (the rate's interval lies
        above alpha), ``conservative`` (below) or ``calibrated``. Elsewhere the rate is ``power``."""
        false_claim = abs(self.shift) >= self.margin if test == "equivalence" else self.shift == 0
        if not false_claim:
            return "power"
        _, low, high = self.rate(test)
        if low > self.alpha:
            return "too many rejections"
        return "conservative" if high < self.alpha else "calibrated"

    def to_dict(self) -> dict:
        out = asdict(self)
        out["rates"] = {t: dict(zip(("rate", "ci_low", "ci_high"), self.rate(t)), reading=self.reading(t))
                        for t in self.rejections}
        out["coverage"] = dict(zip(("rate", "ci_low", "ci_high"), self.coverage()), reading=self.coverage_reading())
        return out


def _proportion(k: int, n: int) -> tuple[float, float, float]:
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return k / n, float(ci.low), float(ci.high)


def null_deltas(pool, *, samples: int, datasets: int, seed: int) -> np.ndarray:
    """``[datasets, n_prompts]`` per-prompt Δ drawn from ``pool`` (``[n_prompts, pool size]`` scores).

    Per dataset and prompt: ``2 × samples`` distinct continuations in random order; the mean of
    the second half minus the mean of the first.
    """
    x = np.asarray(pool, dtype=float)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"the pool must be [n_prompts >= 2, pool size], got shape {x.shape}")
    if samples < 1 or x.shape[1] < 2 * samples:
        raise ValueError(f"{samples} samples per condition need a pool of at least {2 * samples} "
                         f"continuations per prompt, got {x.shape[1]}")
    rng = np.random.default_rng(seed)
    order = np.argsort(rng.random((datasets, *x.shape)), axis=-1)[..., :2 * samples]
    drawn = np.take_along_axis(np.broadcast_to(x, (datasets, *x.shape)), order, axis=-1)
    return drawn[..., samples:].mean(axis=-1) - drawn[..., :samples].mean(axis=-1)


def calibrate(pool, *, metric: str, lower: float = float("nan"), samples: int = 1, datasets: int = 1000,
              alpha: float = 0.05, shift: float = 0.0, margin: float | None = None, seed: int = 0,
              n_resamples: int = 2000, n_permutations: int = 10_000) -> NullCalibration:
    """Run the claims' tests on ``datasets`` null datasets drawn from ``pool`` (shifted by ``shift``).

    ``lower`` is the metric's floor (the share of the pool at it is reported); with a
    ``margin`` the equivalence claims' TOST runs too. Dataset ``k`` seeds its bootstrap and
    permutations from ``seed + 3k``.
    """
    from harness.stats import paired_effect, sign_flip_p, sign_test, smallest_p, tost

    x = np.asarray(pool, dtype=float)
    deltas = null_deltas(x, samples=samples, datasets=datasets, seed=seed) + shift
    hits = dict.fromkeys(TESTS + (("equivalence",) if margin is not None else ()), 0)
    covers = untestable = 0
    for k, d in enumerate(deltas):
        eff = paired_effect(d, alternative="greater", alpha=alpha, seed=seed + 3 * k, n_resamples=n_resamples,
                            n_permutations=n_permutations)
        p_less, _ = sign_flip_p(d, alternative="less", n_permutations=n_permutations, seed=seed + 3 * k + 2)
        ps = {"mean_increase": eff.p_value, "mean_decrease": p_less,
              "sign_increase": sign_test(d, alternative="greater").p_value,
              "sign_decrease": sign_test(d, alternative="less").p_value}
        if margin is not None:
            ps["equivalence"] = tost(d, margin=margin, alpha=alpha).p_value
        for t, p in ps.items():
            hits[t] += p < alpha
        covers += eff.ci_low <= shift <= eff.ci_high
        untestable += smallest_p(d, "greater") >= alpha
    at_floor = float(np.mean(x == lower)) if np.isfinite(lower) else 0.0
    return NullCalibration(metric=metric, n_prompts=int(x.shape[0]), samples=samples, datasets=datasets, alpha=alpha,
                           shift=shift, at_floor=at_floor, untestable=untestable / datasets,
                           rejections={t: int(v) for t, v in hits.items()}, ci_covers=int(covers), margin=margin)


def score_pool(result, metrics: list[str]) -> dict[str, np.ndarray]:
    """``{metric: [n_prompts, n_samples] scores}`` of a :class:`~harness.generation.GenerationResult`."""
    from harness.metrics import get_metric

    by_prompt = sorted(result.by_prompt().items())
    return {name: np.array([[get_metric(name).score(g) for g in gens] for _, gens in by_prompt])
            for name in metrics}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m harness.calibrate", description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="registered name, HF id or local directory [smollm2-135m]")
    ap.add_argument("--profile", help="sampling settings from harness/profiles.toml [baseline]")
    ap.add_argument("--metrics", help="comma-separated; default: the seed's table (sentiment, politeness, "
                                      "every emotion's keywords and log-prob), or every metric of --pools")
    ap.add_argument("--n-prompts", type=int, help="target prompts (default: the profile's)")
    ap.add_argument("--max-tokens", type=int, help="new tokens per continuation (default: the profile's)")
    ap.add_argument("--pool", type=int, help="sampled continuations per prompt [10]")
    ap.add_argument("--pools", metavar="FILE", help="reuse the scored continuations of an earlier --output .json "
                                                    "instead of generating")
    ap.add_argument("--samples", type=int, default=1, help="continuations per prompt and condition [1]")
    ap.add_argument("--datasets", type=int, default=1000, help="null datasets drawn from the pool [1000]")
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--shift", type=float, default=0.0, help="plant this true mean Δ (power instead of size)")
    ap.add_argument("--margin", type=float, help="also run the equivalence claims' TOST with this margin "
                                                 "(size at |shift| >= margin, power inside)")
    ap.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples per dataset [2000]")
    ap.add_argument("--seed", type=int, help="generation seed (default: the profile's, or --pools' seed); "
                                             "datasets use it too")
    ap.add_argument("--output", help="write the versioned result document here (.json or .pkl)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from harness.metrics import get_metric
    from harness.results import check_output_path, command_line, write_result

    checks = [(args.samples >= 1, "--samples", args.samples, ">= 1"),
              (args.datasets >= 1, "--datasets", args.datasets, ">= 1"),
              (0 < args.alpha < 1, "--alpha", args.alpha, "in (0, 1)"),
              (args.resamples >= 100, "--resamples", args.resamples, ">= 100"),
              (args.margin is None or 0 < args.margin < math.inf, "--margin", args.margin, "finite and > 0"),
              (math.isfinite(args.shift), "--shift", args.shift, "a finite number"),
              (args.seed is None or args.seed >= 0, "--seed", args.seed, "an integer >= 0")]
    if not args.pools:
        args.pool = 10 if args.pool is None else args.pool
        checks.insert(0, (args.pool >= 2 * args.samples, "--pool/--samples", f"{args.pool}/{args.samples}",
                          "a pool of at least 2 × samples"))
    check_options(checks)
    metrics = [m.strip() for m in args.metrics.split(",")] if args.metrics else None
    for m in metrics or ():
        get_metric(m)
    if args.output:
        check_output_path(args.output)
    t0 = time.perf_counter()
    if args.pools:
        pools, settings, provenance, seed = _stored_pools(args, metrics)
        gen_s = None
    else:
        pools, settings, provenance, seed, gen_s = _generated_pools(args, metrics)
    rows = [calibrate(pool, metric=m, lower=get_metric(m).lower, samples=args.samples, datasets=args.datasets,
                      alpha=args.alpha, shift=args.shift, margin=args.margin, seed=seed, n_resamples=args.resamples)
            for m, pool in pools.items()]
    print(format_table(rows))

    if args.output:
        from harness.results import environment

        settings.update(samples=args.samples, datasets=args.datasets, alpha=args.alpha, shift=args.shift,
                        margin=args.margin, bootstrap_resamples=args.resamples, dataset_seed=seed)
        write_result({"schema": SCHEMA, "schema_version": SCHEMA_VERSION,
                      "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "command": command_line(),
                      "settings": settings, "provenance": {**provenance, "analysis": environment()},
                      "pools": {m: p.tolist() for m, p in pools.items()},
                      "results": [r.to_dict() for r in rows],
                      "generation_seconds": gen_s, "wall_seconds": time.perf_counter() - t0}, args.output)
        print(f"wrote {args.output}", file=sys.stderr)
    liberal = [f"{r.metric} {t}" for r in rows for t in r.rejections if r.reading(t) == "too many rejections"]
    narrow = [f"{r.metric} ({r.coverage()[0]:.3f})" for r in rows if r.coverage_reading() == "undercovers"]
    if liberal:
        print(f"rejects more often than alpha {args.alpha} on null data: {', '.join(liberal)}", file=sys.stderr)
    if narrow:
        print(f"the {CI_CONFIDENCE:.0%} bootstrap CI of the mean covers the true mean less often than that: "
              f"{', '.join(narrow)}", file=sys.stderr)
    return 1 if liberal or narrow else 0


def _generated_pools(args, metrics: list[str] | None):
    """Generate ``--pool`` unpatched continuations per target prompt and score them (default: the
    seed's table metrics)."""
    from harness.config import resolve_run_config
    from harness.generation import generate
    from harness.head_patching import generation_config, table_metrics
    from harness.metrics.next_token import keyword_tracks
    from harness.models import load_model
    from harness.prompts import load_prompt_set
    from harness.results import environment

    profile = args.profile or "baseline"
    run = resolve_run_config(profile, {"n_prompts": args.n_prompts, "max_tokens": args.max_tokens,
                                       "seed": args.seed, "samples": args.pool})
    if not run.do_sample:
        raise UserError(f"profile {profile!r} decodes greedily: every continuation of a prompt would be "
                        f"the same; calibration needs a sampling profile")
    target_set = load_prompt_set(run.target)
    targets = target_set.head(run.n_prompts)
    gen_cfg = generation_config(run)
    t0 = time.perf_counter()
    handle = load_model(args.model or "smollm2-135m")
    fmt = handle.prompt_format if run.prompt_format == "model" else run.prompt_format
    print(f"{handle.name}: {len(targets)} {run.target} prompts × {args.pool} samples × {run.max_tokens} tokens, "
          f"no patch", file=sys.stderr, flush=True)
    result = generate(handle, targets, gen_cfg, prompt_format=fmt, track=keyword_tracks(handle.tokenizer))
    gen_s = time.perf_counter() - t0
    settings = {"model": handle.name, "run": run.to_dict(), "generation": gen_cfg.to_dict(), "prompt_format": fmt,
                "pool": args.pool}
    provenance = {"model": handle.provenance(), **environment(),
                  "prompt_file": {"path": target_set.path, "sha256": target_set.sha256}}
    return score_pool(result, metrics or table_metrics()), settings, provenance, run.seed, gen_s


def _stored_pools(args, metrics: list[str] | None):
    """The scored continuations of an earlier calibration document (``--pools``), with its settings."""
    from harness.models import file_sha256
    from harness.results import load_versioned

    given = [flag for flag, v in (("--model", args.model), ("--profile", args.profile), ("--n-prompts", args.n_prompts),
                                  ("--max-tokens", args.max_tokens), ("--pool", args.pool)) if v is not None]
    if given:
        raise UserError(f"{', '.join(given)} cannot be combined with --pools: its continuations were generated "
                        f"with the settings recorded in {args.pools}")
    if not args.pools.endswith(".json"):
        raise UserError(f"--pools {args.pools!r}: must be a .json calibration document (pickles are never read)")
    doc = load_versioned(args.pools, SCHEMA, SCHEMA_VERSION, "calibration")
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
        raise UserError(f"--samples {args.samples} is invalid: {args.pools} holds {width} continuations per "
                        f"prompt, at least 2 × samples are needed")
    settings, provenance = doc.get("settings"), doc.get("provenance")
    run_seed = settings.get("run", {}).get("seed") if isinstance(settings, dict) else None
    seed = settings.get("dataset_seed", run_seed) if isinstance(settings, dict) else None
    for ok, field_name, value, kind in ((isinstance(settings, dict), "settings", settings, "an object"),
                                        (isinstance(provenance, dict), "provenance", provenance, "an object"),
                                        (args.seed is not None
                                         or isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0,
                                         "settings.dataset_seed (or settings.run.seed)", seed, "an integer >= 0")):
        if not ok:
            raise UserError(f"{args.pools}: field {field_name!r} = {value!r}: must be {kind} (write calibration "
                            f"documents with harness.calibrate --output)")
    settings = dict(settings)
    seed = args.seed if args.seed is not None else seed
    provenance = {**provenance, "pools_from": {"path": args.pools, "sha256": file_sha256(args.pools)}}
    return pools, settings, provenance, seed


def format_table(rows: list[NullCalibration]) -> str:
    """One line per metric: floor share, untestable share, each test's rejection rate [95% CI], CI coverage."""
    r0 = rows[0]
    tests = list(r0.rejections)
    what = "null" if r0.shift == 0 else f"planted shift {r0.shift:+g}"
    margin = f"; equivalence = TOST within ±{r0.margin:g} declares equivalent" if r0.margin is not None else ""
    head = (f"{r0.datasets} {what} datasets of {r0.n_prompts} prompts × {r0.samples} sample(s) per condition; "
            f"rejection rates at alpha {r0.alpha} [exact 95% CI]{margin}")
    cols = f"{'metric':20} {'floor':>6} {'untest.':>7}  " + "  ".join(f"{t:<21}" for t in tests) + "  CI covers"
    lines = [head, cols]
    for r in rows:
        cells = []
        for t in tests:
            rate, low, high = r.rate(t)
            mark = {"too many rejections": "!", "conservative": "<"}.get(r.reading(t), " ")
            cells.append(f"{rate:.3f} [{low:.3f}, {high:.3f}]{mark}")
        cov = r.coverage()
        mark = {"undercovers": "!", "conservative": ">"}.get(r.coverage_reading(), "")
        lines.append(f"{r.metric:20} {r.at_floor:6.2f} {r.untestable:7.2f}  " + "  ".join(f"{c:<21}" for c in cells)
                     + f"  {cov[0]:.3f} [{cov[1]:.3f}, {cov[2]:.3f}]{mark}")
    lines.append("! rejects more often than alpha where the claim is false   < conservative (less often)   "
                 "(where the claim is true the rate is power)")
    lines.append(f"CI covers: ! below {CI_CONFIDENCE:.0%} (too narrow)   > above {CI_CONFIDENCE:.0%} (conservative)")
    return "\n".join(lines)


if __name__ == "__main__":
    run_cli(main)
