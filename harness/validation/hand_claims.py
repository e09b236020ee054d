"""The hand-written claims a validation run adds to the sweep's own: one per statement of a
model's truth, so that every draw tests true claims (causal heads, paths, equivalences that
hold by construction) and false ones (inert heads and distractors said to raise the metric).

Claims are data (:class:`~harness.claims.spec.Claim`); which of them is true is not written here
but read from ``truth.json`` by :func:`harness.validation.truth.classify`.
"""

from __future__ import annotations

from typing import Any

from harness.claims.spec import Claim
from harness.validation.truth import ModelTruth


def _slug(head: str) -> str:
    return head.replace(":", "_")


def hand_claims(truth: ModelTruth, model: str, n_prompts: int, seed: int, random_heads: int) -> list[Claim]:
    """Claims about ``truth``'s model (registered as ``model``) on ``n_prompts`` prompts, seed ``seed``."""
    e = truth.emotion
    common: dict[str, Any] = {
        "model": model,
        "source": e,
        "target": truth.target,
        "n_prompts": n_prompts,
        "seed": seed,
        "tier": "fast",
    }
    rows: list[dict[str, Any]] = []
    for head in truth.causal:  # true: the causal head raises the keyword count in generations
        rows.append(
            {"id": f"hand_{_slug(head)}_raises_{e}_keywords", "heads": head, "patch_mode": "z",
             "metric": f"{e}_keywords", "direction": "increase", "random_heads": random_heads}
        )  # fmt: skip
        rows.append(  # true by definition: pattern_v is z
            {"id": f"hand_{_slug(head)}_pattern_v_equivalent_to_z", "heads": head, "patch_mode": "pattern_v",
             "versus": {"patch_mode": "z"}, "metric": f"{e}_logprob", "direction": "equivalent", "margin": 0.05}
        )  # fmt: skip
    for p in truth.paths:  # true: the path carries the effect
        rows.append(
            {"id": f"hand_path_{'_'.join(map(_slug, p.senders))}_to_{'_'.join(map(_slug, p.receivers))}",
             "kind": "path", "senders": ",".join(p.senders), "receivers": ",".join(p.receivers),
             "patch_mode": "z", "metric": p.metrics[0], "direction": "increase", "random_heads": random_heads}
        )  # fmt: skip
    for head in truth.distractors:  # false: the distractor moves text, not the metric
        for metric in truth.distractor_metrics:
            rows.append(
                {"id": f"hand_distractor_{_slug(head)}_raises_{metric}", "heads": head, "patch_mode": "z",
                 "metric": metric, "direction": "increase", "random_heads": random_heads}
            )  # fmt: skip
    for head in truth.inert:  # false: an inert head raises nothing
        rows.append(
            {"id": f"hand_inert_{_slug(head)}_raises_{e}_logprob", "heads": head, "patch_mode": "z",
             "metric": f"{e}_logprob", "direction": "increase"}
        )  # fmt: skip
    if truth.inert:  # true: an inert head's patch is equivalent to no patch
        head = truth.inert[0]
        rows.append(
            {"id": f"hand_inert_{_slug(head)}_equivalent_to_no_patch", "heads": head, "patch_mode": "z",
             "metric": f"{e}_logprob", "direction": "equivalent", "margin": 0.05}
        )  # fmt: skip
    return [Claim(**common, **row) for row in rows]
