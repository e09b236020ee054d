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
import torch

from harness.claims.examples import all_generations, pick_examples, text_changes
from harness.claims.plan import Group, Plan, RunSpec
from harness.claims.result import ClaimResult, progress_line
from harness.claims.spec import Claim, Condition
from harness.claims.verdicts import data_warnings, decide_verdict
from harness.metrics import get_metric, keyword_emotion
from harness.metrics.next_token import keyword_tracks, track_key
from harness.model.device import auto_batch_size, parse_batch_size, placement
from harness.model.loading import load_model
from harness.patch import interventions
from harness.patch.heads import parse_head_spec
from harness.patch.hooks import PatchConfig, identity_pattern_hooks, patch_hooks
from harness.patch.modes import MODES
from harness.patch.path import parse_receivers, path_hooks
from harness.patch.source import capture_source
from harness.results import repo_path
from harness.run.generation import GenerationConfig, generate
from harness.run.prompts import (
    keyword_emotions,
    load_emotion_prompts,
    load_keywords,
    load_prompt_set,
)
from harness.run.shared import Arm, generate_arms, hook_layer
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
        planned: bool = True,
        device: str = "cpu",
        dtype: str = "float32",
        batch_size: int | str | None = None,
        backend=None,
    ) -> None:
        """``device``/``dtype``: where and in what precision every model runs (checked here, before
        any work); ``batch_size``: rows per forward pass for every run (an integer or ``"auto"``;
        None: 128); ``backend``: what generates the plan's groups (None: this process; see
        :mod:`harness.distributed`)."""
        self.placement = placement(device, dtype)
        self.batch_size = parse_batch_size(batch_size)
        self.backend = backend
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
        self._claims_by_id = {c.id: c for c in self.claims}
        self.planned = planned  # generate the plan's runs with shared lower layers before evaluating
        self.sharing_by_group: list[list[dict]] = []  # per group run: what each arm shared with the baseline

    # -- caches ------------------------------------------------------------------------
    def model(self, name: str):

        if name not in self._models:
            self._models[name] = load_model(
                self.model_paths.get(name, name), device=self.placement.device, dtype=self.placement.dtype
            )
        return self._models[name]

    def _memo(self, key, compute):
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def _gen_config(self, c: Claim):
        cfg = GenerationConfig.from_settings(c)
        if self.batch_size is None:
            return cfg
        rows = self.batch_size
        if rows == "auto":
            rows = self._auto_rows(c)
        return cfg.model_copy(update={"batch_size": rows})

    def _auto_rows(self, c: Claim) -> int:
        """``--batch-size auto``: rows that fit half the device's free memory at this claim's longest
        prompt plus its new tokens (once per model and length)."""
        handle = self.model(c.model)
        prompts = self._prompts(c.target, c.n_prompts, source=False)
        longest = max(len(handle.tokenizer(p).input_ids) for p in prompts) + 64  # + a chat template
        vocab = handle.model.get_output_embeddings().weight.shape[0]
        key = ("auto_rows", c.model, longest + c.max_tokens)
        return self._memo(
            key,
            lambda: auto_batch_size(
                handle.shape, vocab, longest + c.max_tokens, self.placement.dtype, self.placement.device
            ),
        )

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

    def _run(self, c: Claim, heads: tuple, cond: Condition | None) -> RunSpec:
        """What the baseline (``cond`` None) or a patched run of claim ``c`` with ``heads`` is: its
        cache key, the layers its hooks touch, and the key of the claim's baseline."""
        targets = self._prompts(c.target, c.n_prompts, source=False)
        gen = self._gen_config(c)
        if c.intervention is not None:
            points = c.hook_points or ()
            eager = interventions.eager_layers(points)
            base_key = ("baseline", c.model, c.target, targets, gen, eager)
            if cond is None:
                return RunSpec(c.id, heads, None, base_key, eager, base_key)
            touched = tuple(sorted({layer for layer, _ in heads} | {hook_layer(p) for p in points}))
            key = ("intervention", c.model, c.target, targets, gen, c.intervention, heads, c.hook_points)
            return RunSpec(c.id, heads, cond, key, touched, base_key)
        own = PatchConfig(heads, c.patch_mode, c.alignment)
        eager = tuple(sorted(own.by_layer())) if MODES[c.patch_mode].target_pattern else ()
        base_key = ("baseline", c.model, c.target, targets, gen, eager)
        if cond is None:
            return RunSpec(c.id, heads, None, base_key, eager, base_key)
        if cond.receivers:  # a path run: it shares the layers below its senders, in a batch of its own
            key = (
                "path",
                c.model,
                c.target,
                targets,
                gen,
                heads,
                cond.patch_mode,
                cond.source,
                c.alignment,
                cond.receivers,
            )
            return RunSpec(c.id, heads, cond, key, tuple(sorted(own.by_layer())), base_key)
        patch = PatchConfig(heads, cond.patch_mode, c.alignment)
        key = ("patched", c.model, c.target, targets, gen, heads, cond.patch_mode, cond.source, c.alignment)
        return RunSpec(c.id, heads, cond, key, tuple(sorted(patch.by_layer())), base_key)

    def _hooks(self, run: RunSpec):
        """The hooks of ``run`` (capturing the source activations a patch needs, once per run)."""
        c = self._claims_by_id[run.claim]
        handle = self.model(c.model)
        if run.condition is None:  # identity hooks: the baseline takes the patched run's softmax path
            return identity_pattern_hooks(run.layers)
        if c.intervention is not None:
            available = tuple(handle.hooked.hook_dict)
            points = c.hook_points or ()
            return interventions.intervention_hooks(
                c.intervention, heads=run.heads, hook_points=points, available=available
            )
        cond = run.condition
        patch = PatchConfig(run.heads, cond.patch_mode, c.alignment)
        sources = self._prompts(cond.source, c.n_prompts, source=True)
        needs = MODES[cond.patch_mode].needs
        layers = tuple(sorted(patch.by_layer()))
        src = self._memo(
            ("source", c.model, cond.source, sources, layers, needs),
            lambda: capture_source(handle, sources, layers, needs),
        )
        if cond.receivers:
            s = handle.shape
            receivers = parse_receivers(cond.receivers, run.heads, s.n_layers, s.n_heads, c.model)
            return path_hooks(handle, patch, src, receivers)
        return patch_hooks(handle, patch, src)

    def _generate(self, c: Claim, heads: tuple, cond: Condition | None):
        """Baseline (cond None) or patched generations, cached (generated here unless the run's
        plan generated them already)."""
        run = self._run(c, heads, cond)
        handle = self.model(c.model)
        targets = self._prompts(c.target, c.n_prompts, source=False)
        # every run records the model-side keyword metrics (computed only when a run is generated)
        return self._memo(
            run.key,
            lambda: generate(
                handle, targets, self._gen_config(c), hooks=self._hooks(run), track=keyword_tracks(handle.tokenizer)
            ),
        )

    # -- the plan: every run the claims need, grouped by the baseline they share -----------
    def plan(self) -> Plan:
        """Every generation run the claims need (baselines, patched runs, versus conditions,
        random heads), each once, in groups that share target prompts and settings. A group's
        root is its plain baseline (no hooks) where a claim needs one; a baseline that takes the
        explicit softmax on some layers is then one more arm, sharing the layers below them."""
        groups: dict[tuple, list[RunSpec]] = {}
        seen: set[tuple] = set()
        for c in self.claims:
            try:
                runs = self._claim_runs(c)
            except Exception:  # the claim's own evaluation reports it
                continue
            entries = groups.setdefault(runs[0].key[:5], [])  # ("baseline", model, target, prompts, settings)
            for run in runs:
                if run.key not in seen:
                    seen.add(run.key)
                    entries.append(run)
        out = []
        for entries in groups.values():
            root = min((r for r in entries if r.condition is None), key=lambda r: len(r.layers))
            out.append(Group(root, tuple(r for r in entries if r is not root)))
        return Plan(tuple(out))

    def _claim_runs(self, c: Claim) -> list[RunSpec]:
        """The claim's baseline, then each run its evaluation generates."""
        heads = self._heads(c, c.condition)
        runs = [self._run(c, heads, None), self._run(c, heads, c.condition)]
        if c.versus:
            runs.append(self._run(c, self._heads(c, c.versus), c.versus))
        if c.random_heads:
            avoid = self._avoid(c)
            same_heads = c.versus is not None and self._heads(c, c.versus) == heads
            for rs in self._random_sets(c, heads, avoid):
                spec = ",".join(f"{layer}:{h}" for layer, h in rs)
                runs.append(self._run(c, rs, Condition(spec, c.patch_mode, c.source, c.receivers)))
                if same_heads:
                    v = c.versus
                    runs.append(self._run(c, rs, Condition(spec, v.patch_mode, v.source, v.receivers)))
        return runs

    def run_plan(self, plan: Plan) -> None:
        """Generate the plan's runs: each group's baseline once, its arms with the layers below
        their patches shared (:func:`harness.run.shared.generate_arms`), here or on the session's
        backend (whose workers run this same method on their part of the plan)."""
        if self.backend is not None:
            runs, sharing = self.backend.generate(self, plan)
            self._cache.update(runs)
            self.sharing_by_group.extend(sharing)
            return
        self._capture_together(plan)
        for k, group in enumerate(plan.groups, 1):
            arms = [a for a in group.arms if a.key not in self._cache]
            c = self._claims_by_id[group.baseline.claim]
            if not arms:  # nothing to share: the baseline alone, as evaluation would generate it
                self._generate(c, group.baseline.heads, None)
                self.sharing_by_group.append([])
                continue
            start = time.perf_counter()
            handle = self.model(c.model)
            targets = self._prompts(c.target, c.n_prompts, source=False)
            lowest = [group.shared_layers(a) for a in arms]
            try:
                base, results, shares = generate_arms(
                    handle,
                    targets,
                    self._gen_config(c),
                    [Arm(self._hooks(a), layer) for a, layer in zip(arms, lowest, strict=True)],
                    baseline_hooks=self._hooks(group.baseline),
                    track=keyword_tracks(handle.tokenizer),
                )
            except Exception:  # e.g. a user's intervention failing: each claim then
                self.sharing_by_group.append([])  # generates its runs alone and reports its own error
                continue
            self._cache.setdefault(group.baseline.key, base)
            for a, r in zip(arms, results, strict=True):
                self._cache[a.key] = r
            self.sharing_by_group.append([s.to_dict() for s in shares])
            if self.progress:
                diverged = np.mean([s.share_diverged for s in shares if s.layer > 0] or [0.0])
                self.progress(
                    f"runs {k}/{len(plan.groups)}: {c.model} {c.target}, baseline + {len(arms)} arms, "
                    f"{np.mean([s.layer for s in shares]):.1f} layers shared on average, "
                    f"{diverged:.0%} of shared rows diverged ({time.perf_counter() - start:.0f} s)"
                )

    def generated(self, plan: Plan) -> dict:
        """The runs of ``plan`` this session has generated: cache key -> GenerationResult."""
        keys = [run.key for group in plan.groups for run in (group.baseline, *group.arms)]
        return {key: self._cache[key] for key in keys if key in self._cache}

    def _capture_together(self, plan: Plan) -> None:
        """One forward per source prompt set for every patch of the plan that reads z or v there
        (those hooks leave the computation as it is), instead of one per patch. A patch that
        reads attention patterns is captured alone: hooking a pattern changes how its layer
        computes, and so every activation above it."""
        wanted: dict[tuple, list[tuple]] = {}
        for group in plan.groups:
            for run in group.arms:
                c = self._claims_by_id[run.claim]
                if run.condition is None or c.intervention is not None:
                    continue
                needs = MODES[run.condition.patch_mode].needs
                if not needs or "pattern" in needs:
                    continue
                sources = self._prompts(run.condition.source, c.n_prompts, source=True)
                layers = tuple(sorted({layer for layer, _ in run.heads}))
                key = ("source", c.model, run.condition.source, sources, layers, needs)
                if key not in self._cache:
                    wanted.setdefault(key[:4], []).append(key)
        for (_, model, _source, sources), keys in wanted.items():
            if len(set(keys)) < 2:
                continue
            layers = tuple(sorted({layer for key in keys for layer in key[4]}))
            needs = frozenset().union(*(key[5] for key in keys))
            every = capture_source(self.model(model), sources, layers, needs)
            for key in keys:
                self._cache[key] = every.subset(key[4], key[5])

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

    def _avoid(self, c: Claim) -> tuple:
        """Heads a random set must not take: a versus condition's heads, and a path claim's named
        receiver heads (a random sender cannot also receive)."""
        avoid = set(self._heads(c, c.versus)) if c.versus else set()
        s = self.model(c.model).shape
        for cond in (c.condition, *((c.versus,) if c.versus else ())):
            named = [p.strip() for p in cond.receivers.split(",") if p.strip() not in ("", "direct", "later")]
            if named:
                avoid |= set(parse_head_spec(",".join(named)).resolve(s.n_layers, s.n_heads, c.model))
        return tuple(sorted(avoid))

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
        patched = self._per_prompt(
            self._generate(c, rs, Condition(spec, c.patch_mode, c.source, c.receivers)), c.metric
        )
        if c.versus is None:
            return patched - base
        if self._heads(c, c.versus) != self._heads(c, c.condition):
            return patched - other
        v_cond = Condition(spec, c.versus.patch_mode, c.versus.source, c.versus.receivers)
        return patched - self._per_prompt(self._generate(c, rs, v_cond), c.metric)

    def _one_token(self, c: Claim, heads: tuple) -> dict | None:
        """The same patch measured at the next token only: Δ log-prob mass on keyword tokens.

        Uses the keywords of the claim's metric emotion (``<e>_keywords``, ``<e>_logprob``) or
        else of its source emotion; None when neither has a keyword list. Read from the baseline
        and patched runs' first generated position (every run tracks each keyword emotion's
        mass; before the first token is drawn the samples of a prompt are one computation), so
        it costs no forward pass of its own.
        """

        emotion = keyword_emotion(c.metric) or c.source
        if emotion not in keyword_emotions():
            return None
        self._record_keywords(emotion)
        key = track_key(emotion)

        def first(run) -> torch.Tensor:
            return torch.tensor([gens[0].tracked[key][0] for _, gens in sorted(run.by_prompt().items())])

        delta = first(self._generate(c, heads, c.condition)) - first(self._generate(c, heads, None))
        return self._one_token_summary(c, emotion, delta)

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
                avoid = self._avoid(c)
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
            if self.planned:
                self.run_plan(self.plan())
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
