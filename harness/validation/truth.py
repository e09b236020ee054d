"""A ground-truth model's truth as a typed record, and what it says about a claim.

``truth.json`` beside each shipped model (``fixtures/groundtruth/<model>/``) states, as data,
which heads cause which effect on which metric, which heads are inert, which are distractors and
which paths carry an effect; :func:`classify` reads a :class:`~harness.claims.spec.Claim`
against it: ``"true"`` (the model's construction makes the claim hold), ``"false"`` (it makes it
fail) or ``None`` (the truth does not decide it: another mode, metric or kind of contrast).
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from harness.claims.spec import Claim
from harness.core.errors import UserError
from harness.model import groundtruth

Truth = Literal["true", "false"]


class Effect(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    heads: tuple[str, ...]
    source: str
    target: str
    metrics: tuple[str, ...]
    modes: tuple[str, ...]
    direction: Literal["increase", "decrease"]


class PathEffect(Effect):
    senders: tuple[str, ...]
    receivers: tuple[str, ...]
    heads: tuple[str, ...] = ()


class ModelTruth(BaseModel):
    """``truth.json`` (format ``causal-heads/truth``, version 1)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    format: Literal["causal-heads/truth"]
    version: Literal[1]
    model: str
    emotion: str
    target: str
    claim_metric: Literal["logprob", "keywords"]  # what --write-claims scores (the one the truth decides)
    decided_tokens: int | None = None  # claims about at most this many generated tokens (None: any)
    causal: tuple[str, ...]
    inert: tuple[str, ...]
    inert_modes: tuple[str, ...]
    distractors: tuple[str, ...] = ()
    distractor_metrics: tuple[str, ...] = ()
    previous_token: tuple[str, ...] = ()
    effects: tuple[Effect, ...]
    paths: tuple[PathEffect, ...] = ()

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m for e in self.effects for m in e.metrics))


def load_truth(model: str) -> ModelTruth:
    """The truth of shipped ground-truth model ``model`` (one message on a damaged file)."""
    path = groundtruth.truth_path(model)
    try:
        with open(path, encoding="utf-8") as fh:
            return ModelTruth.model_validate(json.load(fh))
    except (OSError, ValueError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        raise UserError(f"{path}: not a readable truth file ({type(exc).__name__}: {first})") from None


def _heads(spec: str) -> set[str]:
    return {h.strip() for h in spec.split(",") if h.strip()}


def classify(claim: Claim, truth: ModelTruth) -> Truth | None:
    """What the construction of ``truth``'s model says of ``claim`` (see the module docstring)."""
    if truth.decided_tokens is not None and claim.max_tokens > truth.decided_tokens:
        return None
    if claim.direction == "equivalent":
        return _classify_equivalence(claim, truth)
    if claim.kind == "path":
        return _classify_path(claim, truth)
    heads, changed = _heads(claim.heads), _versus_changes(claim)
    if changed == {"heads"}:  # these heads vs others (e.g. together vs the best single head)
        assert claim.versus is not None
        return _classify_versus_heads(claim, truth, heads - _heads(claim.versus.heads), _heads(claim.versus.heads))
    if changed:
        return None  # a contrast of sources or modes: the truth states effects, not such differences
    if _no_effect(claim, truth, heads):
        return "false"
    for e in _matching(claim, truth.effects):
        if heads & set(e.heads):
            return "true" if claim.direction == e.direction else "false"
    return None


def _versus_changes(claim: Claim) -> set[str]:
    """The fields in which the claim's ``versus`` condition differs from its own patch."""
    if claim.versus is None:
        return set()
    own = {"heads": claim.heads or claim.senders, "patch_mode": claim.patch_mode, "source": claim.source,
           "receivers": claim.receivers}  # fmt: skip
    return {k for k, v in claim.versus.to_dict().items() if v != own[k]} | (
        {"receivers"} if claim.versus.receivers != claim.receivers else set()
    )


def _matching(claim: Claim, effects: tuple[Effect, ...] | tuple[PathEffect, ...]) -> list:
    return [
        e
        for e in effects
        if claim.source == e.source
        and claim.target == e.target
        and claim.metric in e.metrics
        and claim.patch_mode in e.modes
    ]


def _no_effect(claim: Claim, truth: ModelTruth, heads: set[str]) -> bool:
    """Every patched head is inert (in a mode that keeps lengths) or a distractor on this metric."""
    inert = set(truth.inert) if claim.patch_mode in truth.inert_modes else set()
    distractors = set(truth.distractors) if claim.metric in truth.distractor_metrics else set()
    return bool(heads) and heads <= inert | distractors and claim.patch_mode in truth.inert_modes


def _classify_versus_heads(claim: Claim, truth: ModelTruth, extra: set[str], other: set[str]) -> Truth | None:
    """``heads`` beat ``versus.heads``: true when the heads only the claim patches hold a causal head
    the other side lacks; false when they add only heads without effect and the other side already
    holds every causal head the claim patches."""
    effects = [e for e in _matching(claim, truth.effects) if e.direction == "increase"]
    if not effects or claim.direction != "increase":
        return None
    causal = {h for e in effects for h in e.heads}
    if extra & causal and not other & causal:
        return "true"
    if _no_effect(claim, truth, extra) and not extra & causal:
        return "false"
    return None


def _classify_path(claim: Claim, truth: ModelTruth) -> Truth | None:
    senders, receivers = _heads(claim.senders), _heads(claim.receivers)
    if _versus_changes(claim):
        return None
    for p in _matching(claim, truth.paths):
        if senders & set(p.senders) and receivers & set(p.receivers):
            return "true" if claim.direction == p.direction else "false"
    if _no_effect(claim, truth, senders):
        return "false"
    return None


def _classify_equivalence(claim: Claim, truth: ModelTruth) -> Truth | None:
    """Equivalence claims the construction makes hold: an inert head's patch to no patch; ``z`` to
    ``pattern_v`` (the same patch by definition)."""
    if claim.versus is None:
        return "true" if claim.kind == "patch" and _no_effect(claim, truth, _heads(claim.heads)) else None
    if _versus_changes(claim) == {"patch_mode"} and {claim.patch_mode, claim.versus.patch_mode} == {"z", "pattern_v"}:
        return "true"
    return None
