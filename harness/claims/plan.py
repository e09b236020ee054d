"""The plan of a claims run: every generation run the claims need, once, grouped by baseline.

A claim needs its baseline, its patched run, its versus condition and its random heads' runs;
claims share many of them (one baseline for every claim on the same target prompts and
settings; the same patch in two claims with different metrics). The plan lists each run once,
in groups that share a baseline (same model, target prompts, generation settings and attention
path), so that a group's runs can compute the layers below their patches once
(:mod:`harness.run.shared`) and so that a distributed backend can take a group as its unit of
work. It is plain, frozen data: a :class:`RunSpec` holds everything its generation needs (the
model's name, the prompts, the settings, what the hooks do), so an executor needs no claim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from harness.run.generation import GenerationConfig

Head = tuple[int, int]
RunKind = Literal["baseline", "patched", "path", "intervention"]


@dataclass(frozen=True)
class RunKey:
    """What makes two runs the same run: equal keys are generated once and shared.

    Every run has a model, target prompt set (its name and the prompts read), and generation
    settings; a baseline adds the layers it takes the explicit softmax on (``eager``); a patch
    its heads, mode, source set and alignment; a path patch its receivers too; an intervention
    its name, heads and hook points. Fields a kind does not use keep their defaults."""

    kind: RunKind
    model: str
    target: str
    prompts: tuple[str, ...]
    generation: GenerationConfig
    eager: tuple[int, ...] = ()
    heads: tuple[Head, ...] = ()
    patch_mode: str = ""
    source: str = ""
    alignment: str = ""
    receivers: str = ""
    intervention: str | None = None
    intervention_params: tuple[tuple[str, bool | int | float | str], ...] = ()  # sorted (name, value) pairs
    hook_points: tuple[str, ...] | None = None
    source_prompts: tuple[str, ...] = ()  # a resample ablation's drawn sources (other patches: the set's first)

    @property
    def group(self) -> GroupKey:
        """Runs with equal group keys share target prompts and settings: one group of the plan."""
        return GroupKey(self.model, self.target, self.prompts, self.generation)


@dataclass(frozen=True)
class GroupKey:
    model: str
    target: str
    prompts: tuple[str, ...]
    generation: GenerationConfig


@dataclass(frozen=True)
class RunSpec:
    """One generation run: its key, the layers its hooks touch, and the source prompts a patch reads."""

    key: RunKey
    layers: tuple[int, ...]  # the layers its hooks touch (a baseline: those it takes the explicit softmax on)
    sources: tuple[str, ...] = ()  # the source prompts whose activations a patch reads (empty otherwise)

    @property
    def is_baseline(self) -> bool:
        return self.key.kind == "baseline"


@dataclass(frozen=True)
class Group:
    """A baseline and the runs that share its prompts and settings."""

    baseline: RunSpec
    arms: tuple[RunSpec, ...]

    def shared_layers(self, arm: RunSpec) -> int:
        """Layers below every layer the arm's or the baseline's hooks touch: computed once."""
        return min((*arm.layers, *self.baseline.layers), default=0)


@dataclass(frozen=True)
class Plan:
    groups: tuple[Group, ...]

    @property
    def n_runs(self) -> int:
        return sum(1 + len(g.arms) for g in self.groups)

    @property
    def runs(self) -> tuple[RunSpec, ...]:
        """Every run, group by group, each group's baseline first."""
        return tuple(run for g in self.groups for run in (g.baseline, *g.arms))


def make_plan(runs_by_claim: list[list[RunSpec]]) -> Plan:
    """Each claim's runs (its baseline first) once, grouped by target prompts and settings. A
    group's root is its plain baseline (the one with the fewest explicit-softmax layers); a
    baseline that takes the explicit softmax on some layers is then one more arm, sharing the
    layers below them."""
    groups: dict[GroupKey, list[RunSpec]] = {}
    seen: set[RunKey] = set()
    for runs in runs_by_claim:
        for run in runs:  # a circuit claim's runs span two prompt sets: each run goes to its own group
            if run.key not in seen:
                seen.add(run.key)
                groups.setdefault(run.key.group, []).append(run)
    out = []
    for entries in groups.values():
        root = min((r for r in entries if r.is_baseline), key=lambda r: len(r.layers))
        out.append(Group(root, tuple(r for r in entries if r is not root)))
    return Plan(tuple(out))


def split_jobs(plan: Plan, parts: int) -> tuple[Group, ...]:
    """The plan as jobs for ``parts`` workers: each group's arms dealt round-robin into up to
    ``parts`` jobs, every job with the group's baseline (recomputed by each: deterministic, and
    cheaper than shipping its recorded layers). A group without arms is one job."""
    jobs: list[Group] = []
    for group in plan.groups:
        k = max(1, min(parts, len(group.arms)))
        jobs += [Group(group.baseline, group.arms[i::k]) for i in range(k)]
    return tuple(jobs)
