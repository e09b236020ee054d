"""Generation engine: equality with untouched HF generate, hooks, shared randomness."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.core.errors import UserError
from harness.run.generation import GenerationConfig, _filter_logits, generate, row_seed

PLAIN_PROMPTS = [
    "Hello",
    "The quick brown fox jumps over the lazy dog and then",
    "Thank you so much for your help",
    "Tomorrow the",
]
CHAT_PROMPTS = [
    "What is the capital of France?",
    "Write a short note to a neighbour about the weather this weekend and the garden party.",
    "Hi",
    "Describe your morning.",
]


def _tokens(result):
    return [list(g.token_ids) for g in result.generations]


def _identity_hooks(*kinds):
    return [(lambda name, kinds=kinds: name.rsplit(".", 1)[-1] in kinds, lambda t, hook: t)]


def _zero_head(layer, head):
    def hook(z, hook):
        z = z.clone()
        z[:, :, head] = 0.0
        return z
    return [(f"blocks.{layer}.attn.hook_z", hook)]


# ---------------------------------------------------------------- equality with HF generate

def test_greedy_equals_untouched_hf_generate_tiny(tiny_model, hf_reference):
    ref = hf_reference(tiny_model.name, PLAIN_PROMPTS, 12)
    assert ref["weights_sha256"] == tiny_model.weights_sha256
    ours = generate(tiny_model, PLAIN_PROMPTS, GenerationConfig(max_tokens=12))
    assert _tokens(ours) == ref["rows"]
    assert len({len(p) for p in (g.prompt_token_ids for g in ours.generations)}) == len(PLAIN_PROMPTS)
    # no-op hooks on the hook points that keep SDPA change nothing, bit for bit
    hooked = generate(tiny_model, PLAIN_PROMPTS, GenerationConfig(max_tokens=12),
                      hooks=_identity_hooks("hook_v", "hook_z", "hook_attn_out"))
    assert _tokens(hooked) == ref["rows"]


@pytest.mark.model
def test_greedy_equals_untouched_hf_generate_default_model(smollm2, hf_reference):
    ref = hf_reference("smollm2-135m", CHAT_PROMPTS, 30)
    assert ref["prompt_format"] == "chat"
    ours = generate(smollm2, CHAT_PROMPTS, GenerationConfig(max_tokens=30),
                    hooks=_identity_hooks("hook_z"))
    assert _tokens(ours) == ref["rows"]
    paris = ours.generations[0]
    assert paris.stopped_at_eos and paris.token_ids[-1] == smollm2.model.generation_config.eos_token_id
    assert paris.text == "The capital of France is Paris."
    assert sum(len(r) == 30 for r in ref["rows"]) >= 2  # other rows kept going after row 0 stopped


# ---------------------------------------------------------------- hooks

def _logits(handle, prompts, hooks=()):
    enc = handle.tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.no_grad(), handle.hooked.hooks(fwd_hooks=list(hooks)):
        return handle.model(**enc).logits, enc["attention_mask"].bool()


def test_identity_hooks_give_exactly_the_unhooked_output(tiny_model):
    plain, mask = _logits(tiny_model, PLAIN_PROMPTS)
    same, _ = _logits(tiny_model, PLAIN_PROMPTS, _identity_hooks("hook_v", "hook_z", "hook_attn_out"))
    assert torch.equal(plain, same)
    # a hook on the pattern switches that layer to an explicit softmax: equal up to float error
    eager, _ = _logits(tiny_model, PLAIN_PROMPTS, _identity_hooks("hook_pattern"))
    assert (eager - plain)[mask].abs().max() < 1e-4
    greedy = GenerationConfig(max_tokens=10)
    assert _tokens(generate(tiny_model, PLAIN_PROMPTS, greedy, hooks=_identity_hooks("hook_pattern"))) == \
        _tokens(generate(tiny_model, PLAIN_PROMPTS, greedy))


def test_zeroing_one_head_changes_the_output(tiny_model):
    plain, mask = _logits(tiny_model, PLAIN_PROMPTS)
    zeroed, _ = _logits(tiny_model, PLAIN_PROMPTS, _zero_head(1, 1))
    assert (zeroed - plain)[mask].abs().max() > 1e-2
    greedy = GenerationConfig(max_tokens=10)
    assert _tokens(generate(tiny_model, PLAIN_PROMPTS, greedy, hooks=_zero_head(1, 1))) != \
        _tokens(generate(tiny_model, PLAIN_PROMPTS, greedy))


def test_replacing_the_pattern_changes_the_output(tiny_model):
    def uniform(pattern, hook):
        return torch.ones_like(pattern) / pattern.shape[-1]
    plain, mask = _logits(tiny_model, ["The quick brown fox jumps over the lazy dog"])
    patched, _ = _logits(tiny_model, ["The quick brown fox jumps over the lazy dog"],
                         [("blocks.0.attn.hook_pattern", uniform)])
    assert (patched - plain)[mask].abs().max() > 1e-2


@pytest.mark.model
def test_zeroing_one_head_changes_the_default_model(smollm2):
    plain, mask = _logits(smollm2, CHAT_PROMPTS[:2])
    zeroed, _ = _logits(smollm2, CHAT_PROMPTS[:2], _zero_head(0, 3))
    assert (zeroed - plain)[mask].abs().max() > 1e-2


def test_hooks_are_active_at_prefill_and_every_decode_step(tiny_model):
    s = tiny_model.shape
    seen = []

    def factory(info):
        def record(t, hook):
            _, layer, *_, point = hook.name.split(".")
            seen.append((info.step, int(layer), point, tuple(t.shape)))
            return t
        return [(lambda name: name.startswith("blocks."), record)]

    res = generate(tiny_model, PLAIN_PROMPTS[:2], GenerationConfig(max_tokens=4, stop_at_eos=False),
                   hooks=factory)
    length = max(len(g.prompt_token_ids) for g in res.generations)
    b, h, kv, d = 2, s.n_heads, s.n_kv_heads, s.d_head
    cfg = tiny_model.model.config
    types = getattr(cfg, "layer_types", None) or ["sliding_attention"] * s.n_layers
    expected = []
    for step in range(4):
        for layer in range(s.n_layers):
            # a sliding-window layer's cache keeps only the window (Mistral: every layer; Gemma 2/3: every other)
            window = (getattr(cfg, "sliding_window", None) if types[layer] == "sliding_attention" else None) or 10 ** 9
            pos, keys = (length, length) if step == 0 else (1, min(length + step, window))
            expected += [(step, layer, "hook_resid_pre", (b, pos, s.d_model)),
                         (step, layer, "hook_v", (b, pos, kv, d)), (step, layer, "hook_pattern", (b, h, pos, keys)),
                         (step, layer, "hook_z", (b, pos, h, d)), (step, layer, "hook_attn_out", (b, pos, s.d_model)),
                         (step, layer, "hook_resid_post", (b, pos, s.d_model))]
    assert seen == expected
    if getattr(cfg, "sliding_window", None):
        assert length > cfg.sliding_window  # the window binds on these prompts
    assert tiny_model.hooked.blocks[1].attn.hook_z.has_hooks() is False  # removed afterwards


def test_hook_factory_sees_rows_and_padding(tiny_gpt2):
    infos = []
    cfg = GenerationConfig(max_tokens=2, do_sample=True, samples=2, batch_size=3)
    generate(tiny_gpt2, PLAIN_PROMPTS[:2], cfg, hooks=lambda info: infos.append(info) or [])
    assert [i.rows for i in infos] == [((0, 0), (0, 1), (1, 0)), ((1, 1),)]
    lens = [len(tiny_gpt2.tokenizer(p).input_ids) for p in PLAIN_PROMPTS[:2]]
    assert infos[0].prompt_lengths.tolist() == [lens[0], lens[0], lens[1]]
    assert infos[0].pad_lengths.tolist() == [lens[1] - lens[0]] * 2 + [0]


# ---------------------------------------------------------------- randomness

SAMPLED = GenerationConfig(max_tokens=12, do_sample=True, samples=3, seed=11, top_k=0, top_p=0.95)


def test_same_seed_same_samples_and_a_new_seed_new_samples(tiny_model):
    a = generate(tiny_model, PLAIN_PROMPTS, SAMPLED)
    b = generate(tiny_model, PLAIN_PROMPTS, SAMPLED)
    assert _tokens(a) == _tokens(b)
    c = generate(tiny_model, PLAIN_PROMPTS, GenerationConfig(**{**SAMPLED.to_dict(), "seed": 12}))
    assert _tokens(a) != _tokens(c)
    by_prompt = a.by_prompt()
    assert all(len({g.token_ids for g in gens}) > 1 for gens in by_prompt.values())  # samples differ


def test_a_prompts_sample_is_the_same_alone_and_in_a_batch(tiny_model):
    batch = generate(tiny_model, PLAIN_PROMPTS, SAMPLED)
    target = PLAIN_PROMPTS[1]
    alone = generate(tiny_model, [target], SAMPLED)
    reordered = generate(tiny_model, [PLAIN_PROMPTS[3], target], GenerationConfig(**{**SAMPLED.to_dict(),
                                                                                   "batch_size": 2}))
    want = [g.token_ids for g in batch.generations if g.prompt == target]
    assert [g.token_ids for g in alone.generations] == want
    assert [g.token_ids for g in reordered.generations if g.prompt == target] == want


@pytest.mark.model
def test_default_model_sample_is_the_same_alone_and_in_a_batch(smollm2):
    cfg = GenerationConfig(max_tokens=20, do_sample=True, samples=2, seed=3)
    batch = generate(smollm2, CHAT_PROMPTS, cfg)
    alone = generate(smollm2, [CHAT_PROMPTS[3]], cfg)
    assert [g.token_ids for g in alone.generations] == \
        [g.token_ids for g in batch.generations if g.prompt_index == 3]


def test_row_seed_depends_on_seed_sample_and_prompt_only():
    assert row_seed(0, 0, "a") == row_seed(0, 0, "a")
    assert len({row_seed(0, 0, "a"), row_seed(1, 0, "a"), row_seed(0, 1, "a"), row_seed(0, 0, "b")}) == 4
    assert 0 <= row_seed(5, 2, "x") < 2**63


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), top_k=st.sampled_from([0, 1, 3, 50]),
       top_p=st.floats(0.05, 1.0), temperature=st.floats(0.3, 2.0))
def test_filtering_matches_hf_warpers(seed, top_k, top_p, temperature):
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    logits = torch.randn(3, 200, generator=torch.Generator().manual_seed(seed)) * 3
    cfg = GenerationConfig(do_sample=True, top_k=top_k, top_p=top_p, temperature=temperature)
    ours = _filter_logits(logits, cfg)
    hf = TemperatureLogitsWarper(temperature)(None, logits.clone())
    if top_k:
        hf = TopKLogitsWarper(top_k)(None, hf)
    if top_p < 1:
        hf = TopPLogitsWarper(top_p)(None, hf)
    assert torch.equal(torch.isinf(ours), torch.isinf(hf))
    assert torch.isfinite(ours.gather(-1, logits.argmax(-1, keepdim=True))).all()  # argmax kept


def test_top_k_1_sampling_is_greedy(tiny_gpt2):
    greedy = generate(tiny_gpt2, PLAIN_PROMPTS, GenerationConfig(max_tokens=8))
    k1 = generate(tiny_gpt2, PLAIN_PROMPTS, GenerationConfig(max_tokens=8, do_sample=True, top_k=1))
    assert _tokens(greedy) == _tokens(k1)


# ---------------------------------------------------------------- settings and bad input

@pytest.mark.parametrize("field, value", [("max_tokens", 0), ("temperature", 0.0), ("temperature", math.inf),
                                          ("temperature", math.nan), ("top_p", 1.5),
                                          ("top_p", 0.0), ("top_k", -1), ("samples", 0),
                                          ("batch_size", 0)])
def test_invalid_settings_name_the_field(field, value):
    with pytest.raises(UserError, match=f"{field}={value!r} is invalid"):
        GenerationConfig(**{"do_sample": True, field: value})


def test_greedy_with_several_samples_is_refused():
    with pytest.raises(UserError, match="samples=3 with greedy"):
        GenerationConfig(samples=3)


def test_empty_prompt_list_is_refused(tiny_gpt2):
    with pytest.raises(UserError, match="prompt list is empty"):
        generate(tiny_gpt2, [], GenerationConfig())


def test_progress_counts_every_rows_tokens(tiny_gpt2):
    ticks = []
    generate(tiny_gpt2, PLAIN_PROMPTS, GenerationConfig(max_tokens=5, batch_size=3), progress=ticks.append)
    assert sum(ticks) == len(PLAIN_PROMPTS) * 5  # rows × steps, in chunks of 3 rows
    assert set(ticks) <= {3, len(PLAIN_PROMPTS) % 3 or 3} | {3 * k for k in range(1, 6)}


def test_prompts_past_the_models_context_are_refused_by_name(tiny_gpt2, tiny_llama):
    """GPT-2 would fail in its position embedding (IndexError), a rotary model would run silently
    past its trained context; both are refused before any forward, naming the prompt."""
    from harness.analysis.sweep import sweep
    from harness.patch.source import capture_source
    from harness.run.generation import forward

    assert (tiny_gpt2.context_length, tiny_llama.context_length) == (256, 256)
    long = "word " * 250  # 251 tokens with the GPT-2 tokenizer
    prompts = ["A short prompt.", long]
    for handle in (tiny_gpt2, tiny_llama):
        with pytest.raises(UserError, match=r"prompt 1 \('word word .*\.\.\.'\) is 251 tokens in plain format "
                                            r"\+ 6 new tokens: more than tiny-\S+'s context of 256 positions; "
                                            r"shorten the prompt or lower --max-tokens"):
            generate(handle, prompts, GenerationConfig(max_tokens=6), prompt_format="plain")
        # the same prompt fits with fewer new tokens, and the boundary is prompt + new tokens <= context
        out = generate(handle, prompts, GenerationConfig(max_tokens=5, stop_at_eos=False), prompt_format="plain")
        assert len(out.generations[1].token_ids) == 5
    too_long = ["word " * 300]
    for call in (lambda: forward(tiny_gpt2, too_long, prompt_format="plain"),
                 lambda: capture_source(tiny_gpt2, too_long, [0], frozenset({"z"}), prompt_format="plain"),
                 lambda: sweep(tiny_gpt2, too_long * 2, ["Thank you."] * 2, "gratitude", layers=[0],
                               prompt_format="plain")):
        with pytest.raises(UserError, match=r"prompt 0 .* is 301 tokens in plain format: more than tiny-gpt2's "
                                            r"context of 256 positions; shorten the prompt$"):
            call()


def test_hook_v_sees_exactly_the_values_the_cache_stores(tiny_model):
    """Each adapter slices V out of its projection (separate v_proj, GPT-2's [q|k|v] blocks,
    GPT-NeoX's per-head [q|k|v]); whatever the layout, hook_v must be what attention uses."""
    from transformers import DynamicCache

    from harness.run.templating import format_prompts

    enc = format_prompts(tiny_model.tokenizer, PLAIN_PROMPTS[:2], "plain").encode(tiny_model.tokenizer)
    seen = {}
    cache = DynamicCache(ddp_cache_data=[(None, None)] * tiny_model.shape.n_layers)
    hooks = [(f"blocks.{layer}.attn.hook_v", lambda t, hook: seen.__setitem__(hook.name, t.clone()))
             for layer in range(tiny_model.shape.n_layers)]
    with torch.no_grad(), tiny_model.hooked.hooks(fwd_hooks=hooks):
        tiny_model.model(**enc, cache=cache, use_cache=True)
    for layer in range(tiny_model.shape.n_layers):
        v = seen[f"blocks.{layer}.attn.hook_v"]  # [batch, pos, kv_head, d_head]
        assert v.shape[2:] == (tiny_model.shape.n_kv_heads, tiny_model.shape.d_head)
        assert torch.equal(v.transpose(1, 2), cache.layers[layer].values)  # cache: [batch, kv_head, pos, d_head]


def test_the_growing_cache_layer_holds_what_hf_dynamic_layer_holds():
    """Appended in place (capacity doubled when full), keys/values equal DynamicLayer's in shape
    and value after every update, and a reset starts empty."""
    from transformers.cache_utils import DynamicLayer

    from harness.run.kvcache import growing_layer_class

    GrowingLayer = growing_layer_class()
    gen = torch.Generator().manual_seed(0)
    ours, theirs = GrowingLayer(), DynamicLayer()
    for n in (45, 1, 1, 60, 1, 100):  # the prefill, steps, and appends past the capacity
        k, v = torch.randn(3, 2, n, 4, generator=gen), torch.randn(3, 2, n, 4, generator=gen)
        a, b = ours.update(k, v), theirs.update(k, v)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and ours.get_seq_length() == theirs.get_seq_length()
    with pytest.raises(ValueError, match="rows x heads"):
        ours._grow(torch.zeros(5, 2, 1, 4), torch.zeros(5, 2, 1, 4), 500)
    ours.reset()
    assert ours.update(torch.ones(1, 1, 2, 4), torch.ones(1, 1, 2, 4))[0].shape == (1, 1, 2, 4)


def test_sampling_in_row_blocks_gives_each_row_what_one_piece_gives():
    """Rows are sampled and tracked SAMPLE_BLOCK at a time (faster on large packs); every row's
    token is what the whole batch at once gives, with generators or with broadcast exponentials."""
    from harness.run.generation import SAMPLE_BLOCK, _blocks, _next_tokens

    cfg = GenerationConfig(do_sample=True, top_k=50, seed=0)
    rows, period, vocab = 3 * 50, 50, 1000
    logits = torch.randn(rows, vocab, generator=torch.Generator().manual_seed(0)) * 4
    probs = _filter_logits(logits, cfg).softmax(dim=-1)
    q = torch.empty(period, vocab).exponential_(generator=torch.Generator().manual_seed(1))
    whole = (probs.view(3, period, -1) / q).argmax(dim=-1).flatten()
    assert torch.equal(_next_tokens(logits, cfg, [], lambda gens, p: q), whole)
    gens = [torch.Generator().manual_seed(r) for r in range(rows)]
    alone = torch.cat([torch.multinomial(probs[r], 1, generator=torch.Generator().manual_seed(r)) for r in range(rows)])
    assert torch.equal(_next_tokens(logits, cfg, gens), alone)
    blocks = _blocks(rows, period)
    assert all(stop - start <= SAMPLE_BLOCK and start // period == (stop - 1) // period for start, stop in blocks)
    assert [r for start, stop in blocks for r in range(start, stop)] == list(range(rows))
