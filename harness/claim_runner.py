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
from dataclasses import dataclass, field

import numpy as np

from harness.claims import Claim, Condition

VERDICTS = ("supported", "not supported", "refuted", "error")


@dataclass
class ClaimResult:
    claim: Claim
    verdict: str = "error"
    p_raw: float = float("nan")
    p_adjusted: float = float("nan")
    p_refute_raw: float = float("nan")  # the test the other way (directional: opposite one-sided; equivalence:
    p_refute_adjusted: float = float("nan")  # non-equivalence), adjusted across the run's claims as its own family
    correction: str = "holm"
    effect: dict | None = None
    equivalence: dict | None = None
    random_control: dict | None = None
    sign: dict | None = None  # sign test and median Δ (directional claims; decides when statistic = sign)
    per_prompt: dict = field(default_factory=dict)
    examples: list = field(default_factory=list)
    one_token: dict | None = None  # next-token keyword log-prob Δ for the same patch (1-token view)
    model: dict | None = None  # provenance of the model the claim ran on (weights hash, source)
    error: str | None = None
    seconds: float = 0.0
    options: str = ""  # run options a rerun needs (--model NAME=PATH, --profile NAME)
    warnings: list = field(default_factory=list)  # {"code", "message"}: why the data may be uninformative
    text_changed: dict | None = None  # prompts whose generation each contrast changed (harness.examples)
    generations: list = field(default_factory=list)  # every prompt's texts, Δ and whether its text changed

    def rerun_command(self) -> str:
        c = self.claim
        from harness.claims import DEFAULT_CLAIM_FILES
        from harness.results import repo_path

        claims = "" if not c.file or c.file in DEFAULT_CLAIM_FILES else f" --claims {repo_path(c.file)}"
        return (f"pytest causal_tests{claims} -k '{c.test_id}' --seed {c.seed} --n-prompts {c.n_prompts} "
                f"--samples {c.samples}" + (f" {self.options}" if self.options else ""))

    def message(self) -> str:
        from harness.report import mde_text

        c = self.claim
        if self.error:
            return f"{c.id}: error: {self.error}\nrerun: {self.rerun_command()}"
        e = self.equivalence if c.direction == "equivalent" else self.effect
        head = (f"{c.id}: {self.verdict} — {c.metric} {c.direction} for heads {c.heads} {c.patch_mode} "
                f"({c.source} -> {c.target})" + (f" vs {self.claim.versus}" if c.versus else ""))
        eff = self.effect
        moved = c.direction if c.direction != "equivalent" else "at all"
        lines = [head, (f"  effect {eff['mean']:+.4f} [95% CI {eff['ci_low']:+.4f}, {eff['ci_high']:+.4f}] "
                        f"({eff['ci_method']}), Cohen's dz {eff['cohens_dz']:.3f}, "
                        f"{100 * eff['frac_in_direction']:.0f}% of prompts moved {moved}")]
        if c.direction == "equivalent":
            lines.append(f"  TOST margin ±{c.margin}: 90% CI [{e['ci_low']:+.4f}, {e['ci_high']:+.4f}]")
        if self.sign:
            st = self.sign
            lines.append(f"  sign test{' (decides: statistic = sign)' if c.statistic == 'sign' else ''}: median "
                         f"{st['median']:+.4f} [95% CI {st['ci_low']:+.4f}, {st['ci_high']:+.4f}], {st['n_up']} up / "
                         f"{st['n_down']} down / {st['n_zero']} unchanged, p {st['p_value']:.4g}")
        lines.append(f"  p = {self.p_raw:.4g} raw, {self.p_adjusted:.4g} {self.correction}-adjusted; alpha {c.alpha}; "
                     f"n = {eff['n']} prompts × {c.samples} samples; seed {c.seed}; MDE at this n {mde_text(eff)}")
        other_way = "non-equivalence (|Δ| beyond the margin)" if c.direction == "equivalent" else "the other direction"
        lines.append(f"  {other_way}: p = {self.p_refute_raw:.4g} raw, {self.p_refute_adjusted:.4g} "
                     f"{self.correction}-adjusted (refutes below alpha)")
        if self.random_control:
            rc = self.random_control
            lines.append(f"  random heads: claimed effect at percentile {rc['percentile']:.0f} of "
                         f"{len(rc['null'])} random heads (empirical p {rc['empirical_p']:.3f}, "
                         f"beats all: {rc['beats_all']})")
        if self.text_changed:
            from harness.examples import changes_text

            lines.append(f"  generations changed (token for token): {changes_text(self.text_changed)} prompts")
        lines += [f"  warning ({w['code']}): {w['message']}" for w in self.warnings]
        lines.append(f"  rerun: {self.rerun_command()}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"claim": self.claim.to_dict(), "test_id": self.claim.test_id, "verdict": self.verdict,
                "p_raw": self.p_raw, "p_adjusted": self.p_adjusted, "correction": self.correction,
                "p_refute_raw": self.p_refute_raw, "p_refute_adjusted": self.p_refute_adjusted,
                "effect": self.effect, "equivalence": self.equivalence, "random_control": self.random_control,
                "sign": self.sign,
                "model": self.model, "per_prompt": self.per_prompt, "examples": self.examples,
                "text_changed": self.text_changed, "generations": self.generations, "one_token": self.one_token,
                "error": self.error, "warnings": self.warnings,
                "seconds": self.seconds, "rerun": self.rerun_command()}


class ClaimSession:
    """Caches and evaluation for the claims of one run."""

    def __init__(self, claims: list[Claim], *, model_paths: dict[str, str] | None = None,
                 correction: str = "holm", n_resamples: int = 10_000, rerun_options: str = "",
                 progress: Callable[[str], None] | None = None) -> None:
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
        from harness.models import load_model

        if name not in self._models:
            self._models[name] = load_model(self.model_paths.get(name, name))
        return self._models[name]

    def _memo(self, key, compute):
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def _gen_config(self, c: Claim):
        from harness.generation import GenerationConfig

        return GenerationConfig(max_new_tokens=c.max_tokens, do_sample=c.do_sample, temperature=c.temperature,
                                top_k=c.top_k, top_p=c.top_p, n_samples=c.samples, seed=c.seed)

    def _prompts(self, name: str, n: int, *, source: bool) -> tuple[str, ...]:
        from harness.prompts import load_emotion_prompts, load_prompt_set

        ps = load_prompt_set(name) if not source or name == "neutral" else load_emotion_prompts(name)
        self._record(f"prompts:{ps.name}", ps.path, ps.sha256)
        return ps.head(min(n, len(ps.prompts)))

    def _record(self, key: str, path: str, sha256: str) -> None:
        """Note a data file a claim read, for the findings' provenance (regress compares them)."""
        from harness.results import repo_path

        self.data_files[key] = {"path": repo_path(path), "sha256": sha256}

    def _record_keywords(self, emotion: str) -> None:
        from harness.prompts import load_keywords

        kw = load_keywords(emotion)
        self._record(f"keywords:{emotion}", kw.path, kw.sha256)

    def _generate(self, c: Claim, heads: tuple, cond: Condition | None):
        """Baseline (cond None) or patched generations, cached."""
        from harness.generation import generate
        from harness.metrics.next_token import keyword_tracks
        from harness.patching import (
            MODES,
            PatchConfig,
            baseline_hooks,
            capture_source,
            patch_hooks,
        )

        handle = self.model(c.model)
        targets = self._prompts(c.target, c.n_prompts, source=False)
        gen = self._gen_config(c)
        mode = cond.patch_mode if cond else c.patch_mode
        patch = PatchConfig(heads, mode, c.alignment)
        eager_layers = tuple(sorted(patch.by_layer())) if MODES[mode].target_pattern else ()
        # every run records the model-side keyword metrics (computed only when a run is generated)
        if cond is None:
            key = ("baseline", c.model, c.target, targets, gen, eager_layers)
            return self._memo(key, lambda: generate(handle, targets, gen, hooks=baseline_hooks(patch),
                                                    track=keyword_tracks(handle.tokenizer)))
        sources = self._prompts(cond.source, c.n_prompts, source=True)
        needs = MODES[mode].needs
        layers = tuple(sorted(patch.by_layer()))
        src = self._memo(("source", c.model, cond.source, sources, layers, needs),
                         lambda: capture_source(handle, sources, layers, needs))
        key = ("patched", c.model, c.target, targets, gen, heads, mode, cond.source, c.alignment)
        return self._memo(key, lambda: generate(handle, targets, gen, hooks=patch_hooks(handle, patch, src),
                                                track=keyword_tracks(handle.tokenizer)))

    # -- evaluation --------------------------------------------------------------------
    def _heads(self, c: Claim, cond: Condition) -> tuple:
        from harness.heads import parse_head_spec

        s = self.model(c.model).shape
        return parse_head_spec(cond.heads).resolve(s.n_layers, s.n_heads, c.model)

    def _per_prompt(self, result, metric) -> np.ndarray:
        from harness.metrics import get_metric, keyword_emotion

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
        pool = {layer: [x for x in range(n_heads) if x not in hs and (layer, x) not in avoid]
                for layer, hs in per_layer.items()}
        for layer, hs in per_layer.items():
            if len(pool[layer]) < len(hs):
                raise ValueError(f"random-head control impossible for heads {c.heads}: layer {layer} has "
                                 f"no {len(hs)} other heads")
        sets: list[tuple] = []
        for _ in range(50 * c.random_heads):
            if len(sets) == c.random_heads:
                break
            chosen = tuple(sorted((layer, int(h)) for layer, hs in per_layer.items()
                                  for h in rng.choice(pool[layer], size=len(hs), replace=False)))
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
        from harness.metrics import keyword_emotion
        from harness.metrics.next_token import keyword_logprob
        from harness.patching import (
            MODES,
            PatchConfig,
            baseline_hooks,
            capture_source,
            patch_hooks,
        )
        from harness.prompts import keyword_emotions
        from harness.stats import bootstrap_mean_ci

        emotion = keyword_emotion(c.metric) or c.source
        if emotion not in keyword_emotions():
            return None
        self._record_keywords(emotion)
        handle = self.model(c.model)
        patch = PatchConfig(heads, c.patch_mode, c.alignment)
        targets = self._prompts(c.target, c.n_prompts, source=False)
        sources = self._prompts(c.source, c.n_prompts, source=True)
        layers = tuple(sorted(patch.by_layer()))
        src = self._memo(("source", c.model, c.source, sources, layers, MODES[c.patch_mode].needs),
                         lambda: capture_source(handle, sources, layers, MODES[c.patch_mode].needs))
        eager = tuple(sorted(patch.by_layer())) if MODES[c.patch_mode].target_pattern else ()
        base = self._memo(("one_token_base", c.model, targets, emotion, eager),
                          lambda: keyword_logprob(handle, targets, emotion, hooks=baseline_hooks(patch)))
        delta = (keyword_logprob(handle, targets, emotion, hooks=patch_hooks(handle, patch, src)) - base).numpy()
        ci = bootstrap_mean_ci(delta, seed=c.seed, n_resamples=self.n_resamples)
        return {"emotion": emotion, "mean": ci.mean, "ci_low": ci.ci_low, "ci_high": ci.ci_high,
                "frac_up": float((delta > 0).mean()), "n": int(delta.size)}

    def evaluate(self, c: Claim) -> ClaimResult:
        from harness.examples import all_generations, pick_examples, text_changes
        from harness.metrics import get_metric
        from harness.stats import (
            nonequivalence_p,
            paired_effect,
            random_head_control,
            sign_flip_p,
            sign_test,
            tost,
        )

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
            eff = paired_effect(delta, alternative=alternative, alpha=c.alpha, seed=c.seed,
                                n_resamples=self.n_resamples)
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
                    res.effect["p_opposite"] = sign_flip_p(delta, alternative=opposite, n_permutations=10_000,
                                                           seed=c.seed + 2)[0]
                res.p_refute_raw = res.effect["p_opposite"]
            center = np.median if c.statistic == "sign" else np.mean  # random heads compared on the same statistic
            if c.random_heads:
                avoid = self._heads(c, c.versus) if c.versus else ()
                null = [float(center(self._random_delta(c, rs, base, other)))
                        for rs in self._random_sets(c, heads, avoid)]
                res.random_control = random_head_control(float(center(delta)), null,
                                                         alternative=alternative).to_dict()
            compared = other if c.versus else base
            res.text_changed = text_changes(base_run, patched_run, versus_run)
            res.warnings = data_warnings(c, get_metric(c.metric), compared, patched, delta, alternative,
                                         res.text_changed)
            res.one_token = self._one_token(c, heads)
            res.generations = all_generations(base_run, patched_run, delta, versus_run)
            res.examples = pick_examples(res.generations, alternative)
        except Exception as exc:  # noqa: BLE001 -- an errored claim is reported, never dropped
            res.error = f"{type(exc).__name__}: {exc}"
            res.per_prompt["traceback"] = traceback.format_exc(limit=6)
        res.seconds = time.perf_counter() - start
        return res

    def results(self) -> dict[str, ClaimResult]:
        """Evaluate every claim once, then correct p-values across them and decide verdicts."""
        from harness.stats import adjust_pvalues

        if self._results is None:
            evaluated = []
            for k, c in enumerate(self.claims, 1):
                r = self.evaluate(c)
                evaluated.append(r)
                if self.progress:
                    self.progress(f"claim {k}/{len(self.claims)} {c.id}: {_progress_line(r)} ({r.seconds:.0f} s)")
            ok = [r for r in evaluated if r.error is None]
            for r, p in zip(ok, adjust_pvalues([r.p_raw for r in ok], self.correction), strict=True):
                r.p_adjusted = p
            for r, p in zip(ok, adjust_pvalues([r.p_refute_raw for r in ok], self.correction), strict=True):
                r.p_refute_adjusted = p
            for r in ok:
                r.verdict = _verdict(r)
            self._results = {r.claim.id: r for r in evaluated}
        return self._results


def _progress_line(r: ClaimResult) -> str:
    """Effect and raw p of a just-evaluated claim (its verdict waits for the correction across claims)."""
    if r.error:
        return f"error: {r.error.splitlines()[0]}"
    from harness.examples import changes_text

    return (f"effect {r.effect['mean']:+.4f} [{r.effect['ci_low']:+.4f}, {r.effect['ci_high']:+.4f}], raw p {r.p_raw:.3g}"
            + f", text changed {changes_text(r.text_changed)}" + "".join(f"; warning: {w['code']}" for w in r.warnings))


AT_BOUND = 0.9  # share of prompts at a metric's floor or ceiling, in both compared conditions, that warns


def data_warnings(c: Claim, metric, compared: np.ndarray, patched: np.ndarray, delta: np.ndarray,
                  alternative: str, text_changed: dict | None = None) -> list[dict]:
    """Why this claim's data may not be able to support it, whatever the true effect.

    - ``floor`` / ``ceiling``: the metric sits at its bound for at least 90% of prompts in both
      compared conditions (e.g. no gratitude word in most 30-token replies), so it can barely
      register a change in either direction;
    - ``untestable``: so few prompts changed at all that even if every one moved the claimed
      way, the smallest attainable p (``harness.stats.smallest_p``) is not below alpha — the
      claim cannot be supported at this n, before any correction for many claims; for an
      equivalence claim: its TOST interval (the (1 − 2·alpha) t interval of the mean Δ) is at
      least twice the margin wide, so no mean Δ, not even exactly 0, could be declared
      equivalent (A/A on SmolLM2: sentiment within ±0.05 at 70 prompts × 1 sample was
      declared in 2.8% of null datasets);
    - ``inert``: the patch left every generation token-for-token unchanged (for a ``versus``
      claim: neither condition changed any), so the claim is about a patch that did nothing at
      these settings (the seed's identical deltas). Not raised for an equivalence claim without
      ``versus`` (e.g. the identity sanity claim), where no change is the expected outcome.

    Verdicts are not changed: a warning says how to read "not supported" (uninformative data,
    not evidence of no effect) and that an equivalence found here may only show that both
    conditions leave the metric at its bound.
    """
    from harness.stats import share_at_bound, smallest_p, tost

    out = []
    n = len(delta)
    for code, bound in (("floor", metric.lower), ("ceiling", metric.upper)):
        a, b = share_at_bound(compared, bound), share_at_bound(patched, bound)
        if a >= AT_BOUND and b >= AT_BOUND:
            what = "the versus condition" if c.versus else "baseline"
            out.append({"code": code, "message": (
                f"{c.metric} is at its {code} ({bound:g}) for {round(a * n)}/{n} prompts in {what} and "
                f"{round(b * n)}/{n} patched: too rare at {c.max_tokens} tokens to show a change; consider more "
                f"max_tokens or samples, or a continuous metric")})
    ch = text_changed or {}
    if ch.get("patched_vs_baseline") == 0 and (c.versus or c.direction != "equivalent") \
            and (not c.versus or ch.get("versus_vs_baseline") == 0):
        who = "neither condition changed any" if c.versus else "the patch changed none"
        out.append({"code": "inert", "message": (
            f"{who} of the {n} generations (token for token): at these settings it did nothing the text "
            f"shows; check heads {c.heads}, mode {c.patch_mode} and alignment {c.alignment}")})
    if c.direction == "equivalent":
        eq = tost(delta, margin=c.margin, alpha=c.alpha)
        width = eq.ci_high - eq.ci_low
        if width >= 2 * c.margin:
            out.append({"code": "untestable", "message": (
                f"the {eq.confidence:.0%} interval of the mean Δ is {width:.3g} wide, at least twice the margin "
                f"{c.margin:g}: no mean Δ, not even 0, could be declared equivalent at this n; widen the margin "
                f"or add prompts or samples")})
    else:
        p_min = smallest_p(delta, alternative)
        if p_min >= c.alpha:
            moved = int(np.count_nonzero(delta))
            out.append({"code": "untestable", "message": (
                f"only {moved}/{n} prompts changed at all: even if all moved the claimed way, the smallest "
                f"attainable p is {p_min:.3g} >= alpha {c.alpha}, so this claim cannot be supported by these data")})
    return out


def _verdict(r: ClaimResult) -> str:
    """The verdict from adjusted p-values (see the module docstring)."""
    c, e = r.claim, r.effect
    if c.direction == "equivalent":
        if r.p_adjusted < c.alpha:
            return "supported"
        return "refuted" if r.p_refute_adjusted < c.alpha else "not supported"
    est = r.sign if c.statistic == "sign" else e  # the CI of the statistic that decides
    wrong_side = est["ci_high"] < 0 if c.direction == "increase" else est["ci_low"] > 0
    if r.p_refute_adjusted < c.alpha and wrong_side:
        return "refuted"
    beats = r.random_control is None or r.random_control["beats_all"]
    return "supported" if r.p_adjusted < c.alpha and beats else "not supported"
