"""The plan of a claims run: every generation run the claims need, once, grouped by baseline.

A claim needs its baseline, its patched run, its versus condition and its random heads' runs;
claims share many of them (one baseline for every claim on the same target prompts and
settings; the same patch in two claims with different metrics). The plan lists each run once,
in groups that share a baseline (same model, target prompts, generation settings and attention
path), so that a group's runs can compute the layers below their patches once
(:mod:`harness.run.shared`) and so that a distributed backend can take a group as its unit of
work. It is plain, frozen data: claim ids, heads, conditions and the session's cache keys.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.claims.spec import Condition


@dataclass(frozen=True)
class RunSpec:
    """One generation run: for claim ``claim``, ``heads`` under ``condition`` (None: the baseline)."""

    claim: str  # id of a claim that needs it (its fields give the model, prompts and settings)
    heads: tuple[tuple[int, int], ...]
    condition: Condition | None
    key: tuple  # the session's cache key: equal keys are the same run
    layers: tuple[int, ...]  # the layers its hooks touch (a baseline: those it takes the explicit softmax on)
    baseline: tuple  # the key of the baseline it is compared with

    def to_dict(self) -> dict:
        cond = self.condition
        return {
            "claim": self.claim,
            "heads": [f"{layer}:{h}" for layer, h in self.heads],
            "condition": None
            if cond is None
            else {"heads": cond.heads, "patch_mode": cond.patch_mode, "source": cond.source},
            "layers": list(self.layers),
        }


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

    def to_dict(self) -> dict:
        return {
            "groups": [{"baseline": g.baseline.to_dict(), "arms": [a.to_dict() for a in g.arms]} for g in self.groups]
        }


def split_jobs(plan: Plan, parts: int) -> tuple[Group, ...]:
    """The plan as jobs for ``parts`` workers: each group's arms dealt round-robin into up to
    ``parts`` jobs, every job with the group's baseline (recomputed by each: deterministic, and
    cheaper than shipping its recorded layers). A group without arms is one job."""
    jobs: list[Group] = []
    for group in plan.groups:
        k = max(1, min(parts, len(group.arms)))
        jobs += [Group(group.baseline, group.arms[i::k]) for i in range(k)]
    return tuple(jobs)
