"""Calibration on the model's own null data: an A/A test of the claims' statistics.

    python -m harness calibrate --model smollm2-135m --pool 10 --datasets 1000 \\
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

from dataclasses import asdict, dataclass

import numpy as np

from harness.metrics import get_metric
from harness.run.generation import GenerationResult
from harness.stats import paired_effect, sign_flip_p, sign_test, smallest_p, tost

SCHEMA = "causal-heads/calibration"
SCHEMA_VERSION = 2  # 2: settings.generation says samples / max_tokens; the pools are as in 1
READABLE_VERSIONS = (1, 2)
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
        if test == "equivalence":
            assert self.margin is not None  # the equivalence test runs only with a margin
            false_claim = abs(self.shift) >= self.margin
        else:
            false_claim = self.shift == 0
        if not false_claim:
            return "power"
        _, low, high = self.rate(test)
        if low > self.alpha:
            return "too many rejections"
        return "conservative" if high < self.alpha else "calibrated"

    def to_dict(self) -> dict:
        out = asdict(self)
        out["rates"] = {
            t: dict(zip(("rate", "ci_low", "ci_high"), self.rate(t)), reading=self.reading(t)) for t in self.rejections
        }
        out["coverage"] = dict(zip(("rate", "ci_low", "ci_high"), self.coverage()), reading=self.coverage_reading())
        return out


def _proportion(k: int, n: int) -> tuple[float, float, float]:
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return k / n, float(ci.low), float(ci.high)


def null_deltas(pool: np.ndarray, *, samples: int, datasets: int, seed: int) -> np.ndarray:
    """``[datasets, n_prompts]`` per-prompt Δ drawn from ``pool`` (``[n_prompts, pool size]`` scores).

    Per dataset and prompt: ``2 × samples`` distinct continuations in random order; the mean of
    the second half minus the mean of the first.
    """
    x = np.asarray(pool, dtype=float)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"the pool must be [n_prompts >= 2, pool size], got shape {x.shape}")
    if samples < 1 or x.shape[1] < 2 * samples:
        raise ValueError(
            f"{samples} samples per condition need a pool of at least {2 * samples} "
            f"continuations per prompt, got {x.shape[1]}"
        )
    rng = np.random.default_rng(seed)
    order = np.argsort(rng.random((datasets, *x.shape)), axis=-1)[..., : 2 * samples]
    drawn = np.take_along_axis(np.broadcast_to(x, (datasets, *x.shape)), order, axis=-1)
    return drawn[..., samples:].mean(axis=-1) - drawn[..., :samples].mean(axis=-1)


def calibrate(
    pool: np.ndarray,
    *,
    metric: str,
    lower: float = float("nan"),
    samples: int = 1,
    datasets: int = 1000,
    alpha: float = 0.05,
    shift: float = 0.0,
    margin: float | None = None,
    seed: int = 0,
    n_resamples: int = 2000,
    n_permutations: int = 10_000,
) -> NullCalibration:
    """Run the claims' tests on ``datasets`` null datasets drawn from ``pool`` (shifted by ``shift``).

    ``lower`` is the metric's floor (the share of the pool at it is reported); with a
    ``margin`` the equivalence claims' TOST runs too. Dataset ``k`` seeds its bootstrap and
    permutations from ``seed + 3k``.
    """

    x = np.asarray(pool, dtype=float)
    deltas = null_deltas(x, samples=samples, datasets=datasets, seed=seed) + shift
    hits = dict.fromkeys(TESTS + (("equivalence",) if margin is not None else ()), 0)
    covers = untestable = 0
    for k, d in enumerate(deltas):
        eff = paired_effect(
            d,
            alternative="greater",
            alpha=alpha,
            seed=seed + 3 * k,
            n_resamples=n_resamples,
            n_permutations=n_permutations,
        )
        p_less, _ = sign_flip_p(d, alternative="less", n_permutations=n_permutations, seed=seed + 3 * k + 2)
        ps = {
            "mean_increase": eff.p_value,
            "mean_decrease": p_less,
            "sign_increase": sign_test(d, alternative="greater").p_value,
            "sign_decrease": sign_test(d, alternative="less").p_value,
        }
        if margin is not None:
            ps["equivalence"] = tost(d, margin=margin, alpha=alpha).p_value
        for t, p in ps.items():
            hits[t] += p < alpha
        covers += eff.ci_low <= shift <= eff.ci_high
        untestable += smallest_p(d, "greater") >= alpha
    at_floor = float(np.mean(x == lower)) if np.isfinite(lower) else 0.0
    return NullCalibration(
        metric=metric,
        n_prompts=int(x.shape[0]),
        samples=samples,
        datasets=datasets,
        alpha=alpha,
        shift=shift,
        at_floor=at_floor,
        untestable=untestable / datasets,
        rejections={t: int(v) for t, v in hits.items()},
        ci_covers=int(covers),
        margin=margin,
    )


def score_pool(result: GenerationResult, metrics: list[str]) -> dict[str, np.ndarray]:
    """``{metric: [n_prompts, samples] scores}`` of a :class:`~harness.run.generation.GenerationResult`."""

    by_prompt = sorted(result.by_prompt().items())
    return {name: np.array([[get_metric(name).score(g) for g in gens] for _, gens in by_prompt]) for name in metrics}


def format_table(rows: list[NullCalibration]) -> str:
    """One line per metric: floor share, untestable share, each test's rejection rate [95% CI], CI coverage."""
    r0 = rows[0]
    tests = list(r0.rejections)
    what = "null" if r0.shift == 0 else f"planted shift {r0.shift:+g}"
    margin = f"; equivalence = TOST within ±{r0.margin:g} declares equivalent" if r0.margin is not None else ""
    head = (
        f"{r0.datasets} {what} datasets of {r0.n_prompts} prompts × {r0.samples} sample(s) per condition; "
        f"rejection rates at alpha {r0.alpha} [exact 95% CI]{margin}"
    )
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
        lines.append(
            f"{r.metric:20} {r.at_floor:6.2f} {r.untestable:7.2f}  "
            + "  ".join(f"{c:<21}" for c in cells)
            + f"  {cov[0]:.3f} [{cov[1]:.3f}, {cov[2]:.3f}]{mark}"
        )
    lines.append(
        "! rejects more often than alpha where the claim is false   < conservative (less often)   "
        "(where the claim is true the rate is power)"
    )
    lines.append(f"CI covers: ! below {CI_CONFIDENCE:.0%} (too narrow)   > above {CI_CONFIDENCE:.0%} (conservative)")
    return "\n".join(lines)
