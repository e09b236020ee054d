"""How stable a sweep's selection is when its prompts are resampled (``sweep --bootstrap B``).

The sweep's per-prompt Δ of every head is one number per (head, prompt), computed for each
prompt on its own, so a sweep on a bootstrap resample of the prompts is the resample of those
columns: no model run is needed. For each of ``B`` resamples (prompts drawn with replacement,
seeded) the heads are ranked by mean Δ and the selection is what ``--write-claims`` would take:
the top ``k`` heads whose mean lies above the rounding of the metric (inside a resample the
mean stands in for the CI rule, which would need a bootstrap inside every bootstrap). Each head
gets ``selected_share`` (the share of resamples that selected it: the MIB shared task's
bootstrap of the discovery step, Méloux et al. 2025's stability) and the 95% interval of its
rank across resamples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.claims.evaluation import RESOLUTION


@dataclass(frozen=True)
class Stability:
    """Per head (``[n_layers, n_heads]``): share of resamples that selected it, and its rank's
    2.5% and 97.5% percentiles (1 = first)."""

    resamples: int
    top_k: int
    selected_share: np.ndarray
    rank_low: np.ndarray
    rank_high: np.ndarray

    def row(self, layer: int, head: int) -> dict[str, float | list[int]]:
        return {
            "selected_share": float(self.selected_share[layer, head]),
            "rank_interval": [int(self.rank_low[layer, head]), int(self.rank_high[layer, head])],
        }


def selection_stability(deltas: np.ndarray, *, top_k: int, resamples: int, seed: int) -> Stability:
    """The selection's stability for ``deltas`` ``[n_layers, n_heads, n_prompts]`` (module docstring)."""
    n_layers, n_heads, n = deltas.shape
    flat = deltas.reshape(n_layers * n_heads, n)
    rng = np.random.default_rng(seed + 4099)
    selected = np.zeros(flat.shape[0])
    ranks = np.empty((resamples, flat.shape[0]), dtype=np.int64)
    for b in range(resamples):
        means = flat[:, rng.integers(0, n, n)].mean(1)
        order = np.argsort(-means, kind="stable")
        ranks[b, order] = np.arange(1, len(order) + 1)
        top = [i for i in order[:top_k] if means[i] > RESOLUTION["float32"]]
        selected[top] += 1
    low = np.percentile(ranks, 2.5, axis=0, method="lower")
    high = np.percentile(ranks, 97.5, axis=0, method="higher")
    shape = (n_layers, n_heads)
    return Stability(resamples, top_k, (selected / resamples).reshape(shape), low.reshape(shape), high.reshape(shape))
