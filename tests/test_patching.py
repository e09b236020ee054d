"""Patching engine invariants (property-tested on the tiny models)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.core.errors import UnknownNameError, UserError
from harness.patch.hooks import PatchConfig, baseline_hooks, constant_value, patch_hooks
from harness.patch.modes import MODES, register_mode
from harness.patch.source import aligned_positions, capture_source
from harness.run.generation import GenerationConfig, forward, generate

POOL = ["The quick brown fox jumps over", "Hello there", "Thank you so much for the help",
        "I am so grateful for everything you did for me", "Thanks!", "We appreciate it",
        "The train leaves at nine", "Sorry"]
FAST = settings(max_examples=12, deadline=None)


def _prompts(n):
    return st.lists(st.sampled_from(POOL), min_size=n, max_size=n, unique=True)


def _heads(handle, max_size=3):
    s = handle.shape
    return st.lists(st.tuples(st.integers(0, s.n_layers - 1), st.integers(0, s.n_heads - 1)),
                    min_size=1, max_size=max_size, unique=True).map(lambda hs: tuple(sorted(hs)))


def _patched(handle, cfg, source_prompts, target_prompts, extra=()):
    src = capture_source(handle, source_prompts, sorted(cfg.by_layer()), MODES[cfg.mode].needs)
    factory = patch_hooks(handle, cfg, src)
    return forward(handle, target_prompts, lambda info: factory(info) + list(extra))


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model


@FAST
@given(data=st.data(), alignment=st.sampled_from(["end", "last"]))
def test_patching_a_run_into_itself_changes_nothing(model, data, alignment):
    prompts = data.draw(_prompts(3))
    heads = data.draw(_heads(model))
    base, mask = forward(model, prompts)
    same, _ = _patched(model, PatchConfig(heads, "z", alignment), prompts, prompts)
    assert torch.equal(same, base)  # z: exact
    for mode in ("pattern_v", "v_only", "pattern_only"):  # recomputed A·V: equal up to float rounding
        cfg = PatchConfig(heads, mode, alignment)
        ref, _ = forward(model, prompts, baseline_hooks(cfg))
        got, _ = _patched(model, cfg, prompts, prompts)
        assert (got - ref)[mask.bool()].abs().max() < 1e-4, mode


@FAST
@given(data=st.data(), alignment=st.sampled_from(["end", "last", "mean_source"]))
def test_pattern_v_equals_z(model, data, alignment):
    source, target = data.draw(_prompts(3)), data.draw(_prompts(3))
    heads = data.draw(_heads(model))
    z, mask = _patched(model, PatchConfig(heads, "z", alignment), source, target)
    pv, _ = _patched(model, PatchConfig(heads, "pattern_v", alignment), source, target)
    assert (z - pv)[mask.bool()].abs().max() < 1e-4


@FAST
@given(data=st.data())
def test_patching_a_whole_layer_with_z_reproduces_the_source_attention_output(model, data):
    source, target = data.draw(_prompts(2)), data.draw(_prompts(2))
    layer = data.draw(st.integers(0, model.shape.n_layers - 1))
    heads = tuple((layer, h) for h in range(model.shape.n_heads))
    name = f"blocks.{layer}.attn.hook_attn_out"
    seen = {}
    forward(model, source, [(name, lambda t, hook: seen.__setitem__("S", t.clone()))])
    _, mask = _patched(model, PatchConfig(heads, "z", "end"), source, target,
                       extra=[(name, lambda t, hook: seen.__setitem__("T", t.clone()))])
    s_mask = forward(model, source)[1]
    for r in range(2):
        lt, ls = int(mask[r].sum()), int(s_mask[r].sum())
        n = min(lt, ls)
        t_out = seen["T"][r, mask.shape[1] - n:]
        s_out = seen["S"][r, s_mask.shape[1] - n:]
        assert torch.allclose(t_out, s_out, atol=1e-5)


@FAST
@given(data=st.data(), mode=st.sampled_from(["z", "v_only", "pattern_only", "zero"]))
def test_gqa_siblings_are_untouched(tiny_gqa_model, data, mode):
    tiny_llama = tiny_gqa_model  # Llama, Qwen2, Qwen3, Mistral: 6 query heads over 2 KV heads
    source, target = data.draw(_prompts(2)), data.draw(_prompts(2))
    head = data.draw(st.integers(0, tiny_llama.shape.n_heads - 1))
    group = tiny_llama.shape.group_size
    siblings = [h for h in range(head // group * group, head // group * group + group) if h != head]
    seen = {}
    record = [("blocks.1.attn.hook_z", lambda t, hook: seen.__setitem__("z", t.clone()))]
    cfg = PatchConfig(((1, head),), mode, "end")
    forward(tiny_llama, target, baseline_hooks(cfg) + record)
    base = seen["z"]
    _patched(tiny_llama, cfg, source, target, extra=record)
    assert torch.equal(seen["z"][:, :, siblings], base[:, :, siblings])
    others = [h for h in range(tiny_llama.shape.n_heads) if h != head]
    assert torch.equal(seen["z"][:, :, others], base[:, :, others])


@FAST
@given(data=st.data(), mode=st.sampled_from(["z", "pattern_v", "v_only", "mean"]))
def test_multi_head_patch_equals_composed_single_layer_patches(model, data, mode):
    source, target = data.draw(_prompts(3)), data.draw(_prompts(3))
    h0, h1 = data.draw(st.integers(0, model.shape.n_heads - 1)), data.draw(st.integers(0, model.shape.n_heads - 1))
    both, _ = _patched(model, PatchConfig(((0, h0), (1, h1)), mode), source, target)
    a = patch_hooks(model, PatchConfig(((0, h0),), mode),
                    capture_source(model, source, [0], MODES[mode].needs))
    b = patch_hooks(model, PatchConfig(((1, h1),), mode),
                    capture_source(model, source, [1], MODES[mode].needs))
    composed, mask = forward(model, target, lambda info: a(info) + b(info))
    if "pattern" in MODES[mode].needs:
        # capturing a layer's source pattern runs that layer's attention as an explicit softmax,
        # which moves later layers of the *source* run by float rounding
        assert (both - composed)[mask.bool()].abs().max() < 1e-4
    else:
        assert torch.equal(both, composed)


def test_zero_on_a_head_changes_outputs(model):
    base, mask = forward(model, POOL[:3])
    zero, _ = _patched(model, PatchConfig(((1, 2),), "zero"), POOL[3:6], POOL[:3])
    assert (zero - base)[mask.bool()].abs().max() > 1e-2


def test_modes_differ_from_each_other_on_different_prompts(model):
    source, target = POOL[3:6], POOL[:3]
    outs = {m: _patched(model, PatchConfig(((1, 1),), m), source, target)[0] for m in MODES}
    assert torch.allclose(outs["z"], outs["pattern_v"], atol=1e-4)
    distinct = ["z", "v_only", "pattern_only", "zero", "mean"]
    for i, a in enumerate(distinct):
        for b in distinct[i + 1:]:
            assert not torch.allclose(outs[a], outs[b], atol=1e-4), (a, b)


def test_identity_patch_gives_zero_delta_in_sampled_generation(model):
    cfg = GenerationConfig(max_tokens=10, do_sample=True, samples=2, seed=5, batch_size=64)
    prompts = POOL[:4]
    patch = PatchConfig(((0, 1), (1, 3)), "z", "end")
    rows = [p for p in prompts for _ in range(2)]  # the source run sees the generation batch's rows
    src = capture_source(model, rows, [0, 1], MODES["z"].needs)
    base = generate(model, prompts, cfg)
    patched = generate(model, prompts, cfg, hooks=patch_hooks(model, patch, src,
                                                              pair=lambda p: 2 * p))
    assert [g.token_ids for g in base.generations] == [g.token_ids for g in patched.generations]
    other = generate(model, prompts, cfg, hooks=patch_hooks(model, patch, capture_source(
        model, POOL[4:8], [0, 1], MODES["z"].needs)))
    assert [g.token_ids for g in base.generations] != [g.token_ids for g in other.generations]


def test_patch_generated_writes_decode_steps(tiny_gpt2):
    seen = []
    cfg = PatchConfig(((1, 4),), "zero", "end", patch_generated=True)
    factory = patch_hooks(tiny_gpt2, cfg, capture_source(tiny_gpt2, POOL[:2], [1], MODES["zero"].needs))
    record = [("blocks.1.attn.hook_z", lambda t, hook: seen.append(t[:, -1, 4].abs().max().item()))]
    generate(tiny_gpt2, POOL[:2], GenerationConfig(max_tokens=4, stop_at_eos=False),
             hooks=lambda info: factory(info) + record)
    assert seen == [0.0] * 4  # prefill's last position and every decode step are zeroed


# ---------------------------------------------------------------- each mode's value, from the model's own attention

def _z_at(handle, prompts, layer, hooks=()):
    """``blocks.{layer}.attn.hook_z`` of one forward (after ``hooks``) and the attention mask."""
    seen = {}
    record = (f"blocks.{layer}.attn.hook_z", lambda t, hook: seen.__setitem__("z", t.clone()))
    hooks = hooks if callable(hooks) else (lambda info, hooks=list(hooks): hooks)
    _, mask = forward(handle, prompts, lambda info: list(hooks(info)) + [record])
    return seen["z"], mask


def _rows(mask, n_sources):
    """(batch row, left padding, target length, paired source index) of a target batch."""
    length = mask.shape[1]
    return [(r, length - int(m.sum()), int(m.sum()), r % n_sources) for r, m in enumerate(mask)]


def _one_head_case(model, data, mode, alignment):
    """A drawn one-head patch of 2 source prompts into 3 targets: (targets, layer, head, config,
    source activations, the targets' baseline z at that layer, their rows)."""
    source, target = data.draw(_prompts(2)), data.draw(_prompts(3))
    layer = data.draw(st.integers(0, model.shape.n_layers - 1))
    head = data.draw(st.integers(0, model.shape.n_heads - 1))
    cfg = PatchConfig(((layer, head),), mode, alignment)
    src = capture_source(model, source, [layer], MODES[mode].needs)
    base, mask = _z_at(model, target, layer, baseline_hooks(cfg))
    return target, layer, head, cfg, src, base, _rows(mask, len(source))


@FAST
@given(data=st.data(), alignment=st.sampled_from(["end", "last", "mean_source"]))
def test_v_only_is_the_target_pattern_over_the_source_values_at_aligned_keys(model, data, alignment):
    """Reference: the target run with head h's KV group's values replaced in ``hook_v`` (aligned
    keys, or the source mean), read from the model's own attention; differing lengths included."""
    target, layer, head, cfg, src, base, rows = _one_head_case(model, data, "v_only", alignment)
    g = head // model.shape.group_size

    def replace_values(v, hook):
        v = v.clone()
        for r, pad, lt, i in rows:
            v_s = src.v[layer][i][:, g]
            if alignment == "mean_source":
                v[r, pad:, g] = v_s.mean(0)
            else:
                n = min(lt, len(v_s))
                v[r, pad + lt - n:, g] = v_s[len(v_s) - n:]
        return v
    ref, _ = _z_at(model, target, layer, baseline_hooks(cfg) + [(f"blocks.{layer}.attn.hook_v", replace_values)])
    got, _ = _z_at(model, target, layer, patch_hooks(model, cfg, src))
    for r, pad, lt, _ in rows:
        patched = [lt - 1] if alignment == "last" else range(lt)  # 'end': earlier queries see no replaced key
        for q in range(lt):
            want = ref if q in patched else base
            assert torch.allclose(got[r, pad + q, head], want[r, pad + q, head], atol=1e-5), (r, q)


@FAST
@given(data=st.data(), alignment=st.sampled_from(["end", "last"]))
def test_pattern_only_is_the_renormalised_source_pattern_over_the_target_values(model, data, alignment):
    """Reference: the target run with head h's pattern rows replaced in ``hook_pattern`` by the
    paired source rows over the keys that have a target counterpart, renormalised to sum 1."""
    target, layer, head, cfg, src, base, rows = _one_head_case(model, data, "pattern_only", alignment)

    def replace_rows(pattern, hook):
        pattern = pattern.clone()
        for r, pad, lt, i in rows:
            a_s = src.pattern[layer][i][head]
            ls = a_s.shape[-1]
            n = min(lt, ls)
            qs_t, qs_s = aligned_positions(alignment, lt, ls)
            for qt, qs in zip(qs_t.tolist(), qs_s.tolist(), strict=True):
                row = a_s[qs, ls - n:]
                pattern[r, head, pad + qt] = 0
                pattern[r, head, pad + qt, pad + lt - n:] = row / row.sum()
        return pattern
    ref, _ = _z_at(model, target, layer, [(f"blocks.{layer}.attn.hook_pattern", replace_rows)])
    got, _ = _z_at(model, target, layer, patch_hooks(model, cfg, src))
    for r, pad, lt, _ in rows:
        assert torch.allclose(got[r, pad:, head], ref[r, pad:, head], atol=1e-5), r
        if alignment == "last":
            assert torch.equal(got[r, pad:pad + lt - 1, head], base[r, pad:pad + lt - 1, head])


def test_mean_writes_the_mean_over_every_source_prompt_and_position(model):
    source, target, (layer, head) = POOL[:3], POOL[3:6], (1, 2)
    z_s, s_mask = _z_at(model, source, layer)
    expected = z_s[:, :, head][s_mask.bool()].mean(0)  # every real position of every source prompt
    cfg = PatchConfig(((layer, head),), "mean", "end")
    got, mask = _z_at(model, target, layer, patch_hooks(model, cfg, capture_source(model, source, [layer], {"z"})))
    for r, pad, lt, i in _rows(mask, len(source)):
        n = min(lt, int(s_mask[i].sum()))
        assert torch.allclose(got[r, pad + lt - n:, head], expected.expand(n, -1), atol=1e-6)


@pytest.mark.parametrize("mode", ["z", "pattern_v", "mean"])
def test_patch_generated_writes_the_sources_final_position_at_decode_steps(model, mode):
    """``patch_generated``: every decode step's z of the head is the paired source's final-position
    z (``pattern_v``: A_S·V_S of the head's own KV group; ``mean``: the source mean)."""
    source, target, (layer, head) = POOL[3:5], POOL[:2], (1, 4)  # GQA 6 over 2: KV head 1 (not 4 % 2)
    z_s, s_mask = _z_at(model, source, layer)
    final = z_s[:, -1, head]  # left padding: the last column is every source prompt's final token
    mean = z_s[:, :, head][s_mask.bool()].mean(0)
    cfg = PatchConfig(((layer, head),), mode, "end", patch_generated=True)
    factory = patch_hooks(model, cfg, capture_source(model, source, [layer], MODES[mode].needs))
    seen = []
    record = (f"blocks.{layer}.attn.hook_z", lambda t, hook: seen.append(t[:, -1, head].clone()))
    generate(model, target, GenerationConfig(max_tokens=3, stop_at_eos=False),
             hooks=lambda info: factory(info) + [record])
    assert len(seen) == 3  # prefill, then two decode steps that write (the third token needs no forward)
    for step in seen:
        assert torch.allclose(step, mean.expand(2, -1) if mode == "mean" else final, atol=1e-5)


# ---------------------------------------------------------------- alignment and settings

def test_aligned_positions():
    t, s = aligned_positions("end", 5, 3)
    assert t.tolist() == [2, 3, 4] and s.tolist() == [0, 1, 2]
    t, s = aligned_positions("end", 2, 4)
    assert t.tolist() == [0, 1] and s.tolist() == [2, 3]
    t, s = aligned_positions("last", 5, 3)
    assert t.tolist() == [4] and s.tolist() == [2]
    t, s = aligned_positions("mean_source", 3, 7)
    assert t.tolist() == [0, 1, 2] and s is None


@pytest.mark.parametrize("kwargs, error, message", [
    ({"mode": "pattern-v"}, UnknownNameError, "unknown patch mode 'pattern-v'. Did you mean 'pattern_v'"),
    ({"mode": "z", "alignment": "start"}, UnknownNameError, "unknown alignment 'start'"),
    ({"mode": "pattern_only", "alignment": "mean_source"}, UserError, "not defined for patch mode 'pattern_only'"),
    ({"mode": "v_only", "patch_generated": True}, UserError, "cannot be extended to generated positions"),
])
def test_bad_patch_settings_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        PatchConfig(heads=((0, 0),), **kwargs)


def test_a_capture_stops_after_the_highest_layer_it_reads(model):
    """Blocks above the captured layers are not run; what is captured is what a full pass sees."""
    prompts = POOL[:5]
    needs = frozenset({"z", "v", "pattern"})
    ran = []
    top = model.hooked.decoder_layers()[-1].register_forward_hook(lambda *_: ran.append(1))
    try:
        low = capture_source(model, prompts, [0], needs)
        assert ran == []
        full = capture_source(model, prompts, [0, model.shape.n_layers - 1], needs)
        assert ran == [1]
    finally:
        top.remove()
    for kind in needs:
        assert all(torch.equal(a, b) for a, b in zip(getattr(low, kind)[0], getattr(full, kind)[0], strict=True))


# the all-rows fast path of the constant-valued ablations equals the per-row loop it replaces
register_mode("zero_by_row", description="test: zero through the per-row loop")(MODES["zero"].value)
register_mode("mean_by_row", needs=("z",), description="test: mean through the per-row loop")(MODES["mean"].value)


@pytest.mark.parametrize("mode, alignment", [("zero", "end"), ("zero", "mean_source"), ("mean", "mean_source")])
@pytest.mark.parametrize("patch_generated", [False, True])
def test_constant_ablations_write_every_row_at_once_as_the_loop_does(tiny_gpt2, mode, alignment, patch_generated):
    heads = ((0, 1), (0, 5), (1, 0), (1, 7))
    targets, sources = POOL[:5], POOL[3:]  # targets longer and shorter than their sources
    cfg = PatchConfig(heads, mode, alignment, patch_generated=patch_generated)
    loop = PatchConfig(heads, f"{mode}_by_row", alignment, patch_generated=patch_generated)
    gen = GenerationConfig(max_tokens=4, stop_at_eos=False, do_sample=True, seed=3)
    runs = []
    for c in (cfg, loop):
        src = capture_source(tiny_gpt2, sources, sorted(c.by_layer()), MODES[c.mode].needs)
        assert (constant_value(c, src, 1, [0], tiny_gpt2.shape.d_head) is not None) == (c is cfg)  # fast vs loop
        runs.append(generate(tiny_gpt2, targets, gen, hooks=patch_hooks(tiny_gpt2, c, src),
                             track={"t": list(range(50))}))  # fmt: skip
    fast, slow = runs
    assert [g.token_ids for g in fast.generations] == [g.token_ids for g in slow.generations]
    assert [g.tracked for g in fast.generations] == [g.tracked for g in slow.generations]
