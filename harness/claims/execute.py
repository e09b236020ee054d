"""Execute a plan: every run it lists, generated once, as ``{RunKey: GenerationResult}``.

Planned (the default), each group's baseline is generated once and its arms with the layers
below their patches shared (:func:`harness.run.shared.generate_arms`), and source activations
that several patches read are captured in one forward per source set. Arm by arm
(``planned=False``, ``pytest --arm-by-arm``), every run is generated alone, for regress against
the planned findings. A run that fails (a user's intervention raising, a source prompt too
long) is recorded as a :class:`RunFailure`; the claims that need it report its error. The local
path and the Ray workers (:mod:`harness.distributed`) both call :func:`execute`.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from harness.claims.plan import Group, Plan, RunKey, RunSpec
from harness.metrics.next_token import keyword_tracks
from harness.model.store import ModelStore
from harness.patch import interventions
from harness.patch.hooks import PatchConfig, identity_pattern_hooks, patch_hooks
from harness.patch.modes import MODES
from harness.patch.path import parse_receivers, path_hooks
from harness.patch.source import SourceActivations, capture_source
from harness.run.generation import GenerationResult, generate
from harness.run.shared import Arm, generate_arms

Progress = Callable[[str], None]


@dataclass(frozen=True)
class RunFailure:
    """Why a run could not be generated: ``"Type: message"`` and the traceback's last frames."""

    error: str
    traceback: str


class RunFailed(Exception):
    """Raised when evaluation reads a run that failed; carries the run's failure."""

    def __init__(self, failure: RunFailure) -> None:
        super().__init__(failure.error)
        self.failure = failure


@dataclass
class Execution:
    """What executing a plan produced: each run's result or failure, and, per group generated
    planned, what each of its arms shared with the baseline."""

    runs: dict[RunKey, GenerationResult] = field(default_factory=dict)
    failures: dict[RunKey, RunFailure] = field(default_factory=dict)
    sharing: list[list[dict[str, Any]]] = field(default_factory=list)

    def __getitem__(self, key: RunKey) -> GenerationResult:
        if key in self.failures:
            raise RunFailed(self.failures[key])
        return self.runs[key]

    def __contains__(self, key: object) -> bool:
        return key in self.runs or key in self.failures

    def merge(self, other: Execution) -> None:
        """Add another execution's runs (a run several jobs generated, e.g. a baseline: all equal)."""
        for key, result in other.runs.items():
            self.runs.setdefault(key, result)
        for key, failure in other.failures.items():
            if key not in self.runs:
                self.failures.setdefault(key, failure)
        self.sharing.extend(other.sharing)


class Backend(Protocol):
    """Something that executes a plan elsewhere (:class:`harness.distributed.RayBackend`)."""

    def generate(self, plan: Plan, models: ModelStore) -> Execution: ...


@dataclass(frozen=True)
class SourceKey:
    """Source activations: the prompts of ``source`` on ``model``, ``needs`` at ``layers``."""

    model: str
    source: str
    prompts: tuple[str, ...]
    layers: tuple[int, ...]
    needs: frozenset[str]


def execute(
    plan: Plan,
    models: ModelStore,
    *,
    planned: bool = True,
    backend: Backend | None = None,
    progress: Progress | None = None,
) -> Execution:
    """Every run of ``plan`` (see the module docstring); ``backend`` generates the groups elsewhere
    (any run it did not bring back is generated here, alone)."""
    executor = Executor(models, progress)
    if backend is not None:
        done = backend.generate(plan, models)
    elif planned:
        done = executor.planned(plan)
    else:
        done = Execution()
    for run in plan.runs:
        if run.key not in done:
            executor.alone(run, done)
    return done


class Executor:
    """Generates runs on the store's models, capturing each source activation once."""

    def __init__(self, models: ModelStore, progress: Progress | None = None) -> None:
        self.models = models
        self.progress = progress
        self._sources: dict[SourceKey, SourceActivations] = {}

    def planned(self, plan: Plan) -> Execution:
        """Each group's baseline once, its arms sharing the layers below their patches."""
        done = Execution()
        self._capture_together(plan)
        for k, group in enumerate(plan.groups, 1):
            arms = [a for a in group.arms if a.key not in done]
            if not arms:  # nothing to share: the baseline alone
                self.alone(group.baseline, done)
                done.sharing.append([])
                continue
            start = time.perf_counter()
            try:
                shares = self._group(group, arms, done)
            except Exception:  # e.g. a user's intervention failing: its runs are then generated
                done.sharing.append([])  # alone, and each claim reports its own error
                continue
            done.sharing.append(shares)
            if self.progress:
                k0 = group.baseline.key
                diverged = np.mean([s["diverged"] for s in shares if s["layer"] > 0] or [0.0])
                self.progress(
                    f"runs {k}/{len(plan.groups)}: {k0.model} {k0.target}, baseline + {len(arms)} arms, "
                    f"{np.mean([s['layer'] for s in shares]):.1f} layers shared on average, "
                    f"{diverged:.0%} of shared rows diverged ({time.perf_counter() - start:.0f} s)"
                )
        return done

    def _group(self, group: Group, arms: list[RunSpec], done: Execution) -> list[dict[str, Any]]:
        key = group.baseline.key
        handle = self.models(key.model)
        base, results, shares = generate_arms(
            handle,
            key.prompts,
            key.generation,
            [Arm(self.hooks(a), group.shared_layers(a)) for a in arms],
            baseline_hooks=self.hooks(group.baseline),
            track=keyword_tracks(handle.tokenizer),
        )
        done.runs.setdefault(key, base)
        for a, r in zip(arms, results, strict=True):
            done.runs[a.key] = r
        return [s.to_dict() for s in shares]

    def alone(self, run: RunSpec, done: Execution) -> None:
        """Generate ``run`` by itself into ``done`` (its failure recorded, never raised)."""
        key = run.key
        try:
            handle = self.models(key.model)
            # every run records the model-side keyword metrics (computed only when a run is generated)
            done.runs[key] = generate(
                handle, key.prompts, key.generation, hooks=self.hooks(run), track=keyword_tracks(handle.tokenizer)
            )
        except Exception as exc:
            done.failures[key] = RunFailure(f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=6))

    def hooks(self, run: RunSpec) -> Any:
        """The hooks of ``run`` (capturing the source activations a patch needs, once per run)."""
        key = run.key
        handle = self.models(key.model)
        if key.kind == "baseline":  # identity hooks: the baseline takes the patched run's softmax path
            return identity_pattern_hooks(run.layers)
        if key.kind == "intervention":
            assert key.intervention is not None  # set by the resolver for every intervention run
            return interventions.intervention_hooks(
                key.intervention,
                heads=key.heads,
                hook_points=key.hook_points or (),
                available=tuple(handle.hooked.hook_dict),
            )
        patch = PatchConfig(key.heads, key.patch_mode, key.alignment)
        source = self._source(self._source_key(run))
        if key.kind == "path":
            s = handle.shape
            receivers = parse_receivers(key.receivers, key.heads, s.n_layers, s.n_heads, key.model)
            return path_hooks(handle, patch, source, receivers)
        return patch_hooks(handle, patch, source)

    @staticmethod
    def _source_key(run: RunSpec) -> SourceKey:
        key = run.key
        layers = tuple(sorted({layer for layer, _ in key.heads}))
        return SourceKey(key.model, key.source, run.sources, layers, frozenset(MODES[key.patch_mode].needs))

    def _source(self, sk: SourceKey) -> SourceActivations:
        if sk not in self._sources:
            self._sources[sk] = capture_source(self.models(sk.model), sk.prompts, sk.layers, sk.needs)
        return self._sources[sk]

    def _capture_together(self, plan: Plan) -> None:
        """One forward per source prompt set for every patch of the plan that reads z or v there
        (those hooks leave the computation as it is), instead of one per patch. A patch that
        reads attention patterns is captured alone: hooking a pattern changes how its layer
        computes, and so every activation above it."""
        wanted: dict[tuple[str, str, tuple[str, ...]], list[SourceKey]] = {}
        for group in plan.groups:
            for run in group.arms:
                if run.key.kind not in ("patched", "path"):
                    continue
                sk = self._source_key(run)
                if not sk.needs or "pattern" in sk.needs or sk in self._sources:
                    continue
                wanted.setdefault((sk.model, sk.source, sk.prompts), []).append(sk)
        for (model, _source, prompts), keys in wanted.items():
            if len(set(keys)) < 2:
                continue
            layers = tuple(sorted({layer for sk in keys for layer in sk.layers}))
            needs = frozenset().union(*(sk.needs for sk in keys))
            every = capture_source(self.models(model), prompts, layers, needs)
            for sk in keys:
                self._sources[sk] = every.subset(sk.layers, sk.needs)
