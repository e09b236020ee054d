"""Pure, explicitly seeded statistics returning typed records.

Prompts are the unit of resampling: callers pass one value per prompt (e.g. the per-prompt
Δ averaged over samples), never one per generation.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """Mean of per-prompt values with a bootstrap confidence interval over prompts."""

    mean: float
    ci_low: float
    ci_high: float
    confidence: float
    method: str  # "BCa", "percentile" (BCa undefined), or "degenerate" (all values equal)
    n: int
    n_resamples: int
    seed: int

    def to_dict(self) -> dict:
        return asdict(self)


def bootstrap_mean_ci(values, *, seed: int, confidence: float = 0.95, n_resamples: int = 10_000) -> Interval:
    """Bootstrap CI of the mean over prompts (BCa where defined, else percentile).

    Raises ``ValueError`` on fewer than 2 values or non-finite values: too little data is an
    error, never a zero-width interval around 0.
    """
    from scipy import stats

    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size < 2:
        raise ValueError(f"a bootstrap CI needs at least 2 per-prompt values, got {x.size}")
    if not np.all(np.isfinite(x)):
        raise ValueError("per-prompt values contain NaN or infinity")
    mean = float(x.mean())
    if np.all(x == x[0]):
        return Interval(mean, mean, mean, confidence, "degenerate", int(x.size), 0, seed)
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                                  method=method, rng=np.random.default_rng(seed))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(low) and math.isfinite(high):
            return Interval(mean, low, high, confidence, method, int(x.size), n_resamples, seed)
    raise ValueError("bootstrap failed to produce a finite interval")
