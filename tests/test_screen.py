"""Δattention screening: keyword tokens, the captured attention, pairing and the CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.analysis.screen import compare_with_sweep, last_position_attention, prompt_tokens, screen, template_suffix
from harness.metrics.text import PhraseMatcher
from harness.patch.source import capture_source
from harness.run.prompts import load_keywords
from harness.run.templating import format_prompts

EMOTION = ["Thank you so much for the help, I am grateful.", "We appreciate it.", "Thanks!",
           "I’M SO GRATEFUL for the lovely gift"]
NEUTRAL = ["The train leaves at nine in the morning today.", "Describe your town.", "Hello there",
           "Write a note to a neighbour about the bins"]


def _tokens(handle, prompt):
    matcher = PhraseMatcher(load_keywords("gratitude").keywords)
    fmt = format_prompts(handle.tokenizer, [prompt], handle.prompt_format)
    pt = prompt_tokens(handle.tokenizer, fmt.texts[0], prompt, matcher, fmt.add_special_tokens,
                       template_suffix(handle.tokenizer, handle.prompt_format))
    ids = handle.tokenizer(fmt.texts[0], add_special_tokens=fmt.add_special_tokens).input_ids
    return pt, [handle.tokenizer.decode([ids[k]]) for k in pt.keywords], ids


def test_keyword_tokens_are_the_tokens_of_matched_words(tiny_gpt2):
    pt, words, ids = _tokens(tiny_gpt2, "Thank you so much, I am grateful.")
    assert words == ["Thank", " you", " grateful"]  # "thank you" is one phrase: both tokens
    assert (pt.text_first, pt.text_last, pt.n_tokens) == (0, len(ids) - 1, len(ids))
    _, words, _ = _tokens(tiny_gpt2, "I’M SO GRATEFUL!!")  # curly apostrophe, capitals, split word
    assert "".join(words).strip() == "GRATEFUL"
    assert _tokens(tiny_gpt2, "Happy thanksgiving to all")[1] == []  # whole words only
    assert _tokens(tiny_gpt2, "I am not grateful")[1] == [" grateful"]  # negated words are still looked at


@given(st.lists(st.sampled_from(["thank you", "grateful", "thanks", "appreciated", "the", "train", "blue",
                                  "thanksgiving", "Thank", "GRATEFUL", "ünïcode", "x"]), min_size=1, max_size=8),
       st.sampled_from([" ", ", ", "! ", "\n"]))
@settings(max_examples=60, deadline=None)
def test_keyword_tokens_cover_exactly_the_keyword_matches(tiny_gpt2, words, sep):
    """Property: the flagged tokens are exactly the tokens overlapping a keyword match."""
    prompt = sep.join(words)
    pt, _, _ = _tokens(tiny_gpt2, prompt)
    offsets = tiny_gpt2.tokenizer(prompt, return_offsets_mapping=True)["offset_mapping"]
    matches = PhraseMatcher(load_keywords("gratitude").keywords).matches(prompt)  # ASCII-safe offsets here
    spans = [(m.start, m.start + len(m.phrase)) for m in matches]
    expected = [k for k, (a, b) in enumerate(offsets) if any(a < e and b > s for s, e in spans)]
    assert list(pt.keywords) == expected
    assert bool(expected) == any(w.lower() in ("thank you", "grateful", "thanks", "appreciated", "thank")
                                 for w in words)


@pytest.mark.model
def test_keyword_tokens_skip_the_chat_template(smollm2):
    pt, words, ids = _tokens(smollm2, "Thanks, I appreciate it.")
    assert [w.strip() for w in words] == ["Thanks", "appreciate"]
    text = smollm2.tokenizer.decode(ids[pt.text_first:pt.text_last + 1])
    assert text == "Thanks, I appreciate it."
    assert pt.text_last < pt.n_tokens - 3  # the template's closing tokens follow the text
    # a prompt that is also a word of the template is found where the user's text is
    pt, words, ids = _tokens(smollm2, "assistant")
    assert smollm2.tokenizer.decode(ids[pt.text_first:pt.text_last + 1]) == "assistant"
    assert pt.text_last < pt.n_tokens - 3


def test_captured_attention_is_the_pattern_the_model_uses(tiny_model):
    """Rows sum to 1, and pattern · V reproduces the head outputs of an unhooked (SDPA) run."""
    prompts = EMOTION[:3]
    rows = last_position_attention(tiny_model, format_prompts(tiny_model.tokenizer, prompts, "plain"))
    s = tiny_model.shape
    src = capture_source(tiny_model, prompts, range(s.n_layers), frozenset({"z", "v"}), prompt_format="plain")
    for i, row in enumerate(rows):
        assert row.shape == (s.n_layers, s.n_heads, src.z[0][i].shape[0])
        assert torch.allclose(row.sum(-1), torch.ones(s.n_layers, s.n_heads), atol=1e-5)
        for layer in range(s.n_layers):
            for h in range(s.n_heads):
                z = row[layer, h] @ src.v[layer][i][:, h // s.group_size].float()
                assert torch.allclose(z, src.z[layer][i][-1, h].float(), atol=1e-5)


def test_screening_a_set_against_itself_gives_exactly_zero(tiny_model):
    res = screen(tiny_model, EMOTION, EMOTION, "gratitude", reference="paired", prompt_format="plain")
    assert res.used == [0, 1, 2, 3] and res.excluded == [] and sum(res.clipped_tokens) == 0
    assert np.array_equal(res.deltas, np.zeros_like(res.deltas))
    assert (res.emotion_mass > 0).all()


def test_masses_do_not_depend_on_batch_neighbours(tiny_model):
    batch = screen(tiny_model, EMOTION, NEUTRAL, "gratitude", reference="paired", prompt_format="plain")
    for j, i in enumerate(batch.used):
        alone = screen(tiny_model, [EMOTION[i]], [NEUTRAL[i]], "gratitude", reference="paired", prompt_format="plain")
        np.testing.assert_allclose(alone.emotion_mass[..., 0], batch.emotion_mass[..., j], atol=1e-5)
        np.testing.assert_allclose(alone.neutral_mass[..., 0], batch.neutral_mass[..., j], atol=1e-5)


def test_masses_follow_the_definition(tiny_gpt2):
    """Recompute one pair by hand: keyword positions, distance-matched positions, clipping."""
    emo, neu = "Thank you so much for the help, I am grateful.", "Describe your town."
    res = screen(tiny_gpt2, [emo], [neu], "gratitude", reference="paired", prompt_format="plain")
    te, _, ids_e = _tokens(tiny_gpt2, emo)
    _, _, ids_n = _tokens(tiny_gpt2, neu)
    assert len(ids_n) == 5 and te.keywords == (0, 1, len(ids_e) - 2)
    # "Thank you" is 12 tokens from the end, farther than the 5-token neutral text: dropped on both sides
    assert res.keyword_tokens == [1] and res.clipped_tokens == [2]
    row_e, row_n = last_position_attention(tiny_gpt2, format_prompts(tiny_gpt2.tokenizer, [emo, neu], "plain"))
    np.testing.assert_allclose(res.emotion_mass[..., 0], row_e[:, :, len(ids_e) - 2].numpy(), atol=1e-6)
    np.testing.assert_allclose(res.neutral_mass[..., 0], row_n[:, :, len(ids_n) - 2].numpy(), atol=1e-6)
    two = screen(tiny_gpt2, [emo, "Thank you for all the help today", "The bus is late"],
                 [neu, "Hi", "Describe the weather in your town"], "gratitude", reference="paired",
                 prompt_format="plain")
    assert (two.used, two.excluded, two.no_keyword) == ([0], [1, 2], [2])
    with pytest.raises(ValueError, match="within the length"):
        screen(tiny_gpt2, ["Thank you for all the help today"], ["Hi"], "gratitude", reference="paired",
               prompt_format="plain")


def test_pooled_reference_with_one_target_equals_pairing_with_it(tiny_model):
    target = "Tell me about the weather in your town today."
    pooled = screen(tiny_model, EMOTION[:3], [target] * 3, "gratitude", prompt_format="plain")
    paired = screen(tiny_model, EMOTION[:3], [target] * 3, "gratitude", reference="paired", prompt_format="plain")
    assert pooled.used == paired.used and pooled.keyword_tokens == paired.keyword_tokens
    np.testing.assert_allclose(pooled.deltas, paired.deltas, atol=1e-6)


def test_pooled_reference_follows_the_definition(tiny_gpt2):
    """By hand: the reference at distance d is the mean over the targets whose text reaches d."""
    emo = "I am so grateful for this, thank you"  # keywords at distances 5 ("grateful") and 1, 0 ("thank you")
    from harness.run.prompts import load_prompt_set

    targets = [p for p in load_prompt_set("neutral").prompts if len(tiny_gpt2.tokenizer(p).input_ids) > 6][:10]
    targets.append("Hello there")  # 2 tokens: reaches distances 0 and 1 only
    res = screen(tiny_gpt2, [emo], targets, "gratitude", prompt_format="plain")
    te, _, ids = _tokens(tiny_gpt2, emo)
    dist = [len(ids) - 1 - k for k in te.keywords]
    assert dist == [5, 1, 0] and res.keyword_tokens == [3]
    rows = last_position_attention(tiny_gpt2, format_prompts(tiny_gpt2.tokenizer, targets, "plain"))
    by_hand = np.zeros(res.neutral_mass.shape[:2])
    for d in dist:
        reach = [r[:, :, -1 - d].numpy() for r in rows if r.shape[-1] > d]
        assert len(reach) == (10 if d == 5 else 11)
        by_hand += np.mean(reach, 0)
    np.testing.assert_allclose(res.neutral_mass[..., 0], by_hand, atol=1e-6)
    row_e = last_position_attention(tiny_gpt2, format_prompts(tiny_gpt2.tokenizer, [emo], "plain"))[0]
    np.testing.assert_allclose(res.emotion_mass[..., 0], row_e[:, :, list(te.keywords)].sum(-1).numpy(), atol=1e-6)


def test_pooled_ci_covers_the_mean_and_widens_with_target_noise(tiny_gpt2):
    from harness.analysis.screen import mean_ci

    res = screen(tiny_gpt2, EMOTION, NEUTRAL, "gratitude", prompt_format="plain")
    low, high = mean_ci(res, seed=0, n_resamples=500)
    mean = res.deltas.mean(-1)
    assert (low <= mean + 1e-9).all() and (mean <= high + 1e-9).all() and (high > low).any()
    # the same screen with every target row replaced by the targets' mean: no reference noise left
    fixed = replace(res, target_rows=np.broadcast_to(np.nanmean(res.target_rows, 0), res.target_rows.shape).copy())
    lo_fixed, hi_fixed = mean_ci(fixed, seed=0, n_resamples=500)
    assert np.allclose(fixed.deltas, res.deltas)
    assert (high - low).mean() > (hi_fixed - lo_fixed).mean()
    # with no reference noise left, the emotion prompts are still resampled: wherever their Δ vary
    # the interval has width
    varies = res.deltas.std(-1) > 1e-6
    assert varies.any() and ((hi_fixed - lo_fixed)[varies] > 0).all()


def test_pooled_reference_drops_distances_too_few_targets_reach(tiny_gpt2):
    emo = "I am so grateful for this, thank you"
    res = screen(tiny_gpt2, [emo], ["Describe your town.", "Hello there"], "gratitude", prompt_format="plain")
    assert res.keyword_tokens == [2] and res.clipped_tokens == [1]  # with 2 targets both must reach a distance
    # with more targets, a distance counts once MIN_TARGETS_PER_DISTANCE (10) of them reach it: 9 long
    # targets reach "grateful" (distance 5), the 2 short ones do not, so it is clipped
    from harness.run.prompts import load_prompt_set

    long = [p for p in load_prompt_set("neutral").prompts if len(tiny_gpt2.tokenizer(p).input_ids) > 6]
    res = screen(tiny_gpt2, [emo], long[:9] + ["Hello there"] * 2, "gratitude", prompt_format="plain")
    assert res.keyword_tokens == [2] and res.clipped_tokens == [1]
    res = screen(tiny_gpt2, [emo], long[:10] + ["Hello there"], "gratitude", prompt_format="plain")
    assert res.keyword_tokens == [3] and res.clipped_tokens == [0]  # 10 reach it now


def test_compare_with_sweep_ranks():
    grid = np.arange(12.0).reshape(2, 6)
    doc = {"deltas": np.repeat(grid[..., None], 3, -1).tolist()}
    same = compare_with_sweep(grid, doc, top=3)
    assert same["spearman_rho"] == pytest.approx(1.0) and same["top_overlap"] == 3
    assert compare_with_sweep(-grid, doc, top=3)["top_overlap"] == 0
    with pytest.raises(ValueError, match="does not match"):
        compare_with_sweep(np.zeros((3, 6)), doc)


def test_screen_cli(cli, main_in_process, tmp_path):
    out = tmp_path / "scr.json"
    proc = cli("harness", "screen", "--model", "tiny-gpt2", "--emotion", "gratitude", "--n-prompts", "6",
               "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["schema"] == "causal-heads/screen" and len(doc["ranked"]) == 2 * 12
    means = [r["mean"] for r in doc["ranked"]]
    assert means == sorted(means, reverse=True)
    assert all(r["ci_low"] <= r["mean"] <= r["ci_high"] for r in doc["ranked"])
    assert doc["n_used"] + len(doc["excluded_prompts"]) == 6 and doc["reference"] == "pooled"
    assert (tmp_path / "scr.png").read_bytes()[:4] == b"\x89PNG"
    assert "Δattn" in proc.stdout and "Traceback" not in proc.stderr
    bad = main_in_process("harness.cli.screen", "--model", "tiny-gpt2", "--emotion", "gratitudee",
                          "--output", str(tmp_path / "x.json"))
    assert bad.returncode == 2 and "Did you mean" in bad.stderr and "Traceback" not in bad.stderr
    for flag in ("--seed", "--top"):
        bad = main_in_process("harness.cli.screen", "--model", "tiny-gpt2", "--emotion", "gratitude", flag, "-1",
                              "--output", str(tmp_path / "x.json"))
        assert bad.returncode == 2 and f"{flag} -1 is invalid: must be an integer >= 0" in bad.stderr
    missing = main_in_process("harness.cli.screen", "--model", "tiny-gpt2", "--emotion", "gratitude", "--n-prompts", "4",
                              "--sweep", str(tmp_path / "none.json"), "--output", str(tmp_path / "y.json"))
    assert missing.returncode == 2 and "none.json: cannot read" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "sweep.json").write_text(json.dumps({"schema": "causal-heads/sweep", "schema_version": 1,
                                                     "emotion": "gratitude", "target": "neutral",
                                                     "patch_mode": "z", "n_prompts": 2,
                                                     "deltas": np.zeros((3, 3, 2)).tolist()}))
    mismatch = main_in_process("harness.cli.screen", "--model", "tiny-gpt2", "--emotion", "gratitude", "--n-prompts", "4",
                               "--sweep", str(tmp_path / "sweep.json"), "--output", str(tmp_path / "y.json"))
    assert mismatch.returncode == 2 and "sweep grid (3, 3) does not match tiny-gpt2's (2, 12)" in mismatch.stderr
    # a sweep of another emotion, or of other weights with the same grid, is refused before screening
    sweep = {"schema": "causal-heads/sweep", "schema_version": 1, "emotion": "anger", "target": "neutral",
             "patch_mode": "z", "n_prompts": 2, "deltas": np.zeros((2, 12, 2)).tolist(),
             "model": {"weights_sha256": "0" * 64}}
    (tmp_path / "sweep.json").write_text(json.dumps(sweep))
    other = main_in_process("harness.cli.screen", "--model", "tiny-gpt2", "--emotion", "gratitude", "--n-prompts", "4",
                            "--sweep", str(tmp_path / "sweep.json"), "--output", str(tmp_path / "y.json"))
    assert other.returncode == 2 and "it sweeps emotion 'anger', this screen 'gratitude'" in other.stderr
    (tmp_path / "sweep.json").write_text(json.dumps({**sweep, "emotion": "gratitude"}))
    other = main_in_process("harness.cli.screen", "--model", "tiny-gpt2", "--emotion", "gratitude", "--n-prompts", "4",
                            "--sweep", str(tmp_path / "sweep.json"), "--output", str(tmp_path / "y.json"))
    assert other.returncode == 2 and "it comes from other weights (000000000000…) than tiny-gpt2's" in other.stderr
    assert not (tmp_path / "y.json").exists()
    # the model's own sweep is compared: ρ and the top-k overlap land in the screen's document
    swept = main_in_process("harness.cli.sweep", "--model", "tiny-gpt2", "--emotion", "gratitude", "--n-prompts", "4",
                            "--output", str(tmp_path / "own.json"))
    assert swept.returncode == 0, swept.stderr
    ok = main_in_process("harness.cli.screen", "--model", "tiny-gpt2", "--emotion", "gratitude", "--n-prompts", "4",
                         "--sweep", str(tmp_path / "own.json"), "--output", str(tmp_path / "y.json"))
    assert ok.returncode == 0, ok.stderr
    versus = json.loads((tmp_path / "y.json").read_text())["versus_sweep"]
    assert -1 <= versus["spearman_rho"] <= 1 and 0 <= versus["top_overlap"] <= versus["top"] == 10
    assert f"versus the causal sweep {tmp_path / 'own.json'}: Spearman ρ = {versus['spearman_rho']:+.3f}" in ok.stdout
