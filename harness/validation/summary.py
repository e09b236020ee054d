"""What the draws of a validation run add up to, per model: recall, power, false positives.

- ``recall_at_3``: share of draws in which every causal head ranks in the top 3 of the causal
  sweep (``recall_at_3_by_ranking`` gives the attention and attribution screens too), with each
  ranking's mean rank;
- ``selection_frequency``: the share of the sweep's prompt resamples that selected a head
  (:mod:`harness.analysis.stability`): the causal heads' mean and minimum over draws, and the
  largest any other head reached;
- ``power``: share of the claims the truth makes true (equivalence claims aside) that the suite
  supported; ``false_positive_rate``: share of the claims it makes false that were supported;
  each with its exact (Clopper-Pearson) 95% interval and counts;
- ``random_control_pass``: share of claims with a random-head control whose control passed,
  for true and for false claims;
- ``equivalence_supported``: share of the "≈" claims that hold by construction that were supported;
- ``distractor``: per distractor claim, the share of draws where it was not supported and the
  mean share of prompts whose generations the patch changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from scipy.stats import binomtest

from harness.validation.run import RANKINGS, ClaimOutcome, DrawResult

SCHEMA, SCHEMA_VERSION = "causal-heads/validation", 1


def rate(k: int, n: int) -> dict[str, Any]:
    """``k`` of ``n`` with its exact two-sided 95% interval (None where ``n`` is 0)."""
    if n == 0:
        return {"rate": None, "ci_low": None, "ci_high": None, "k": 0, "n": 0}
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return {"rate": k / n, "ci_low": float(ci.low), "ci_high": float(ci.high), "k": k, "n": n}


def _share(outcomes: Iterable[ClaimOutcome], *, supported: bool = True) -> dict[str, Any]:
    items = list(outcomes)
    return rate(sum((o.verdict == "supported") == supported for o in items), len(items))


def summarize_model(draws: Sequence[DrawResult]) -> dict[str, Any]:
    """The figures of one model's draws (see the module docstring)."""
    claims = [o for d in draws for o in d.claims]
    directional = [o for o in claims if not o.equivalence]
    true, false = [o for o in directional if o.truth == "true"], [o for o in directional if o.truth == "false"]
    recall = {key: rate(sum(all(r <= 3 for r in d.ranks[key].values()) for d in draws), len(draws)) for key in RANKINGS}
    mean_rank = {
        key: sum(sum(d.ranks[key].values()) / max(len(d.ranks[key]), 1) for d in draws) / max(len(draws), 1)
        for key in RANKINGS
    }
    power, fpr = _share(true), _share(false)
    causal = {h for d in draws for h in d.ranks["sweep"]}
    selection = {
        "causal_mean": _mean([d.selection[h] for d in draws for h in causal]),
        "causal_min": min((d.selection[h] for d in draws for h in causal), default=None),
        "other_max": max((v for d in draws for h, v in d.selection.items() if h not in causal), default=None),
    }
    return {
        "runs": len(draws),
        "recall_at_3": recall["sweep"]["rate"],
        "recall_at_3_by_ranking": {k: v["rate"] for k, v in recall.items()},
        "mean_rank": mean_rank,
        "selection_frequency": selection,
        "power": power["rate"],
        "power_detail": power,
        "false_positive_rate": fpr["rate"],
        "false_positive_ci": [fpr["ci_low"], fpr["ci_high"]],
        "false_positive_detail": fpr,
        "power_by_origin": {o: _share(x for x in true if x.origin == o) for o in ("sweep", "hand")},
        "false_positive_by_origin": {o: _share(x for x in false if x.origin == o) for o in ("sweep", "hand")},
        "random_control_pass": {
            "true_claims": _control(true),
            "false_claims": _control(false),
        },
        "equivalence_supported": _share(o for o in claims if o.equivalence and o.truth == "true"),
        "unclassified": sum(o.truth is None for o in claims),
        # the sweep's claims are evaluated on the draw's confirmation prompts: none may be exploratory
        "written_claims_confirmatory": rate(
            sum(o.label == "confirmatory" for o in claims if o.origin == "sweep"),
            sum(o.origin == "sweep" for o in claims),
        ),
        "distractor": _distractors(claims),
        "seconds": sum(d.seconds for d in draws),
    }


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _control(outcomes: list[ClaimOutcome]) -> dict[str, Any]:
    with_control = [o for o in outcomes if o.random_control_passed is not None]
    return rate(sum(bool(o.random_control_passed) for o in with_control), len(with_control))


def _distractors(claims: list[ClaimOutcome]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cid in dict.fromkeys(o.id for o in claims if o.id.startswith("hand_distractor_")):
        runs = [o for o in claims if o.id == cid]
        shares = [o.text_changed / o.n for o in runs if o.text_changed is not None and o.n]
        out[cid] = {
            "not_supported": _share(runs, supported=False),
            "mean_share_text_changed": sum(shares) / len(shares) if shares else None,
        }
    return out


def validation_document(results: dict[str, list[DrawResult]], settings: dict[str, Any], env: dict[str, Any]) -> dict:
    """The versioned document ``causal-heads validate --json`` writes: figures per model, then every draw."""
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "settings": settings,
        **env,
        "models": {m: summarize_model(d) for m, d in results.items()},
        "draws": {m: [d.to_dict() for d in ds] for m, ds in results.items()},
    }
