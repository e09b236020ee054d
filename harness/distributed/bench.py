"""The distributed benchmark: the same claims in this process and on Ray actors.

causal-heads bench distributed --model tiny-gpt2 --workers 2 --json
"""

from __future__ import annotations

import time

import numpy as np

from harness.analysis.evaluate import evaluate
from harness.claims.result import ClaimResult
from harness.claims.spec import Claim
from harness.distributed.ray_backend import RayBackend


def _distributed_claims(model: str, n_prompts: int) -> list:
    """Claims of every kind the plan distributes (a patch with random heads, a versus pair on an
    explicit-softmax layer, a control with the sign statistic), on layers 0 and 1 of any model."""
    common = {"model": model, "n_prompts": n_prompts, "max_tokens": 6, "direction": "increase"}
    return [
        Claim(
            id="dist_z",
            heads="1:0",
            patch_mode="z",
            source="gratitude",
            metric="gratitude_logprob",
            random_heads=3,
            **common,
        ),
        Claim(
            id="dist_v_only",
            heads="1:1",
            patch_mode="v_only",
            source="gratitude",
            metric="sentiment",
            versus={"patch_mode": "pattern_v"},
            **common,
        ),
        Claim(
            id="dist_mean",
            heads="0:1",
            patch_mode="mean",
            source="anger",
            metric="sentiment",
            statistic="sign",
            **common,
        ),
    ]


def bench_distributed(model: str, workers: int, n_prompts: int = 12, address: str | None = None) -> dict:
    """The same claims evaluated in this process and on Ray actors: times, and whether every
    verdict, p-value and per-prompt effect agrees (effects to 1e-6)."""
    claims = _distributed_claims(model, n_prompts)
    start = time.perf_counter()
    local = evaluate(claims)
    local_s = time.perf_counter() - start
    backend = RayBackend(address, workers)
    start = time.perf_counter()
    remote = evaluate(claims, backend=backend)
    ray_s = time.perf_counter() - start
    diffs = {r.claim.id: findings_difference(r, remote[r.claim.id]) for r in local}
    return {
        "benchmark": "distributed",
        "model": model,
        "workers": workers,
        "claims": len(claims),
        "n_prompts": n_prompts,
        "local_s": local_s,
        "ray_s": ray_s,
        "identical": all(d["same"] for d in diffs.values()),
        "max_per_prompt_diff": max(d["max_per_prompt_diff"] for d in diffs.values()),
        "reruns": backend.reruns,
        "by_claim": diffs,
    }


def findings_difference(a: ClaimResult, b: ClaimResult, tol: float = 1e-6) -> dict:
    """How two results of one claim differ: the same error, verdict and p-values (to 1e-9), and
    per-prompt effects within ``tol``."""
    pa, pb = np.asarray(a.delta, dtype=float), np.asarray(b.delta, dtype=float)
    if pa.shape != pb.shape:
        gap = float("inf")
    else:
        gap = float(np.max(np.abs(pa - pb))) if pa.size else 0.0
    same = (
        a.error == b.error
        and a.verdict == b.verdict
        and gap <= tol
        and _close(a.p_raw, b.p_raw)
        and _close(a.p_adjusted, b.p_adjusted)
    )
    return {"same": bool(same), "verdict": a.verdict, "max_per_prompt_diff": gap}


def _close(x: float | None, y: float | None, rel: float = 1e-9) -> bool:
    if x is None or y is None:
        return x is y
    return abs(x - y) <= rel * max(1.0, abs(x))
