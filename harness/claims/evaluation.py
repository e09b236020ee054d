"""Evaluate one resolved claim on its generated runs: paired statistics and controls, no verdict.

:func:`evaluate_claim` is a pure function of a :class:`~harness.claims.resolve.ResolvedClaim`
and the runs its plan generated: per-prompt metric values, the paired effect (bootstrap CI,
sign-flip permutation p), the sign test, TOST for an ``equivalent`` claim, the random-head
control, text changes, data warnings and the next-token view. The p-values it records are raw;
the correction across the claims of a run and the verdicts are :mod:`harness.claims.family`'s.

The quantity tested per prompt is Δ = patched − baseline (each the mean over samples), or, with
``versus``, patched − versus. For a model-side metric (read from the run's own logits) a Δ
within the numerical resolution of the weights' precision (:data:`RESOLUTION`: 1e-5 nats in
float32) is rounding, not an effect (the same model computed in another batch shape differs by
that much), and counts as 0: the ground-truth models showed the sign-flip test, which does not
care about scale, supporting "an inert head raises the log-mass" on Δ of 1e-7. The refuting test is the opposite one-sided test (directional
claims) or the non-equivalence test (:func:`harness.stats.nonequivalence_p`).
"""

from __future__ import annotations

import time
import traceback
from typing import Any

import numpy as np

from harness.claims.circuit import evaluate_circuit
from harness.claims.data_warnings import data_warnings, exploratory_warning
from harness.claims.examples import all_generations, pick_examples, text_changes
from harness.claims.execute import Execution, RunFailed
from harness.claims.resolve import RandomArm, ResolvedClaim
from harness.claims.result import ClaimResult
from harness.metrics import get_metric
from harness.metrics.next_token import track_key
from harness.run.generation import GenerationResult
from harness.stats import (
    bootstrap_mean_ci,
    nonequivalence_p,
    paired_effect,
    random_head_control,
    sign_flip_p,
    sign_test,
    tost,
)

Runs = Execution  # the runs by key; reading a failed run raises RunFailed
# the largest |Δ| of a model-side metric (nats) that rounding alone makes, by the weights' precision:
# float32 runs of one model in different batch shapes differ by up to ~1e-6 in a 30-token mean
RESOLUTION = {"float32": 1e-5, "float64": 1e-10, "float16": 1e-2, "bfloat16": 5e-2}
ALTERNATIVES = {"increase": "greater", "decrease": "less"}  # an equivalent claim: two-sided


def evaluate_claim(rc: ResolvedClaim, runs: Runs, *, n_resamples: int = 10_000, options: str = "") -> ClaimResult:
    """The claim's statistics on ``runs`` (see the module docstring); an error in any step is the
    result's ``error``, with its traceback in ``per_prompt``."""
    c = rc.claim
    res = ClaimResult(claim=c, options=options, model=rc.model, selection=rc.selection, prompts=rc.prompts)
    start = time.perf_counter()
    try:
        if rc.circuit is not None:
            _circuit(res, rc, runs, n_resamples)
            res.seconds = time.perf_counter() - start
            return res
        base_run, patched_run = runs[rc.baseline.key], runs[rc.patched.key]
        versus_run = runs[rc.versus.key] if rc.versus else None
        base, patched = scores(base_run, c.metric), scores(patched_run, c.metric)
        other = scores(versus_run, c.metric) if versus_run is not None else None
        delta = resolve_rounding(patched - (other if other is not None else base), c.metric, rc.model)
        res.per_prompt = {"baseline": base.tolist(), "patched": patched.tolist()}
        if other is not None:
            res.per_prompt["versus"] = other.tolist()
        res.per_prompt["delta"] = delta.tolist()
        alternative = ALTERNATIVES.get(c.direction, "two-sided")
        _test(res, delta, alternative, n_resamples)
        if rc.ablations:
            _ablations(res, rc, runs, base, alternative, n_resamples)
        if rc.random:
            res.random_control = _random_control(rc, runs, base, other, delta, alternative)
        res.text_changed = text_changes(base_run, patched_run, versus_run)
        compared = other if other is not None else base
        metric = get_metric(c.metric)
        res.warnings = data_warnings(c, metric, compared, patched, delta, alternative, res.text_changed)
        res.warnings += exploratory_warning(rc.selection)
        res.one_token = _one_token(rc, runs, n_resamples)
        res.generations = all_generations(base_run, patched_run, delta, versus_run)
        res.examples = pick_examples(res.generations, alternative)
    except RunFailed as failed:
        res.error = failed.failure.error
        res.per_prompt = {**res.per_prompt, "traceback": failed.failure.traceback}
    except Exception as exc:
        res.error = f"{type(exc).__name__}: {exc}"
        res.per_prompt = {**res.per_prompt, "traceback": traceback.format_exc(limit=6)}
    res.seconds = time.perf_counter() - start
    return res


def resolve_rounding(delta: np.ndarray, metric: str, model: dict[str, Any]) -> np.ndarray:
    """``delta`` with every value of a model-side metric within :data:`RESOLUTION` set to 0."""
    if get_metric(metric).on != "generation":
        return delta  # text metrics are exact: identical texts score identically
    tol = RESOLUTION.get(str(model.get("dtype", "float32")), RESOLUTION["float32"])
    return np.where(np.abs(delta) <= tol, 0.0, delta)


def scores(run: GenerationResult, metric: str) -> np.ndarray:
    """Per prompt (in prompt order), the metric's mean over the prompt's samples."""
    m = get_metric(metric)
    return np.array([np.mean([m.score(g) for g in gens]) for _, gens in sorted(run.by_prompt().items())])


def _test(res: ClaimResult, delta: np.ndarray, alternative: str, n_resamples: int) -> None:
    """The paired effect, the deciding test's raw p and the refuting test's raw p."""
    c = res.claim
    eff = paired_effect(delta, alternative=alternative, alpha=c.alpha, seed=c.seed, n_resamples=n_resamples)
    effect: dict[str, Any] = eff.to_dict()
    res.effect = effect
    if c.direction == "equivalent":
        assert c.margin is not None  # the claim's validation requires it
        eq = tost(delta, margin=c.margin, alpha=c.alpha)
        res.equivalence = eq.to_dict()
        res.p_raw = eq.p_value
        res.p_refute_raw = nonequivalence_p(delta, margin=c.margin)
        return
    opposite = "less" if alternative == "greater" else "greater"
    sign = sign_test(delta, alternative=alternative)
    res.sign = sign.to_dict()
    if c.statistic == "sign":
        res.p_raw = sign.p_value
        effect["p_opposite"] = sign_test(delta, alternative=opposite).p_value
    else:
        res.p_raw = eff.p_value
        effect["p_opposite"] = sign_flip_p(delta, alternative=opposite, n_permutations=10_000, seed=c.seed + 2)[0]
    res.p_refute_raw = effect["p_opposite"]


def _circuit(res: ClaimResult, rc: ResolvedClaim, runs: Runs, n_resamples: int) -> None:
    """A circuit claim's statistics (:mod:`harness.claims.circuit`) into ``res``."""
    c = rc.claim
    assert rc.circuit is not None
    out = evaluate_circuit(c, rc.circuit, rc.baseline, lambda spec: scores(runs[spec.key], c.metric), n_resamples)
    res.effect, res.sign, res.equivalence = out["effect"], out.get("sign"), out.get("equivalence")
    res.p_raw, res.p_refute_raw = out["p_raw"], out["p_refute_raw"]
    res.random_control, res.circuit = out.get("random_control"), out["circuit"]
    res.per_prompt = {"delta": out["delta"]}
    res.warnings = exploratory_warning(rc.selection)


def _ablations(
    res: ClaimResult, rc: ResolvedClaim, runs: Runs, base: np.ndarray, alternative: str, n_resamples: int
) -> None:
    """Necessity under every ablation the claim names: each one's paired effect and raw p on the
    deciding statistic; the claim's p becomes the largest (the intersection-union test: it rejects
    only when every ablation's test does, at level alpha with no correction among them)."""
    c = res.claim
    assert res.effect is not None and res.sign is not None  # a directional claim, tested above
    own = res.sign if c.statistic == "sign" else res.effect
    record = {c.patch_mode: {"mean": res.effect["mean"], "ci_low": own["ci_low"], "ci_high": own["ci_high"],
                             "p_raw": res.p_raw}}  # fmt: skip
    for mode, spec in rc.ablations:
        delta = resolve_rounding(scores(runs[spec.key], c.metric) - base, c.metric, rc.model)
        if c.statistic == "sign":
            st = sign_test(delta, alternative=alternative)
            ci, p = (st.ci_low, st.ci_high), st.p_value
        else:
            eff = paired_effect(delta, alternative=alternative, alpha=c.alpha, seed=c.seed, n_resamples=n_resamples)
            ci, p = (eff.ci_low, eff.ci_high), eff.p_value
        record[mode] = {"mean": float(np.mean(delta)), "ci_low": ci[0], "ci_high": ci[1], "p_raw": p}
    res.ablations = {mode: record[mode] for mode in c.ablations or ()}  # in the claim's order
    res.p_raw = max(r["p_raw"] for r in record.values())


def _random_control(
    rc: ResolvedClaim, runs: Runs, base: np.ndarray, other: np.ndarray | None, delta: np.ndarray, alternative: str
) -> dict[str, Any]:
    """The claimed effect's place among the random head sets' (compared on the deciding statistic)."""
    center = np.median if rc.claim.statistic == "sign" else np.mean
    null = [float(center(_random_delta(rc, arm, runs, base, other))) for arm in rc.random]
    return random_head_control(float(center(delta)), null, alternative=alternative).to_dict()


def _random_delta(
    rc: ResolvedClaim, arm: RandomArm, runs: Runs, base: np.ndarray, other: np.ndarray | None
) -> np.ndarray:
    """Per-prompt Δ of the claim's contrast with a random head set in the claimed heads' place.

    Without ``versus``: patched(random) − baseline. With ``versus``, the same contrast as the
    claim: when both conditions patch the claimed heads (e.g. gratitude vs anger source, v_only
    vs pattern_v) the random set replaces them on both sides, so the null asks "do random heads
    show this difference too?"; when ``versus`` names other heads, the random set replaces the
    claimed side only and is compared with the same ``versus`` run.
    """
    metric = rc.claim.metric
    patched = scores(runs[arm.patched.key], metric)
    if other is None:
        delta = patched - base
    elif arm.versus is None:
        delta = patched - other
    else:
        delta = patched - scores(runs[arm.versus.key], metric)
    return resolve_rounding(delta, metric, rc.model)


def _one_token(rc: ResolvedClaim, runs: Runs, n_resamples: int) -> dict[str, Any] | None:
    """The same patch measured at the next token only: Δ log-prob mass on keyword tokens.

    Uses the keywords of the claim's metric emotion (``<e>_keywords``, ``<e>_logprob``) or else
    of its source emotion; None when neither has a keyword list. Read from the baseline and
    patched runs' first generated position (every run tracks each keyword emotion's mass;
    before the first token is drawn the samples of a prompt are one computation), so it costs no
    forward pass of its own.
    """
    emotion = rc.one_token_emotion
    if emotion is None:
        return None
    key = track_key(emotion)

    def first(run: GenerationResult) -> np.ndarray:
        # float32 as the tracked values were computed (and as earlier findings recorded them)
        return np.array([gens[0].tracked[key][0] for _, gens in sorted(run.by_prompt().items())], dtype=np.float32)

    delta = first(runs[rc.patched.key]) - first(runs[rc.baseline.key])
    ci = bootstrap_mean_ci(delta, seed=rc.claim.seed, n_resamples=n_resamples)
    return {
        "emotion": emotion,
        "mean": ci.mean,
        "ci_low": ci.ci_low,
        "ci_high": ci.ci_high,
        "frac_up": float((delta > 0).mean()),
        "n": int(delta.size),
    }
