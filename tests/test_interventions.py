"""Interventions: the researcher's own hook functions as a claim's patch (harness.patch.interventions)."""

from __future__ import annotations

import pytest
import torch

from harness import Claim, evaluate, register_intervention
from harness.claims.spec import load_claims
from harness.core.errors import UserError
from harness.model.tiny import SEED  # noqa: F401  (the tiny models' module, imported before any pytester test)
from harness.patch.hooks import PatchConfig, patch_hooks
from harness.patch.interventions import INTERVENTIONS, intervention_hooks
from harness.patch.source import capture_source
from harness.run.generation import GenerationConfig, forward, generate

TINY = {"model": "tiny-gpt2", "metric": "sentiment", "n_prompts": 8, "max_tokens": 4, "tier": "fast"}
PROMPTS = ("The weather today is", "I went to the shop and", "My neighbour said")
GREEDY = GenerationConfig(max_tokens=6, do_sample=False)


@pytest.fixture
def registered():
    """Register interventions for one test, and forget them after it."""
    names: list[str] = []

    def register(name, fn, **kwargs):
        register_intervention(name, **kwargs)(fn)
        names.append(name)
        return fn

    yield register
    for name in names:
        INTERVENTIONS.pop(name, None)


def _tokens(run):
    return [g.token_ids for g in run.generations]


def test_residual_stream_hook_points_on_every_architecture(tiny_model):
    """hook_resid_pre/post exist, an identity hook is exact, block l's output is block l+1's input,
    and adding a vector after block l equals adding it before block l+1."""
    handle = tiny_model
    base, _ = forward(handle, PROMPTS)
    seen: dict[str, torch.Tensor] = {}

    def record(t, hook):
        seen[hook.name] = t.clone()
        return t

    n = handle.shape.n_layers
    points = [f"blocks.{layer}.hook_resid_{at}" for layer in range(n) for at in ("pre", "post")]
    same, _ = forward(handle, PROMPTS, [(p, record) for p in points])
    assert torch.equal(base, same)
    assert seen["blocks.0.hook_resid_pre"].shape[-1] == handle.model.config.hidden_size
    for layer in range(n - 1):
        assert torch.equal(seen[f"blocks.{layer}.hook_resid_post"], seen[f"blocks.{layer + 1}.hook_resid_pre"])
    after, _ = forward(handle, PROMPTS, [("blocks.0.hook_resid_post", lambda t, hook: t + 1.0)])
    before, _ = forward(handle, PROMPTS, [("blocks.1.hook_resid_pre", lambda t, hook: t + 1.0)])
    assert not torch.equal(after, base)
    assert torch.equal(after, before)


def test_a_per_head_intervention_that_zeroes_equals_the_zero_mode_at_every_position(tiny_gpt2, registered):
    """The intervention runs at every forward pass: ×0 on head 1:2 is the zero patch mode extended
    to generated positions (patch_generated), token for token; ×1 changes nothing."""
    registered("times_zero_test", lambda z, hook: 0.0 * z, per_head=True)
    registered("times_one_test", lambda z, hook: z, per_head=True)
    heads = ((1, 2), (0, 3))
    base = generate(tiny_gpt2, PROMPTS, GREEDY)
    ones = generate(tiny_gpt2, PROMPTS, GREEDY, hooks=intervention_hooks("times_one_test", heads=heads))
    assert _tokens(ones) == _tokens(base)
    zeroed = generate(tiny_gpt2, PROMPTS, GREEDY, hooks=intervention_hooks("times_zero_test", heads=heads))
    cfg = PatchConfig(heads, "zero", patch_generated=True)
    src = capture_source(tiny_gpt2, PROMPTS, (0, 1), frozenset())
    mode = generate(tiny_gpt2, PROMPTS, GREEDY, hooks=patch_hooks(tiny_gpt2, cfg, src))
    assert _tokens(zeroed) == _tokens(mode)
    assert _tokens(zeroed) != _tokens(base)


def test_an_intervention_that_changes_the_shape_or_returns_no_tensor_is_named(tiny_gpt2, registered):
    registered("shrinks_test", lambda t, hook: t[..., :10])
    registered("returns_text_test", lambda t, hook: "oops")
    registered("in_place_test", lambda t, hook: (t.add_(0.5), None)[1])  # edits in place, returns None
    registered("plus_half_test", lambda t, hook: t + 0.5)
    registered("float64_test", lambda t, hook: t.double() + 0.5)
    at = {"hook_points": ["blocks.0.hook_resid_post"]}
    with pytest.raises(UserError, match=r"'shrinks_test' .* at blocks\.0\.hook_resid_post changed the activation's "
                       r"shape from \(3, \d+, 96\) to \(3, \d+, 10\)"):
        forward(tiny_gpt2, PROMPTS, intervention_hooks("shrinks_test", **at))
    with pytest.raises(UserError, match="'returns_text_test' .* returned str, not a tensor"):
        forward(tiny_gpt2, PROMPTS, intervention_hooks("returns_text_test", **at))
    base, _ = forward(tiny_gpt2, PROMPTS)
    in_place, _ = forward(tiny_gpt2, PROMPTS, intervention_hooks("in_place_test", **at))
    assert torch.equal(in_place, forward(tiny_gpt2, PROMPTS, intervention_hooks("plus_half_test", **at))[0])
    assert not torch.equal(in_place, base)
    cast, _ = forward(tiny_gpt2, PROMPTS, intervention_hooks("float64_test", **at))
    assert cast.dtype == base.dtype and not torch.equal(cast, base)
    with pytest.raises(UserError, match="unknown hook point 'blocks.0.hook_resid_mid'"):
        intervention_hooks("shrinks_test", hook_points=["blocks.0.hook_resid_mid"], available=tiny_gpt2.hooked.hook_dict)

    # in a claim, the same error is the claim's error, with the same statistics machinery around it
    (res,) = evaluate([Claim(id="shrinks", intervention="shrinks_test", direction="increase", **at, **TINY)])
    assert res.verdict == "error" and "changed the activation's shape" in res.error


def test_intervention_claims_are_validated_when_built(registered):
    registered("steer_test", lambda t, hook: t + 1.0)
    registered("double_test", lambda z, hook: 2.0 * z, per_head=True)
    at = ["blocks.1.hook_resid_post"]
    cases = [
        (dict(intervention="steer_test", hook_points=at, random_heads=2),
         r"field 'random_heads' = 2: a random-head control needs a head-shaped intervention; 'steer_test' acts at "
         r"hook points blocks\.1\.hook_resid_post"),
        (dict(intervention="steer_tset", hook_points=at), "unknown intervention 'steer_tset'. Did you mean 'steer_test'"),
        (dict(intervention="double_test", hook_points=at), "'double_test' is per_head: name the heads"),
        (dict(intervention="steer_test", heads="1:2"), "'steer_test' acts at hook points, not on heads"),
        (dict(intervention="steer_test"), "'steer_test' needs hook_points"),
        (dict(intervention="steer_test", hook_points=["resid"]), "'resid': is not a hook point name"),
        (dict(intervention="steer_test", hook_points=at, patch_mode="z"), "has no patch mode"),
        (dict(intervention="steer_test", hook_points=at, versus={"heads": "1:3"}), "cannot have a versus"),
        (dict(intervention="steer_test", hook_points=at, source="gratitud"), "unknown emotion 'gratitud'"),
        (dict(hook_points=at, heads="1:2", patch_mode="z", source="neutral"), "set 'intervention' too"),
        (dict(heads="1:2", source="neutral"), r"missing field\(s\) patch_mode"),
    ]
    for fields, message in cases:
        with pytest.raises(UserError, match=message):
            Claim(id="x", direction="increase", **TINY, **fields)
    ok = Claim(id="x", direction="increase", intervention="steer_test", hook_points=at, **TINY)
    assert ok.hook_points == tuple(at) and ok.test_id == "x-intervention_steer_test"
    assert ok.patch_label == "intervention steer_test at blocks.1.hook_resid_post"
    assert Claim(id="y", direction="increase", intervention="double_test", heads="1:2", **TINY).test_id == "y-head_1_2"


def test_a_claims_file_row_names_a_registered_intervention(tmp_path, registered):
    registered("steer_test", lambda t, hook: t + 1.0)
    path = tmp_path / "claims.toml"
    path.write_text(
        '[[claim]]\nid = "steer"\nmodel = "tiny-gpt2"\nintervention = "steer_test"\n'
        'hook_points = ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"]\nmetric = "sentiment"\n'
        'direction = "increase"\n'
    )
    (c,) = load_claims(str(path))
    assert c.hook_points == ("blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre")
    assert c.to_dict()["hook_points"] == ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"]
    path.write_text(path.read_text().replace("steer_test", "steer_tset"))
    with pytest.raises(UserError, match=rf"{path}: claim 'steer': field 'intervention' = 'steer_tset'"):
        load_claims(str(path))


def test_an_intervention_claim_gets_the_statistics_controls_and_one_token_measure(tiny_gpt2, registered):
    """A per-head intervention's random-head control applies the same function to random heads of
    the same layers; a keyword metric gets the one-token measurement with the intervention."""
    registered("times_three_test", lambda z, hook: 3.0 * z, per_head=True)
    c = Claim(
        id="triple", intervention="times_three_test", heads="1:10", direction="increase", random_heads=3,
        **{**TINY, "metric": "gratitude_keywords"},
    )
    (res,) = evaluate([c])
    assert res.error is None, res.error
    assert len(res.random_control["null"]) == 3
    assert res.one_token["emotion"] == "gratitude" and res.one_token["n"] == 8
    assert res.text_changed["patched_vs_baseline"] > 0
    assert len(res.delta) == 8 and res.p_adjusted == res.p_raw  # a family of one
    assert "intervention times_three_test" in res.explain()


def test_one_registration_serves_a_sweep_of_parameter_values(registered, tmp_path):
    """``intervention = {name = "scale_test", factor = 0.0}``: the function gets its keyword
    arguments from the claim; each value is a run of its own; factor 1 is no intervention at all."""

    def scale(resid, hook, factor=1.0):
        return resid * factor

    registered("scale_test", scale)
    path = tmp_path / "claims.toml"
    rows = "".join(
        f'[[claim]]\nid = "scale_{i}"\nmodel = "tiny-gpt2"\nintervention = {{name = "scale_test", factor = {f}}}\n'
        f'hook_points = ["blocks.1.hook_resid_post"]\nmetric = "sentiment"\ndirection = "increase"\n'
        f'n_prompts = 8\nmax_tokens = 4\ntier = "fast"\n\n'
        for i, f in enumerate((0.0, 1.0, 3.0))
    )
    path.write_text(rows)
    claims = load_claims(str(path))
    assert claims[0].intervention == "scale_test" and claims[0].intervention_params == {"factor": 0.0}
    assert claims[2].to_dict()["intervention_params"] == {"factor": 3.0}
    assert claims[2].patch_label == "intervention scale_test(factor=3.0) at blocks.1.hook_resid_post"
    results = {r.claim.id: r for r in evaluate(claims)}
    identity = results["scale_1"]
    assert identity.to_dict()["text_changed"]["patched_vs_baseline"] == 0  # factor 1 changes nothing
    assert results["scale_0"].per_prompt["patched"] != results["scale_2"].per_prompt["patched"]
    # the same function under a parameter it does not take, or with one it needs missing
    with pytest.raises(UserError, match=r"field 'intervention' = \{'strength': 2\}.*unexpected keyword argument "
                                        r"'strength'.*its parameters: factor"):
        Claim(id="bad", intervention={"name": "scale_test", "strength": 2}, hook_points=["blocks.1.hook_resid_post"],
              direction="increase", **TINY)
    with pytest.raises(UserError, match="a table names the intervention"):
        Claim(id="bad", intervention={"factor": 2}, hook_points=["blocks.1.hook_resid_post"], direction="increase",
              **TINY)
