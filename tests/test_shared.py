"""Planned runs: the layers below a patch computed once for a baseline and its arms
(harness.run.shared, harness.claims.plan) give exactly what arm-by-arm generation gives."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import TINY_MODELS as ARCHITECTURES  # every architecture the hook adapters support
from conftest import load_tiny, tiny_params
from harness import Claim
from harness.claims.session import ClaimSession
from harness.metrics.next_token import keyword_tracks
from harness.model.loading import load_model
from harness.model.names import hook_layer
from harness.patch.hooks import PatchConfig, patch_hooks
from harness.patch.source import capture_source
from harness.run.generation import GenerationConfig, generate
from harness.run.prompts import load_emotion_prompts, load_prompt_set
from harness.run.shared import Arm, exact_batch_sizes, generate_arms

STEPS = 8
PROMPTS = load_prompt_set("neutral").head(20)


def kick_at(layer: int, step_of_row: dict[int, int], d_model: int, seed: int = 1):
    """Hooks that push prompt p's row far off its course at decode step ``step_of_row[p]`` only
    (0 = its first token), at ``blocks.{layer}.hook_resid_pre``: its token at that step changes."""
    push = torch.randn(d_model, generator=torch.Generator().manual_seed(seed)) * 50

    def factory(info):
        def hook(resid, hook):
            rows = [r for r, (p, _s) in enumerate(info.rows) if step_of_row.get(p) == info.step]
            if rows:
                resid = resid.clone()
                resid[rows, -1] += push
            return resid

        return [(f"blocks.{layer}.hook_resid_pre", hook)]

    return factory


def _same(a, b) -> tuple[bool, float]:
    tokens = [g.token_ids for g in a.generations] == [g.token_ids for g in b.generations]
    # relative to the value's size: a log-prob of -15 nats is only held to float32's ~7 digits
    gap = max(
        (abs(x - y) / max(1.0, abs(x)) for g, h in zip(a.generations, b.generations, strict=True)
         for k in g.tracked for x, y in zip(g.tracked[k], h.tracked[k], strict=True)),
        default=0.0,
    )
    return tokens, gap


# sampled runs on every architecture are the slow tier; the fast tier samples on GPT-2 (learned
# positions, LayerNorm), GQA Llama and Gemma 2 (sliding windows on every other layer)
SAMPLED_FAST = ("tiny-gpt2", "tiny-llama-gqa", "tiny-gemma2")


@pytest.mark.parametrize(
    ("name", "do_sample"),
    [pytest.param(n, False, id=f"{n}-greedy") for n in ARCHITECTURES]
    + [
        pytest.param(n, True, id=f"{n}-sampled", marks=() if n in SAMPLED_FAST else pytest.mark.slow)
        for n in ARCHITECTURES
    ]
    # the shipped real model, both ways (slow tier: a 135M-parameter model)
    + [pytest.param("smollm2-135m", s, id=f"smollm2-{'sampled' if s else 'greedy'}", marks=pytest.mark.slow)
       for s in (False, True)],
)
def test_planned_arms_equal_arm_by_arm_generation(name, do_sample):
    handle = load_model(name)
    top = handle.shape.n_layers - 1
    cfg = GenerationConfig(max_tokens=STEPS, do_sample=do_sample, seed=3, samples=2 if do_sample else 1)
    track = keyword_tracks(handle.tokenizer)
    # rows 0-3 diverge at the first token, 4-5 at step 3, 6 at the last step (no later step feeds
    # it), the others never; then a whole-head patch, an identity, a change too small to flip a
    # token, and a patch at layer 0 (nothing to share)
    kick = {**dict.fromkeys(range(4), 0), 4: 3, 5: 3, 6: STEPS - 1}
    src = capture_source(handle, load_emotion_prompts("gratitude").head(20), (top,), frozenset({"z"}))
    arms = [
        Arm(kick_at(top, kick, handle.shape.d_model), top),
        Arm(patch_hooks(handle, PatchConfig(((top, 0),), "z"), src), top),
        Arm([(f"blocks.{top}.attn.hook_z", lambda z, hook: z)], top),
        Arm([(f"blocks.{top}.hook_resid_post", lambda t, hook: t * (1 + 1e-7))], top),
        Arm([("blocks.0.attn.hook_z", lambda z, hook: z * 3)], 0),
    ]
    base, results, shares = generate_arms(handle, PROMPTS, cfg, arms, track=track)
    assert _same(base, generate(handle, PROMPTS, cfg, track=track)) == (True, 0.0)
    for k, (arm, res) in enumerate(zip(arms, results, strict=True)):
        tokens, gap = _same(res, generate(handle, PROMPTS, cfg, hooks=arm.hooks, track=track))
        assert tokens, f"arm {k}: tokens differ from arm-by-arm generation"
        # arms packed into one batch: their upper layers round as that batch size does; the kicked
        # rows' logits are in the hundreds, so a few ulps of them move a log-prob by ~1e-5
        assert gap < 1e-5, f"arm {k}: tracked log-probs differ by {gap} (relative)"
    first = shares[0].diverged_at[:: cfg.samples]  # one sample per prompt
    assert first[:4] == [1] * 4 and first[4:6] == [4, 4] and first[6:] == [None] * (len(PROMPTS) - 6)
    assert shares[2].diverged_at == [None] * len(PROMPTS) * cfg.samples  # identity: shared to the end
    assert shares[4].layer == 0


@pytest.mark.parametrize("do_sample", [False, True], ids=["greedy", "sampled"])
@pytest.mark.parametrize("name", tiny_params())
def test_rows_that_continue_alike_compute_their_lower_layers_once(name, do_sample):
    """Two arms kick the same rows alike (the same continuations: one side-batch row each), a
    third kicks them alike at the first token and two of them again at step 3 (they leave the
    others' continuation there, copying its keys and values: sliding windows included); every
    arm still equals its own run token for token."""
    handle = load_tiny(name)
    top = handle.shape.n_layers - 1
    cfg = GenerationConfig(max_tokens=STEPS, do_sample=do_sample, seed=3)
    first = dict.fromkeys(range(4), 0)
    again = kick_at(top, {0: 3, 1: 3}, handle.shape.d_model, seed=2)
    arms = [
        Arm(kick_at(top, first, handle.shape.d_model), top),
        Arm(kick_at(top, first, handle.shape.d_model), top),
        Arm(lambda info: kick_at(top, first, handle.shape.d_model)(info) + again(info), top),
    ]
    base, results, shares = generate_arms(handle, PROMPTS, cfg, arms)
    for k, (arm, res) in enumerate(zip(arms, results, strict=True)):
        assert _same(res, generate(handle, PROMPTS, cfg, hooks=arm.hooks))[0], f"arm {k}"
    same, other = results[0].generations, results[2].generations
    assert [g.token_ids for g in same] == [g.token_ids for g in results[1].generations]
    assert [same[r].token_ids[:3] for r in range(4)] == [other[r].token_ids[:3] for r in range(4)]
    assert all(same[r].token_ids[3] != other[r].token_ids[3] for r in (0, 1))  # the second kick split them
    assert [s.diverged_at[:5] for s in shares] == [[1, 1, 1, 1, None]] * 3
    rows = sum(s.side_rows for s in shares)  # the pack's side batch, split evenly between its arms
    nodes = 4 * (STEPS - 1) + 2 * (STEPS - 4)  # 4 continuations from step 1, 2 more from step 4
    assert rows == pytest.approx(nodes) and sum(s.diverged_steps for s in shares) == 3 * 4 * (STEPS - 1)


@pytest.mark.parametrize("name", tiny_params())
def test_packs_of_one_layer_run_in_lockstep_with_one_side_batch(name):
    """Arms that cannot share a batch (a plain patch, one taking the explicit softmax on its layer,
    a path patch) but share their lower layers run in lockstep: each pack's upper layers as a
    forward of its own, their diverged rows in one side batch, where rows of different packs that
    continue alike are one row. Each arm equals its own run token for token."""
    from harness.patch.hooks import identity_pattern_hooks
    from harness.patch.path import parse_receivers, path_hooks
    from harness.run.shared import _lockstep, _packs

    handle = load_tiny(name)
    top = handle.shape.n_layers - 1
    cfg = GenerationConfig(max_tokens=STEPS)
    first = dict.fromkeys(range(4), 0)
    src = capture_source(handle, load_emotion_prompts("gratitude").head(20), (top,), frozenset({"z"}))
    patch = PatchConfig(((top, 1),), "z")
    rec = parse_receivers("direct", patch.heads, handle.shape.n_layers, handle.shape.n_heads)
    arms = [
        Arm(kick_at(top, first, handle.shape.d_model), top),
        Arm(lambda info: identity_pattern_hooks((top,)) + kick_at(top, first, handle.shape.d_model)(info), top),
        Arm(path_hooks(handle, patch, src, rec), top),
    ]
    rows = len(PROMPTS)
    assert _lockstep(_packs(handle, PROMPTS, cfg, arms, 512), arms, rows, 512) == [[[0], [1], [2]]]
    base, results, shares = generate_arms(handle, PROMPTS, cfg, arms)
    for k, (arm, res) in enumerate(zip(arms, results, strict=True)):
        assert _same(res, generate(handle, PROMPTS, cfg, hooks=arm.hooks))[0], f"arm {k}"
    kicked = [[g.token_ids for g in r.generations[:4]] for r in results[:2]]
    assert kicked[0] == kicked[1]  # the same continuations in two packs ...
    assert sum(s.side_rows for s in shares) < sum(s.diverged_steps for s in shares)  # ... computed once


def test_the_diverged_rows_are_padded_to_a_batch_size_whose_rounding_matches():
    sizes = exact_batch_sizes(96)
    assert 32 in sizes  # the reference size agrees with itself
    # here MKL takes other code paths for some small batches; whichever they are, they are avoided
    assert all(m in sizes or m < 32 for m in range(1, 33))


def test_hook_layers_and_the_plan_of_a_claims_run(tiny_gpt2):
    assert hook_layer("blocks.3.attn.hook_z") == 3 and hook_layer("blocks.12.hook_resid_post") == 12
    tiny = {"model": "tiny-gpt2", "n_prompts": 8, "max_tokens": 4, "metric": "sentiment", "direction": "increase"}
    claims = [
        Claim(id="a", heads="1:3", patch_mode="z", source="gratitude", random_heads=2, **tiny),
        Claim(id="b", heads="1:3", patch_mode="z", source="gratitude", **{**tiny, "metric": "gratitude_keywords"}),
        Claim(id="c", heads="1:3", patch_mode="v_only", source="gratitude", versus={"patch_mode": "pattern_v"}, **tiny),
        Claim(id="d", heads="0:1", patch_mode="z", source="anger", **tiny),
    ]
    plan = ClaimSession(claims).plan()
    (group,) = plan.groups  # one target prompt set and settings: one group
    # a's patched run and two random heads (b's patched run is a's: once), c's baseline (explicit
    # softmax at layer 1), its v_only run and its pattern_v versus, d's patch at layer 0
    assert group.baseline.layers == () and group.baseline.is_baseline
    assert [a.is_baseline for a in group.arms] == [False, False, False, True, False, False, False]
    assert [group.shared_layers(a) for a in group.arms] == [1, 1, 1, 1, 1, 1, 0]
    assert plan.n_runs == 8 and group.arms[0].key.heads == ((1, 3),) and group.arms[0].key.kind == "patched"


def test_a_planned_claims_run_gives_the_arm_by_arm_findings(tiny_gpt2):
    tiny = {"model": "tiny-gpt2", "n_prompts": 12, "max_tokens": 6, "metric": "sentiment", "direction": "increase"}
    claims = [
        Claim(id="a", heads="1:3", patch_mode="z", source="gratitude", random_heads=3, **tiny),
        Claim(id="c", heads="1:3", patch_mode="v_only", source="gratitude", versus={"patch_mode": "pattern_v"},
              random_heads=2, **tiny),
        Claim(id="d", heads="1:0", patch_mode="mean", source="anger", statistic="sign", **tiny),
    ]
    planned = ClaimSession(claims).results()
    alone = ClaimSession(claims, planned=False).results()
    for cid in planned:
        p, a = planned[cid], alone[cid]
        assert p.error is None and a.error is None
        assert (p.per_prompt, p.p_raw, p.p_adjusted, p.verdict) == (a.per_prompt, a.p_raw, a.p_adjusted, a.verdict)
        assert p.random_control == a.random_control and p.generations == a.generations


@pytest.mark.parametrize("do_sample", [False, True], ids=["greedy", "sampled"])
def test_an_arm_goes_on_alone_after_the_baseline_stopped_early(tiny_gpt2, do_sample):
    """The baseline's rows all end at the first token (pushed to EOS); the arm's continue: past the
    baseline's last step every row computes its own lower layers and draws its own random numbers
    (its generators first advanced past the draws it borrowed)."""
    handle = tiny_gpt2
    top = handle.shape.n_layers - 1
    eos = handle.model.generation_config.eos_token_id
    eos = eos if isinstance(eos, int) else eos[0]
    scale = handle.model.transformer.ln_f.weight.detach()  # the final LayerNorm's gain, undone
    to_eos = handle.model.get_output_embeddings().weight[eos].detach() / scale * 1e3
    cfg = GenerationConfig(max_tokens=STEPS, do_sample=do_sample, seed=5)
    ends = [(f"blocks.{top}.hook_resid_post", lambda t, hook: t + to_eos)]
    arm = Arm([(f"blocks.{top}.attn.hook_z", lambda z, hook: z * 0.5)], top)
    base, (res,), (share,) = generate_arms(handle, PROMPTS, cfg, [arm], baseline_hooks=ends)
    assert all(g.token_ids == (eos,) for g in base.generations)
    alone = generate(handle, PROMPTS, cfg, hooks=arm.hooks)
    assert [g.token_ids for g in res.generations] == [g.token_ids for g in alone.generations]
    assert max(len(g.token_ids) for g in alone.generations) > 1
    assert all(d == 1 for d, g in zip(share.diverged_at, alone.generations, strict=True) if len(g.token_ids) > 1)


def test_the_one_token_measure_is_the_runs_first_position(tiny_gpt2):
    """Read from the baseline and patched runs' first generated position, it equals a forward
    pass of its own over the prompts (a different batch: equal to float rounding)."""
    from harness.metrics.next_token import keyword_logprob

    c = Claim(id="a", model="tiny-gpt2", heads="1:3", patch_mode="z", source="gratitude", n_prompts=12, max_tokens=3,
              metric="gratitude_keywords", direction="increase", samples=2)
    from harness.claims.execute import Executor

    session = ClaimSession([c])
    res = session.results()["a"]
    rc, executor = session.resolved()["a"], Executor(session.models)
    targets = PROMPTS[:12]
    assert rc.baseline.key.prompts == targets and rc.patched.key.heads == ((1, 3),)
    base = keyword_logprob(tiny_gpt2, targets, "gratitude", hooks=executor.hooks(rc.baseline))
    patched = keyword_logprob(tiny_gpt2, targets, "gratitude", hooks=executor.hooks(rc.patched))
    assert res.one_token["n"] == 12
    assert res.one_token["mean"] == pytest.approx(float((patched - base).mean()), abs=1e-5)
    assert res.one_token["mean"] != 0


def test_the_claims_benchmark_compares_every_run_row_by_row(tmp_path):
    from harness.analysis.bench import _compare_runs, bench_claims
    from harness.claims.spec import claims_toml

    tiny = {"model": "tiny-gpt2", "n_prompts": 8, "max_tokens": 5, "direction": "increase", "source": "gratitude"}
    rows = [
        {**tiny, "id": "a", "heads": "1:3", "patch_mode": "z", "metric": "gratitude_logprob", "random_heads": 2},
        {**tiny, "id": "b", "heads": "0:1", "patch_mode": "v_only", "metric": "sentiment",
         "versus": {"patch_mode": "pattern_v"}},
    ]
    path = tmp_path / "claims.toml"
    path.write_text(claims_toml(rows))
    res = bench_claims("tiny-gpt2", 6, 1, str(path))
    assert res["identical"] and res["mismatched_rows"] == [] and res["runs"] == 6
    assert res["max_tracked_logprob_diff"] < 1e-5 and res["planned_s"] > 0

    # a flipped token is reported with its row and step, never passed over
    handle = load_model("tiny-gpt2")
    cfg = GenerationConfig(max_tokens=4)
    plain = generate(handle, PROMPTS[:3], cfg, track=keyword_tracks(handle.tokenizer))
    other = generate(handle, PROMPTS[:3], cfg, track=keyword_tracks(handle.tokenizer),
                     steps=lambda first, enc: _flip_at(handle, 2))
    report = _compare_runs(plain, other)
    assert [(r["prompt"], r["step"]) for r in report["rows"]] == [(0, 2), (1, 2), (2, 2)]


def _flip_at(handle, step_to_flip: int):
    """The plain step function, with the top logit of every row pushed down at one step."""
    from harness.run.generation import plain_steps

    plain = plain_steps(handle)

    def steps(inputs, mask, position, step):
        logits = plain(inputs, mask, position, step)
        if step == step_to_flip:
            logits = logits.scatter(-1, logits.argmax(-1, keepdim=True), float("-inf"))
        return logits

    return steps


def test_pytest_arm_by_arm_generates_each_run_alone_with_the_same_findings(pytester, monkeypatch):
    """``--arm-by-arm`` (``causal-heads evidence -- --arm-by-arm``): no plan is run, every run is
    generated on its own, and regress finds the planned run's findings unchanged."""
    from harness.findings.regress import regression

    pytester.makefile(".toml", claims=(
        '[[claim]]\nid = "a"\nmodel = "tiny-gpt2"\nheads = "1:3"\npatch_mode = "z"\nsource = "gratitude"\n'
        'metric = "sentiment"\ndirection = "increase"\nn_prompts = 10\nmax_tokens = 5\nrandom_heads = 2\n'
    ))
    from harness.claims.execute import Executor

    plans: list[int] = []
    real = Executor.planned
    monkeypatch.setattr(Executor, "planned", lambda self, plan: (plans.append(plan.n_runs), real(self, plan))[1])
    docs = {}
    for name, extra in (("planned", []), ("alone", ["--arm-by-arm"])):
        res = pytester.runpytest("--claims", "claims.toml", "--findings", f"{name}.json", "-p", "no:cacheprovider",
                                 *extra)
        res.assert_outcomes(failed=1)  # (random heads on a tiny model: not supported)
        docs[name] = json.loads((pytester.path / f"{name}.json").read_text())
    assert plans == [4]  # the planned run only: baseline, the patch, two random heads
    _context, rows = regression(docs["planned"], docs["alone"])
    assert rows == []
    (a,) = docs["alone"]["claims"]
    assert a["effect"] == docs["planned"]["claims"][0]["effect"] and a["claim"]["random_heads"] == 2
    bad = pytester.runpytest_subprocess("--claims", "claims.toml", "--arm-by-arm", "--backend", "ray")
    assert bad.ret == 2 and "--arm-by-arm" in str(bad.stderr) + str(bad.stdout)
