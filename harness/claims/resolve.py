"""Resolve a claim once: its heads, prompts (with their files' hashes), settings and runs.

A :class:`ResolvedClaim` is everything the rest of the pipeline needs to know about a claim
against a loaded model: the heads its spec names on that model, the generation settings, and
the :class:`~harness.claims.plan.RunSpec` of every run its evaluation compares (baseline,
patched, versus, the random-head control's), plus the data files it reads, for the findings'
provenance. Nothing downstream looks a claim's prompts or heads up again: the planner groups
the runs, the executor generates them, and evaluation reads them by key.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from harness.claims.circuit import CircuitPlan, plan_circuit
from harness.claims.controls import avoided_heads, head_spec, random_head_sets
from harness.claims.plan import Head, RunKey, RunSpec
from harness.claims.selection import selection
from harness.claims.spec import Claim, Condition
from harness.core.results import repo_path
from harness.metrics import keyword_emotion
from harness.model.device import auto_batch_size
from harness.model.names import hook_layer
from harness.model.store import ModelStore
from harness.patch import interventions
from harness.patch.heads import parse_head_spec
from harness.patch.hooks import PatchConfig
from harness.patch.modes import MODES, RESAMPLE
from harness.patch.resample import resample_draw
from harness.run.generation import GenerationConfig
from harness.run.prompts import keyword_emotions, load_emotion_prompts, load_keywords, load_prompt_set, prompt_hashes

CHAT_TEMPLATE_TOKENS = 64  # room a chat template adds to a prompt, for --batch-size auto


@dataclass(frozen=True)
class RandomArm:
    """One random head set of the control and its runs (``versus``: the same contrast's other side,
    when both of the claim's conditions patch the claimed heads)."""

    heads: tuple[Head, ...]
    patched: RunSpec
    versus: RunSpec | None


@dataclass(frozen=True)
class ResolvedClaim:
    """A claim against its model: heads, runs and the data files it reads."""

    claim: Claim
    heads: tuple[Head, ...]
    baseline: RunSpec
    patched: RunSpec
    versus: RunSpec | None
    versus_heads: tuple[Head, ...]  # () without versus
    random: tuple[RandomArm, ...]
    one_token_emotion: str | None  # the keyword list of the next-token view (None: no such view)
    data_files: dict[str, dict[str, str]]  # "prompts:<set>" / "keywords:<emotion>" -> path, sha256
    model: dict[str, Any]  # the model's provenance
    selection: dict[str, Any] | None = None  # exploratory / confirmatory (harness.claims.selection)
    prompts: dict[str, Any] | None = None  # the split and the sha256 of every prompt it is evaluated on
    ablations: tuple[tuple[str, RunSpec], ...] = ()  # the patched run of each other ablation it names
    circuit: CircuitPlan | None = None  # a circuit claim's other runs (harness.claims.circuit)

    @property
    def ablation_runs(self) -> list[RunSpec]:
        return [spec for _, spec in self.ablations]

    @property
    def runs(self) -> list[RunSpec]:
        """The claim's runs, its baseline first, in the order its evaluation reads them."""
        out = [self.baseline, self.patched, *((self.versus,) if self.versus else ()), *self.ablation_runs]
        out += self.circuit.runs if self.circuit else []
        for arm in self.random:
            out += [arm.patched, *((arm.versus,) if arm.versus else ())]
        return out


@dataclass(frozen=True)
class Unresolved:
    """A claim that could not be resolved (a head outside the model, a control it cannot draw ...)."""

    claim: Claim
    error: str
    traceback: str
    model: dict[str, Any] | None


class Resolver:
    """Resolves claims against the run's models; ``batch_size`` (an integer, ``"auto"`` or None for
    the generation default) sets every run's rows per forward pass."""

    def __init__(self, models: ModelStore, batch_size: int | str | None = None) -> None:
        self.models = models
        self.batch_size = batch_size
        self._auto: dict[tuple[str, int], int] = {}

    def __call__(self, c: Claim) -> ResolvedClaim:
        handle = self.models(c.model)
        provenance = handle.provenance()
        s = handle.shape
        files: dict[str, dict[str, str]] = {}
        heads = _heads(c, c.condition, s.n_layers, s.n_heads)
        targets = _prompt_set(c.target, c.n_prompts, c.split, files, source=False)
        gen = self._generation(c, targets)
        sources = {} if c.intervention is not None else _sources(c, files)
        chosen = selection(c, targets, [p for ps in sources.values() for p in ps])
        modes = {c.patch_mode, *(c.ablations or ()), *((c.versus.patch_mode,) if c.versus else ())}
        drawn = _resample_sources(c, targets) if RESAMPLE in modes else ()

        def run(hs: tuple[Head, ...], cond: Condition | None) -> RunSpec:
            if cond is not None and cond.patch_mode == RESAMPLE:
                return _run_spec(c, hs, cond, targets, gen, drawn)
            return _run_spec(c, hs, cond, targets, gen, sources.get(cond.source, ()) if cond else ())

        versus_heads = _heads(c, c.versus, s.n_layers, s.n_heads) if c.versus else ()
        randoms: list[RandomArm] = []
        if c.random_heads and c.kind != "circuit":  # a circuit's random circuits are its plan's
            both = c.versus is not None and versus_heads == heads  # both conditions patch the claimed heads
            for rs in random_head_sets(c, heads, s.n_heads, avoided_heads(c, s.n_layers, s.n_heads)):
                spec = head_spec(rs)
                v = c.versus
                randoms.append(
                    RandomArm(
                        rs,
                        run(rs, Condition(spec, c.patch_mode, c.source, c.receivers)),
                        run(rs, Condition(spec, v.patch_mode, v.source, v.receivers)) if both and v else None,
                    )
                )
        emotion = keyword_emotion(c.metric)  # the keyword list the metric reads, if any
        view = emotion or c.source  # the next-token view's, where it has one
        one_token = view if view in keyword_emotions() else None
        for e in (emotion, one_token):
            if e:
                kw = load_keywords(e)
                files[f"keywords:{e}"] = {"path": repo_path(kw.path), "sha256": kw.sha256}
        circuit = None
        if c.kind == "circuit":
            random_sets = random_head_sets(c, heads, s.n_heads) if c.random_heads and c.criterion == "faithful" else []
            baseline, patched, circuit = plan_circuit(
                c, heads, random_sets, n_layers=s.n_layers, n_heads=s.n_heads, targets=targets,
                sources=sources[c.source], pool=load_prompt_set(c.target).split(c.split), gen=gen,
            )  # fmt: skip
        else:
            baseline, patched = run(heads, None), run(heads, c.condition)
        ablations = tuple(
            (mode, run(heads, Condition(c.heads, mode, c.source)))
            for mode in c.ablations or ()
            if mode != c.patch_mode and c.kind != "circuit"
        )
        return ResolvedClaim(
            claim=c,
            heads=heads,
            baseline=baseline,
            patched=patched,
            versus=run(versus_heads, c.versus) if c.versus else None,
            versus_heads=versus_heads,
            random=tuple(randoms),
            one_token_emotion=one_token,
            data_files=files,
            model=provenance,
            selection=chosen,
            prompts={
                "split": c.split,
                "target": prompt_hashes(targets),
                "sources": {name: prompt_hashes(ps) for name, ps in sources.items()},
                **({"resample": prompt_hashes(drawn)} if drawn else {}),
            },
            ablations=ablations,
            circuit=circuit,
        )

    def _generation(self, c: Claim, targets: tuple[str, ...]) -> GenerationConfig:
        cfg = GenerationConfig.from_settings(c)
        if self.batch_size is None:
            return cfg
        rows = self.batch_size if isinstance(self.batch_size, int) else self._auto_rows(c, targets)
        return cfg.model_copy(update={"batch_size": rows})

    def _auto_rows(self, c: Claim, targets: tuple[str, ...]) -> int:
        """``--batch-size auto``: rows that fit half the device's free memory at this claim's longest
        prompt plus its new tokens (once per model and length)."""
        handle = self.models(c.model)
        positions = max(len(handle.tokenizer(p).input_ids) for p in targets) + CHAT_TEMPLATE_TOKENS + c.max_tokens
        key = (c.model, positions)
        if key not in self._auto:
            vocab = handle.model.get_output_embeddings().weight.shape[0]
            where = self.models.placement
            self._auto[key] = auto_batch_size(handle.shape, vocab, positions, where.dtype, where.device)
        return self._auto[key]


def _heads(c: Claim, cond: Condition, n_layers: int, n_heads: int) -> tuple[Head, ...]:
    if not cond.heads:  # an intervention at hook points
        return ()
    return tuple(parse_head_spec(cond.heads).resolve(n_layers, n_heads, c.model))


def _prompt_set(name: str, n: int, split: str, files: dict[str, dict[str, str]], *, source: bool) -> tuple[str, ...]:
    """The first ``n`` prompts of a set's ``split`` (a source set is an emotion's, unless it is the
    neutral set), its file recorded in ``files``."""
    ps = load_prompt_set(name) if not source or name == "neutral" else load_emotion_prompts(name)
    files[f"prompts:{ps.name}"] = {"path": repo_path(ps.path), "sha256": ps.sha256}
    chosen = ps.split(split)
    return chosen[: min(n, len(chosen))]


def _sources(c: Claim, files: dict[str, dict[str, str]]) -> dict[str, tuple[str, ...]]:
    """The source prompts of the claim's condition and of its versus condition, by set name."""
    names = dict.fromkeys([c.source, *((c.versus.source,) if c.versus else ())])
    return {name: _prompt_set(name, c.n_prompts, c.split, files, source=name != c.target) for name in names}


def _resample_sources(c: Claim, targets: tuple[str, ...]) -> tuple[str, ...]:
    """A resample ablation's sources: for each target prompt another prompt of the target set's
    split, drawn with the claim's seed (:mod:`harness.patch.resample`)."""
    return resample_draw(targets, load_prompt_set(c.target).split(c.split), c.seed)


def _run_spec(
    c: Claim,
    heads: tuple[Head, ...],
    cond: Condition | None,
    targets: tuple[str, ...],
    gen: GenerationConfig,
    sources: tuple[str, ...],
) -> RunSpec:
    """The baseline (``cond`` None) or a patched run of claim ``c`` with ``heads``: its key, the
    layers its hooks touch and the source prompts it reads."""
    base = RunKey("baseline", c.model, c.target, targets, gen)
    if c.intervention is not None:
        points = c.hook_points or ()
        if cond is None:
            eager = interventions.eager_layers(points)
            return RunSpec(replace(base, eager=eager), eager)
        touched = tuple(sorted({layer for layer, _ in heads} | {hook_layer(p) for p in points}))
        key = replace(
            base,
            kind="intervention",
            heads=heads,
            intervention=c.intervention,
            intervention_params=tuple(sorted((c.intervention_params or {}).items())),
            hook_points=c.hook_points,
        )
        return RunSpec(key, touched)
    own = PatchConfig(heads, c.patch_mode, c.alignment)
    if cond is None:
        eager = tuple(sorted(own.by_layer())) if MODES[c.patch_mode].target_pattern else ()
        return RunSpec(replace(base, eager=eager), eager)
    patch = replace(
        base, kind="patched", heads=heads, patch_mode=cond.patch_mode, source=cond.source, alignment=c.alignment
    )
    if cond.patch_mode == RESAMPLE:  # its sources are drawn, not the set's first prompts: part of what it is
        patch = replace(patch, source_prompts=sources)
    if cond.receivers:  # a path run: it shares the layers below its senders, in a batch of its own
        return RunSpec(replace(patch, kind="path", receivers=cond.receivers), tuple(sorted(own.by_layer())), sources)
    layers = tuple(sorted(PatchConfig(heads, cond.patch_mode, c.alignment).by_layer()))
    return RunSpec(patch, layers, sources)
