"""The claims pipeline's records without a model: run keys, the plan, executions and their failures."""

from __future__ import annotations

from dataclasses import replace

import pytest

from harness.claims.execute import Execution, RunFailed, RunFailure
from harness.claims.plan import RunKey, RunSpec, make_plan, split_jobs
from harness.run.generation import GenerationConfig, GenerationResult

GEN = GenerationConfig(max_tokens=3)
PROMPTS = ("a", "b")


def _base(eager: tuple[int, ...] = ()) -> RunSpec:
    return RunSpec(RunKey("baseline", "m", "neutral", PROMPTS, GEN, eager=eager), eager)


def _patch(heads: tuple[tuple[int, int], ...], mode: str = "z") -> RunSpec:
    key = RunKey("patched", "m", "neutral", PROMPTS, GEN, heads=heads, patch_mode=mode, source="gratitude")
    return RunSpec(key, tuple(sorted({layer for layer, _ in heads})), ("s1", "s2"))


def test_run_keys_are_records_equal_by_value_and_grouped_by_prompts_and_settings():
    a, b = _patch(((1, 3),)), _patch(((1, 3),))
    assert a.key == b.key and hash(a.key) == hash(b.key) and a.key is not b.key
    assert _patch(((1, 3),), "v_only").key != a.key
    other_settings = replace(a.key, generation=GenerationConfig(max_tokens=4))
    assert other_settings != a.key and other_settings.group != a.key.group
    assert a.key.group == _base().key.group  # same model, prompts and settings: one group


def test_the_plan_lists_each_run_once_rooted_at_the_plain_baseline():
    claim_1 = [_base((1,)), _patch(((1, 3),), "pattern_only")]  # a baseline on the explicit softmax path
    claim_2 = [_base(), _patch(((1, 3),)), _patch(((0, 2),))]
    claim_3 = [_base(), _patch(((1, 3),))]  # the same patch, another metric
    plan = make_plan([claim_1, claim_2, claim_3])
    (group,) = plan.groups
    assert group.baseline.key == _base().key  # the plain baseline roots the group
    assert [a.key for a in group.arms] == [_base((1,)).key, claim_1[1].key, claim_2[1].key, claim_2[2].key]
    assert plan.n_runs == 5 and len(plan.runs) == 5
    assert [group.shared_layers(a) for a in group.arms] == [1, 1, 1, 0]
    jobs = split_jobs(plan, 3)
    assert len(jobs) == 3 and all(j.baseline == group.baseline for j in jobs)
    assert sorted(len(j.arms) for j in jobs) == [1, 1, 2]


def test_a_failed_run_raises_for_its_readers_and_a_later_success_replaces_it():
    key, other = _patch(((1, 3),)).key, _patch(((0, 2),)).key
    result = GenerationResult(config=GEN, prompt_format="plain")
    first = Execution(failures={key: RunFailure("ValueError: boom", "traceback ...")})
    assert key in first and other not in first
    with pytest.raises(RunFailed, match="ValueError: boom") as raised:
        first[key]
    assert raised.value.failure.traceback == "traceback ..."
    first.merge(Execution(runs={key: result, other: result}, sharing=[[{"layer": 1}]]))
    assert first[key] is result and first[other] is result and key not in first.failures
    assert first.sharing == [[{"layer": 1}]]
    first.merge(Execution(failures={other: RunFailure("RuntimeError: late", "")}))
    assert first[other] is result  # a run some job generated is not failed by another's failure
