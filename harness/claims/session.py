"""Evaluate claims through the shared harness: paired statistics, controls, corrections.

A :class:`ClaimSession` holds one run's caches: models by name, baseline generations by
(model, target prompts, generation settings, attention path) and source activations by
(model, source prompts, layers, needs), so a source set or a baseline is computed once per
model and reused by every claim that needs it. :meth:`ClaimSession.results` evaluates every
claim, then adjusts the primary p-values across all of them (Holm by default, BH as an
option) and assigns verdicts:

- directional claims (``increase``/``decrease``): *supported* when the adjusted one-sided
  sign-flip p < alpha and, with a random-head control, the claimed effect beats every random
  head; *refuted* when the effect is significant the other way (the opposite one-sided p,
  adjusted across the run's claims like the primary p, < alpha, and the 95% CI of the deciding
  statistic excludes 0 on the wrong side); otherwise *not supported*, reported with the
  minimum detectable effect at this n so that it is not read as "no effect".
- ``equivalent`` claims: *supported* when the adjusted TOST p < alpha (the 90% CI lies inside
  ±margin); *refuted* when the adjusted non-equivalence p (:func:`harness.stats.nonequivalence_p`:
  raw p < alpha exactly when that CI lies entirely outside ±margin) < alpha; else *not supported*.

"Refuted" says the claim is wrong, so it is held to the same family-wise standard as
"supported": the refuting p-values (``p_refute_raw``) are adjusted across the run's claims
with the same correction, as their own family (``p_refute_adjusted``).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable

import numpy as np

from harness.claims.examples import all_generations, pick_examples, text_changes
from harness.claims.result import ClaimResult, progress_line
from harness.claims.spec import Claim, Condition
from harness.claims.verdicts import data_warnings, decide_verdict
from harness.metrics import get_metric, keyword_emotion
from harness.metrics.next_token import keyword_logprob, keyword_tracks
from harness.model.loading import load_model
from harness.patch import interventions
from harness.patch.heads import parse_head_spec
from harness.patch.hooks import PatchConfig, baseline_hooks, identity_pattern_hooks, patch_hooks
from harness.patch.modes import MODES
from harness.patch.source import capture_source
from harness.results import repo_path
from harness.run.generation import GenerationConfig, generate
from harness.run.prompts import (
    keyword_emotions,
    load_emotion_prompts,
    load_keywords,
    load_prompt_set,
)
from harness.stats import (
    adjust_pvalues,
    bootstrap_mean_ci,
    nonequivalence_p,
    paired_effect,
    random_head_control,
    sign_flip_p,
    sign_test,
    tost,
)


class ClaimSession:
    """Caches and evaluation for the claims of one run."""

    def __init__(
        self,
        claims: list[Claim],
        *,
        model_paths: dict[str, str] | None = None,
        correction: str = "holm",
        n_resamples: int = 10_000,
        rerun_options: str = "",
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.claims = list(claims)
        self.progress = progress  # called with one line per evaluated claim (all are evaluated at once)
        self.rerun_options = rerun_options  # e.g. "--model gpt2=/dir --profile greedy", for rerun commands
        self.model_paths = model_paths or {}
        self.correction = correction
        self.n_resamples = n_resamples
        self._models: dict = {}
        self._cache: dict = {}
        self.data_files: dict[str, dict] = {}  # "prompts:<set>" / "keywords:<emotion>" -> path, sha256
        self._results: dict[str, ClaimResult] | None = None

    # -- caches ------------------------------------------------------------------------
    def model(self, name: str):

        if name not in self._models:
            self._models[name] = load_model(self.model_paths.get(name, name))
        return self._models[name]

    def _memo(self, key, compute):
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def _gen_config(self, c: Claim):

        return GenerationConfig.from_settings(c)

    def _prompts(self, name: str, n: int, *, source: bool) -> tuple[str, ...]:

        ps = load_prompt_set(name) if not source or name == "neutral" else load_emotion_prompts(name)
        self._record(f"prompts:{ps.name}", ps.path, ps.sha256)
        return ps.head(min(n, len(ps.prompts)))

    def _record(self, key: str, path: str, sha256: str) -> None:
        """Note a data file a claim read, for the findings' provenance (regress compares them)."""

        self.data_files[key] = {"path": repo_path(path), "sha256": sha256}

    def _record_keywords(self, emotion: str) -> None:

        kw = load_keywords(emotion)
        self._record(f"keywords:{emotion}", kw.path, kw.sha256)

    def _generate(self, c: Claim, heads: tuple, cond: Condition | None):
        """Baseline (cond None) or patched generations, cached."""

        if c.intervention is not None:
            return self._intervene(c, heads, cond is None)
        handle = self.model(c.model)
        targets = self._prompts(c.target, c.n_prompts, source=False)
        gen = self._gen_config(c)
        mode = cond.patch_mode if cond else c.patch_mode
        patch = PatchConfig(heads, mode, c.alignment)
        eager_layers = tuple(sorted(patch.by_layer())) if MODES[mode].target_pattern else ()
        # every run records the model-side keyword metrics (computed only when a run is generated)
        if cond is None:
            key = ("baseline", c.model, c.target, targets, gen, eager_layers)
            return self._memo(
                key,
                lambda: generate(
                    handle, targets, gen, hooks=baseline_hooks(patch), track=keyword_tracks(handle.tokenizer)
                ),
            )
        sources = self._prompts(cond.source, c.n_prompts, source=True)
        needs = MODES[mode].needs
        layers = tuple(sorted(patch.by_layer()))
        src = self._memo(
            ("source", c.model, cond.source, sources, layers, needs),
            lambda: capture_source(handle, sources, layers, needs),
        )
        key = ("patched", c.model, c.target, targets, gen, heads, mode, cond.source, c.alignment)
        return self._memo(
            key,
            lambda: generate(
                handle, targets, gen, hooks=patch_hooks(handle, patch, src), track=keyword_tracks(handle.tokenizer)
            ),
        )

    def _intervention_hooks(self, c: Claim, heads: tuple, *, baseline: bool) -> list:
        """The claim's intervention at ``heads`` or its hook points; for the baseline, identity
        hooks on the attention patterns it hooks (so both runs take the same softmax path)."""
        points = c.hook_points or ()
        if baseline:
            return identity_pattern_hooks(interventions.eager_layers(points))
        available = tuple(self.model(c.model).hooked.hook_dict)
        return interventions.intervention_hooks(c.intervention, heads=heads, hook_points=points, available=available)

    def _intervene(self, c: Claim, heads: tuple, baseline: bool):
        """Generations of an intervention claim: the baseline (shared with every claim on the same
        targets and settings) or with the intervention applied, cached."""
        handle = self.model(c.model)
        targets = self._prompts(c.target, c.n_prompts, source=False)
        gen = self._gen_config(c)
        hooks = self._intervention_hooks(c, heads, baseline=baseline)
        if baseline:
            key = ("baseline", c.model, c.target, targets, gen, interventions.eager_layers(c.hook_points or ()))
        else:
            key = ("intervention", c.model, c.target, targets, gen, c.intervention, heads, c.hook_points)
        return self._memo(
            key, lambda: generate(handle, targets, gen, hooks=hooks, track=keyword_tracks(handle.tokenizer))
        )

    # -- evaluation --------------------------------------------------------------------
    def _heads(self, c: Claim, cond: Condition) -> tuple:

        if not cond.heads:  # an intervention at hook points
            return ()
        s = self.model(c.model).shape
        return parse_head_spec(cond.heads).resolve(s.n_layers, s.n_heads, c.model)

    def _per_prompt(self, result, metric) -> np.ndarray:

        m = get_metric(metric)
        if keyword_emotion(metric):
            self._record_keywords(keyword_emotion(metric))
        return np.array([np.mean([m.score(g) for g in gens]) for _, gens in sorted(result.by_prompt().items())])

    def _random_sets(self, c: Claim, heads: tuple, avoid: tuple = ()) -> list[tuple]:
        """Up to K distinct random head sets: same layers, same count per layer, no claimed head
        and none of ``avoid`` (the heads of a ``versus`` condition).

        Fewer than K when the layers hold fewer distinct sets (e.g. 8 other heads for K = 10);
        the control then reports the K it really used.
        """
        n_heads = self.model(c.model).shape.n_heads
        rng = np.random.default_rng(c.seed + 7919)
        per_layer: dict[int, list[int]] = {}
        for layer, h in heads:
            per_layer.setdefault(layer, []).append(h)
        pool = {
            layer: [x for x in range(n_heads) if x not in hs and (layer, x) not in avoid]
            for layer, hs in per_layer.items()
        }
        for layer, hs in per_layer.items():
            if len(pool[layer]) < len(hs):
                raise ValueError(
                    f"random-head control impossible for heads {c.heads}: layer {layer} has no {len(hs)} other heads"
                )
        sets: list[tuple] = []
        for _ in range(50 * c.random_heads):
            if len(sets) == c.random_heads:
                break
            chosen = tuple(
                sorted(
                    (layer, int(h))
                    for layer, hs in per_layer.items()
                    for h in rng.choice(pool[layer], size=len(hs), replace=False)
                )
            )
            if chosen not in sets:
                sets.append(chosen)
        return sets

    def _random_delta(self, c: Claim, rs: tuple, base: np.ndarray, other: np.ndarray | None) -> np.ndarray:
        """Per-prompt Δ of the claim's contrast with the random head set ``rs`` in the claimed heads' place.

        Without ``versus``: patched(rs) − baseline. With ``versus``, the same contrast as the claim:
        when both conditions patch the claimed heads (e.g. gratitude vs anger source, v_only vs
        pattern_v) ``rs`` replaces them on both sides, so the null asks "do random heads show
        this difference too?"; when ``versus`` names other heads, ``rs`` replaces the claimed
        side only and is compared with the same ``versus`` run.
        """
        spec = ",".join(f"{l}:{h}" for l, h in rs)
        patched = self._per_prompt(self._generate(c, rs, Condition(spec, c.patch_mode, c.source)), c.metric)
        # (an intervention claim has no versus: its random heads take the same function)
        if c.versus is None:
            return patched - base
        if self._heads(c, c.versus) != self._heads(c, c.condition):
            return patched - other
        v_cond = Condition(spec, c.versus.patch_mode, c.versus.source)
        return patched - self._per_prompt(self._generate(c, rs, v_cond), c.metric)

    def _one_token(self, c: Claim, heads: tuple) -> dict | None:
        """The same patch measured at the next token only: Δ log-prob mass on keyword tokens.

        Uses the keywords of the claim's metric emotion (``<e>_keywords``, ``<e>_logprob``) or
        else of its source emotion; None when neither has a keyword list.
        """

        emotion = keyword_emotion(c.metric) or c.source
        if emotion not in keyword_emotions():
            return None
        self._record_keywords(emotion)
        handle = self.model(c.model)
        if c.intervention is not None:
            targets = self._prompts(c.target, c.n_prompts, source=False)
            eager = interventions.eager_layers(c.hook_points or ())
            base = self._memo(
                ("one_token_base", c.model, targets, emotion, eager),
                lambda: keyword_logprob(
                    handle, targets, emotion, hooks=self._intervention_hooks(c, heads, baseline=True)
                ),
            )
            hooks = self._intervention_hooks(c, heads, baseline=False)
            return self._one_token_summary(c, emotion, keyword_logprob(handle, targets, emotion, hooks=hooks) - base)
        patch = PatchConfig(heads, c.patch_mode, c.alignment)
        targets = self._prompts(c.target, c.n_prompts, source=False)
        sources = self._prompts(c.source, c.n_prompts, source=True)
        layers = tuple(sorted(patch.by_layer()))
        src = self._memo(
            ("source", c.model, c.source, sources, layers, MODES[c.patch_mode].needs),
            lambda: capture_source(handle, sources, layers, MODES[c.patch_mode].needs),
        )
        eager = tuple(sorted(patch.by_layer())) if MODES[c.patch_mode].target_pattern else ()
        base = self._memo(
            ("one_token_base", c.model, targets, emotion, eager),
            lambda: keyword_logprob(handle, targets, emotion, hooks=baseline_hooks(patch)),
        )
        return self._one_token_summary(
            c, emotion, keyword_logprob(handle, targets, emotion, hooks=patch_hooks(handle, patch, src)) - base
        )

    def _one_token_summary(self, c: Claim, emotion: str, delta_t) -> dict:
        delta = delta_t.numpy()
        ci = bootstrap_mean_ci(delta, seed=c.seed, n_resamples=self.n_resamples)
        return {
            "emotion": emotion,
            "mean": ci.mean,
            "ci_low": ci.ci_low,
            "ci_high": ci.ci_high,
            "frac_up": float((delta > 0).mean()),
            "n": int(delta.size),
        }

    def evaluate(self, c: Claim) -> ClaimResult:

        res = ClaimResult(claim=c, correction=self.correction, options=self.rerun_options)
        start = time.perf_counter()
        try:
            res.model = self.model(c.model).provenance()
            heads = self._heads(c, c.condition)
            base_run = self._generate(c, heads, None)
            patched_run = self._generate(c, heads, c.condition)
            base = self._per_prompt(base_run, c.metric)
            patched = self._per_prompt(patched_run, c.metric)
            delta = patched - base
            res.per_prompt = {"baseline": base.tolist(), "patched": patched.tolist()}
            other = versus_run = None
            if c.versus:
                v_heads = self._heads(c, c.versus)
                versus_run = self._generate(c, v_heads, c.versus)
                other = self._per_prompt(versus_run, c.metric)
                res.per_prompt["versus"] = other.tolist()
                delta = patched - other
            res.per_prompt["delta"] = delta.tolist()
            alternative = {"increase": "greater", "decrease": "less"}.get(c.direction, "two-sided")
            eff = paired_effect(
                delta, alternative=alternative, alpha=c.alpha, seed=c.seed, n_resamples=self.n_resamples
            )
            res.effect = eff.to_dict()
            if c.direction == "equivalent":
                eq = tost(delta, margin=c.margin, alpha=c.alpha)
                res.equivalence = eq.to_dict()
                res.p_raw = eq.p_value
                res.p_refute_raw = nonequivalence_p(delta, margin=c.margin)
            else:
                opposite = "less" if alternative == "greater" else "greater"
                res.sign = sign_test(delta, alternative=alternative).to_dict()
                if c.statistic == "sign":
                    res.p_raw = res.sign["p_value"]
                    res.effect["p_opposite"] = sign_test(delta, alternative=opposite).p_value
                else:
                    res.p_raw = eff.p_value
                    res.effect["p_opposite"] = sign_flip_p(
                        delta, alternative=opposite, n_permutations=10_000, seed=c.seed + 2
                    )[0]
                res.p_refute_raw = res.effect["p_opposite"]
            center = np.median if c.statistic == "sign" else np.mean  # random heads compared on the same statistic
            if c.random_heads:
                avoid = self._heads(c, c.versus) if c.versus else ()
                null = [
                    float(center(self._random_delta(c, rs, base, other))) for rs in self._random_sets(c, heads, avoid)
                ]
                res.random_control = random_head_control(float(center(delta)), null, alternative=alternative).to_dict()
            compared = other if c.versus else base
            res.text_changed = text_changes(base_run, patched_run, versus_run)
            res.warnings = data_warnings(
                c, get_metric(c.metric), compared, patched, delta, alternative, res.text_changed
            )
            res.one_token = self._one_token(c, heads)
            res.generations = all_generations(base_run, patched_run, delta, versus_run)
            res.examples = pick_examples(res.generations, alternative)
        except Exception as exc:
            res.error = f"{type(exc).__name__}: {exc}"
            res.per_prompt["traceback"] = traceback.format_exc(limit=6)
        res.seconds = time.perf_counter() - start
        return res

    def provenance(self) -> dict:
        """Each model the run loaded: its name, source, shape and weights hash."""
        return {name: h.provenance() for name, h in self._models.items()}

    def results(self) -> dict[str, ClaimResult]:
        """Evaluate every claim once, then correct p-values across them and decide verdicts."""

        if self._results is None:
            evaluated = []
            for k, c in enumerate(self.claims, 1):
                r = self.evaluate(c)
                evaluated.append(r)
                if self.progress:
                    self.progress(f"claim {k}/{len(self.claims)} {c.id}: {progress_line(r)} ({r.seconds:.0f} s)")
            ok = [r for r in evaluated if r.error is None]
            for r, p in zip(ok, adjust_pvalues([r.p_raw for r in ok], self.correction), strict=True):
                r.p_adjusted = p
            for r, p in zip(ok, adjust_pvalues([r.p_refute_raw for r in ok], self.correction), strict=True):
                r.p_refute_adjusted = p
            for r in ok:
                r.verdict = decide_verdict(r)
            self._results = {r.claim.id: r for r in evaluated}
        return self._results
