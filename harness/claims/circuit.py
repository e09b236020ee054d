"""Circuit claims: is a set of heads faithful to the model's behaviour, and minimal?

The behaviour is the one patch claims study: per prompt pair i, the metric on source prompt i
(e.g. gratitude) minus the metric on target prompt i (neutral), E_full(i). A *circuit model*
keeps the claim's heads and ablates every other head of the model (``patch_mode``: ``zero``,
``mean`` over the target prompts, or ``resample`` from another target prompt), on both
prompts: E_C(i) = m_C(source i) − m_C(target i). Its faithfulness is
F(C) = mean E_C / mean E_full (MIB 2025; Wang et al. 2022), with a paired bootstrap CI over
prompt pairs. So the full model (nothing outside it) has F = 1 exactly, and the empty circuit
under ``zero`` has the all-heads-ablated model's effect ratio: not 0, since embeddings, MLPs and
the unembedding carry part of any difference between two prompt sets (on the ground-truth
planted model about 0.67). Every record therefore also holds the empty circuit's F under the
same ablation, the floor a circuit's F is to be read against.

Criteria (``criterion``), each one test on per-prompt values (the suite's paired statistics):

- ``faithful`` with ``direction = "increase"``: F(C) >= ``fraction``, tested as
  mean(E_C − fraction · E_full) > 0 (sign-flip permutation test; bootstrap CI);
- ``faithful`` with ``direction = "equivalent"``: E_C ≈ E_full within ``margin`` (TOST);
- ``complete`` (Wang et al. 2022): for ``subsets`` random subsets K of C (seeded), the circuit
  without K behaves as the model without K: E_{C∖K} ≈ E_{M∖K} within ``margin`` (TOST per
  subset; the claim's p is the largest), each subset's incompleteness score
  |mean E_{C∖K} − mean E_{M∖K}| / mean E_full reported;
- ``minimal``: every head v of C matters: mean(E_C − E_{C∖v} − delta · E_full) > 0, i.e. removing
  v lowers F by more than ``delta``; one test per head, Holm-adjusted within the claim for the
  per-head flags, and the claim's p is the largest raw p (an intersection-union test).

With several ``ablations`` the claim's p is the largest over them (it must hold under each).
The control (``random_heads`` = K, faithful claims): K random circuits of the same size from
the same layers, under the claim's own ``patch_mode``; the claim needs F above all of them.
All runs are ordinary planned runs: baselines on both prompt sets and patched runs that ablate
a circuit's complement, so they share the planner, the cache and the Ray backend.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from harness.claims.plan import Head, RunKey, RunSpec
from harness.claims.spec import Claim
from harness.patch.hooks import PatchConfig
from harness.patch.modes import RESAMPLE
from harness.patch.resample import resample_draw
from harness.run.generation import GenerationConfig
from harness.stats import (
    adjust_pvalues,
    nonequivalence_p,
    paired_effect,
    random_head_control,
    ratio_of_means_ci,
    sign_flip_p,
    sign_test,
    tost,
)


@dataclass(frozen=True)
class CircuitRuns:
    """One circuit under one ablation: its run on the source prompts and on the target prompts."""

    heads: tuple[Head, ...]
    on_source: RunSpec
    on_target: RunSpec


@dataclass(frozen=True)
class CircuitPlan:
    """Every run a circuit claim compares, besides its target baseline (the claim's ``baseline``)."""

    source_baseline: RunSpec
    circuits: dict[str, CircuitRuns]  # per ablation mode, the claimed circuit
    empty: dict[str, CircuitRuns]  # per ablation mode, no head kept: what embeddings and MLPs alone carry
    without: dict[str, tuple[CircuitRuns, ...]]  # minimal: per mode, the circuit less each head
    complete: dict[str, tuple[tuple[CircuitRuns, CircuitRuns], ...]]  # per mode, per subset K: C∖K and M∖K
    random: tuple[CircuitRuns, ...]  # random circuits of the same size, under the claim's patch_mode

    @property
    def runs(self) -> list[RunSpec]:
        out = [self.source_baseline]
        for mode, cr in self.circuits.items():
            out += [cr.on_source, cr.on_target, self.empty[mode].on_source, self.empty[mode].on_target]
            for w in self.without.get(mode, ()):
                out += [w.on_source, w.on_target]
            for a, b in self.complete.get(mode, ()):
                out += [a.on_source, a.on_target, b.on_source, b.on_target]
        for r in self.random:
            out += [r.on_source, r.on_target]
        return out


def complement(heads: tuple[Head, ...], n_layers: int, n_heads: int) -> tuple[Head, ...]:
    """Every head of the model not in ``heads``."""
    keep = set(heads)
    return tuple((layer, h) for layer in range(n_layers) for h in range(n_heads) if (layer, h) not in keep)


def plan_circuit(
    c: Claim,
    heads: tuple[Head, ...],
    random_sets: list[tuple[Head, ...]],
    *,
    n_layers: int,
    n_heads: int,
    targets: tuple[str, ...],
    sources: tuple[str, ...],
    pool: tuple[str, ...],
    gen: GenerationConfig,
) -> tuple[RunSpec, RunSpec, CircuitPlan]:
    """The target baseline, the claimed circuit's run on the target prompts under ``patch_mode``,
    and the plan of every other run. The ablation reads the target set: ``mean`` its first
    prompts' mean, ``resample`` another prompt of its split (``pool``) per row."""
    base_t = RunSpec(RunKey("baseline", c.model, c.target, targets, gen), ())
    base_s = RunSpec(RunKey("baseline", c.model, c.source, sources, gen), ())

    def ablated(kept: tuple[Head, ...], mode: str) -> CircuitRuns:
        out = complement(kept, n_layers, n_heads)
        if not out:  # the whole model: its runs are the baselines
            return CircuitRuns(kept, base_s, base_t)

        # mean: the mean output at every position of every prompt (the claim's alignment would
        # leave a longer prompt's first positions unablated); zero writes every position anyway
        align = "mean_source" if mode == "mean" else c.alignment

        def on(base: RunSpec, prompts: tuple[str, ...]) -> RunSpec:
            reads = resample_draw(prompts, pool, c.seed) if mode == RESAMPLE else targets
            key = replace(
                base.key,
                kind="patched",
                heads=out,
                patch_mode=mode,
                source=c.target,
                alignment=align,
                source_prompts=reads if mode == RESAMPLE else (),
            )
            return RunSpec(key, tuple(sorted(PatchConfig(out, mode, align).by_layer())), reads)

        return CircuitRuns(kept, on(base_s, sources), on(base_t, targets))

    modes = tuple(c.ablations or (c.patch_mode,))
    circuits = {m: ablated(heads, m) for m in modes}
    without = (
        {m: tuple(ablated(tuple(h for h in heads if h != v), m) for v in heads) for m in modes}
        if c.criterion == "minimal"
        else {}
    )
    random = tuple(ablated(rs, c.patch_mode) for rs in random_sets) if c.criterion == "faithful" else ()
    empty = {m: ablated((), m) for m in modes}
    complete = {}
    if c.criterion == "complete":
        every = complement((), n_layers, n_heads)
        for m in modes:
            complete[m] = tuple(
                (ablated(tuple(h for h in heads if h not in k), m), ablated(tuple(h for h in every if h not in k), m))
                for k in subsets(heads, c.subsets, c.seed)
            )
    plan = CircuitPlan(base_s, circuits, empty, without, complete, random)
    return base_t, circuits[c.patch_mode].on_target, plan


def subsets(heads: tuple[Head, ...], count: int, seed: int) -> list[tuple[Head, ...]]:
    """Up to ``count`` distinct non-empty subsets of ``heads`` (each size equally likely, then the
    heads), drawn with ``seed``; all of them when there are no more."""
    rng = np.random.default_rng(seed + 31_337)
    total = 2 ** len(heads) - 1
    out: list[tuple[Head, ...]] = []
    while len(out) < min(count, total):
        size = int(rng.integers(1, len(heads) + 1))
        k = tuple(sorted(heads[i] for i in rng.choice(len(heads), size=size, replace=False)))
        if k not in out:
            out.append(k)
    return out


Scores = Any  # a callable RunSpec -> per-prompt np.ndarray


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> float:
    """F without its CI: mean numerator / mean denominator (nan when the latter is 0), the point
    estimate :func:`harness.stats.ratio_of_means_ci` reports."""
    den = float(denominator.mean())
    return float(numerator.mean() / den) if den != 0 else float("nan")


def _effect(cr: CircuitRuns, score: Scores) -> np.ndarray:
    return score(cr.on_source) - score(cr.on_target)


def evaluate_circuit(c: Claim, plan: CircuitPlan, base_t: RunSpec, score: Scores, n_resamples: int) -> dict[str, Any]:
    """The claim's statistics (see the module docstring): ``effect`` (the tested per-prompt
    quantity's paired effect), ``sign``, ``equivalence``, ``p_raw``, ``p_refute_raw``,
    ``random_control`` and the ``circuit`` record (faithfulness per ablation, per-head tests,
    the full model's effect)."""
    full = score(plan.source_baseline) - score(base_t)
    full_ci = paired_effect(full, alternative="greater", alpha=c.alpha, seed=c.seed, n_resamples=n_resamples)
    per_mode: dict[str, dict[str, Any]] = {}
    tested: dict[str, np.ndarray] = {}
    for mode, cr in plan.circuits.items():
        per_mode[mode], tested[mode] = _one_ablation(c, plan, mode, cr, full, score, n_resamples)
    own = tested[c.patch_mode]
    out: dict[str, Any] = {
        "delta": own.tolist(),
        "p_raw": max(r["p_raw"] for r in per_mode.values()),  # every ablation must hold (intersection-union)
        "circuit": {
            "criterion": c.criterion,
            "size": len(next(iter(plan.circuits.values())).heads),
            "full_effect": {"mean": full_ci.mean, "ci_low": full_ci.ci_low, "ci_high": full_ci.ci_high},
            "ablations": per_mode,
        },
    }
    if c.direction == "equivalent":  # faithful ≈ the full model, or complete
        assert c.margin is not None
        eq = tost(own, margin=c.margin, alpha=c.alpha)
        out["equivalence"] = eq.to_dict()
        out["effect"] = paired_effect(
            own, alternative="two-sided", alpha=c.alpha, seed=c.seed, n_resamples=n_resamples
        ).to_dict()
        out["p_refute_raw"] = nonequivalence_p(own, margin=c.margin)
    else:
        eff = paired_effect(own, alternative="greater", alpha=c.alpha, seed=c.seed, n_resamples=n_resamples).to_dict()
        eff["p_opposite"] = sign_flip_p(own, alternative="less", n_permutations=10_000, seed=c.seed + 2)[0]
        out["effect"], out["sign"] = eff, sign_test(own, alternative="greater").to_dict()
        out["p_refute_raw"] = eff["p_opposite"]
    if plan.random:
        null = [_ratio(_effect(r, score), full) for r in plan.random]
        claimed = per_mode[c.patch_mode]["faithfulness"]
        out["random_control"] = random_head_control(claimed, null, alternative="greater").to_dict()
        out["circuit"]["random"] = [
            {"heads": ",".join(f"{a}:{b}" for a, b in r.heads), "faithfulness": f} for r, f in zip(plan.random, null)
        ]
    return out


def _one_ablation(
    c: Claim, plan: CircuitPlan, mode: str, cr: CircuitRuns, full: np.ndarray, score: Scores, n_resamples: int
) -> tuple[dict[str, Any], np.ndarray]:
    """The circuit under one ablation: its faithfulness record (with the criterion's raw p) and
    the per-prompt values its criterion tests."""
    e_c = _effect(cr, score)
    ratio, lo, hi = ratio_of_means_ci(e_c, full, seed=c.seed, n_resamples=n_resamples)
    rec: dict[str, Any] = {"faithfulness": ratio, "ci_low": lo, "ci_high": hi, "circuit_effect": float(e_c.mean())}
    # the empty circuit (every head ablated): the share the heads are not needed for
    rec["empty_faithfulness"] = _ratio(_effect(plan.empty[mode], score), full)
    if c.criterion == "complete":
        assert c.margin is not None
        rows, diffs = _complete(c, cr.heads, plan.complete[mode], full, score)
        rec["subsets"] = rows
        worst = max(range(len(rows)), key=lambda k: rows[k]["p_raw"])
        rec["p_raw"] = rows[worst]["p_raw"]
        tested = diffs[worst]  # the subset whose equivalence is weakest
    elif c.criterion == "minimal":
        rows, drops = _minimal(c, cr.heads, plan.without[mode], e_c, full, score, n_resamples)
        rec["heads"] = rows
        weakest = max(range(len(rows)), key=lambda k: rows[k]["p_raw"])
        rec["p_raw"] = rows[weakest]["p_raw"]
        tested = drops[weakest]  # the head whose removal matters least: what the claim hinges on
    elif c.direction == "equivalent":
        assert c.margin is not None
        eq = tost(e_c - full, margin=c.margin, alpha=c.alpha)
        rec["p_raw"] = eq.p_value
        tested = e_c - full
    else:
        assert c.fraction is not None
        d = e_c - c.fraction * full
        rec["p_raw"] = paired_effect(
            d, alternative="greater", alpha=c.alpha, seed=c.seed, n_resamples=n_resamples
        ).p_value
        tested = d
    return rec, tested


def _complete(
    c: Claim,
    heads: tuple[Head, ...],
    pairs: tuple[tuple[CircuitRuns, CircuitRuns], ...],
    full: np.ndarray,
    score: Scores,
) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """Per subset K: E_{C∖K} − E_{M∖K} per prompt, its TOST p and the incompleteness score."""
    rows: list[dict[str, Any]] = []
    diffs: list[np.ndarray] = []
    assert c.margin is not None
    for circuit_less, model_less in pairs:
        d = _effect(circuit_less, score) - _effect(model_less, score)
        eq = tost(d, margin=c.margin, alpha=c.alpha)
        k = [f"{a}:{b}" for a, b in heads if (a, b) not in circuit_less.heads]
        rows.append({"without": ",".join(k), "circuit_without_effect": float(_effect(circuit_less, score).mean()),
                     "model_without_effect": float(_effect(model_less, score).mean()),
                     "score": float(abs(d.mean()) / full.mean()) if full.mean() != 0 else float("nan"),
                     "difference": float(d.mean()), "p_raw": eq.p_value})  # fmt: skip
        diffs.append(d)
    return rows, diffs


def _minimal(
    c: Claim,
    heads: tuple[Head, ...],
    without: tuple[CircuitRuns, ...],
    e_c: np.ndarray,
    full: np.ndarray,
    score: Scores,
    n_resamples: int,
) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """Per head of the circuit (``without[k]`` lacks ``heads[k]``): does removing it lower the
    faithfulness by more than delta? Rows (Holm within the claim for the flags) and the tested values."""
    rows: list[dict[str, Any]] = []
    drops: list[np.ndarray] = []
    for (layer, head), w in zip(heads, without):
        e_w = _effect(w, score)
        d = e_c - e_w - c.delta * full
        eff = paired_effect(d, alternative="greater", alpha=c.alpha, seed=c.seed, n_resamples=n_resamples)
        ratio = _ratio(e_w, full)
        rows.append({"head": f"{layer}:{head}", "faithfulness_without": ratio, "drop": eff.mean,
                     "ci_low": eff.ci_low, "ci_high": eff.ci_high, "p_raw": eff.p_value})  # fmt: skip
        drops.append(d)
    for row, p in zip(rows, adjust_pvalues([r["p_raw"] for r in rows], "holm")):
        row["p_holm"] = p
        row["necessary"] = p < c.alpha
    return rows, drops
