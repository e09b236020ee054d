"""Path patching: receivers = every later head + direct reproduces the plain patch; direct alone freezes the rest."""

from __future__ import annotations

import pytest

from conftest import TINY_MODELS, load_tiny
from harness.errors import UserError
from harness.patch.hooks import PatchConfig, patch_hooks
from harness.patch.path import Receivers, parse_receivers, path_hooks
from harness.patch.source import capture_source
from harness.run.generation import GenerationConfig, generate
from harness.run.prompts import load_emotion_prompts, load_prompt_set

TRACK = {"some": [3, 5, 7, 11]}


def _runs(handle, receivers: str, *, mode="z", heads=((0, 1),), samples=1, tokens=6):
    targets, sources = load_prompt_set("neutral").head(5), load_emotion_prompts("gratitude").head(5)
    patch = PatchConfig(tuple(heads), mode, "end")
    src = capture_source(handle, sources, sorted({l for l, _ in heads}), get_needs(mode))
    cfg = GenerationConfig(max_tokens=tokens, do_sample=samples > 1, samples=samples, seed=3)
    rec = parse_receivers(receivers, heads, handle.shape.n_layers, handle.shape.n_heads)
    path = generate(handle, targets, cfg, hooks=path_hooks(handle, patch, src, rec), track=TRACK)
    plain = generate(handle, targets, cfg, hooks=patch_hooks(handle, patch, src), track=TRACK)
    base = generate(handle, targets, cfg, track=TRACK)
    return path, plain, base


def get_needs(mode):
    from harness.patch.modes import MODES

    return MODES[mode].needs


def _tracked(result):
    return [v for g in result.generations for v in g.tracked["some"]]


@pytest.mark.parametrize("name", TINY_MODELS)
def test_every_later_head_and_the_direct_path_reproduce_the_plain_patch(name):
    handle = load_tiny(name)
    path, plain, base = _runs(handle, "later,direct")
    assert [g.token_ids for g in path.generations] == [g.token_ids for g in plain.generations]
    assert _tracked(path) == pytest.approx(_tracked(plain), abs=1e-4)
    assert _tracked(plain) != pytest.approx(_tracked(base), abs=1e-4)  # the patch does something here


def test_sampled_path_runs_keep_each_rows_random_stream():
    handle = load_tiny("tiny-llama-gqa")
    path, plain, _ = _runs(handle, "later,direct", samples=3, heads=((0, 1), (1, 2)), mode="pattern_v")
    assert [g.token_ids for g in path.generations] == [g.token_ids for g in plain.generations]


def test_direct_only_freezes_every_later_head_and_later_only_drops_the_direct_path():
    """Senders in the last layer: no later head exists, so 'direct' is the whole patch; a sender
    one layer below with receivers = the last layer's heads only equals 'later' (nothing else is later)."""
    handle = load_tiny("tiny-qwen2")
    last = handle.shape.n_layers - 1
    path, plain, _ = _runs(handle, "direct", heads=((last, 0),))
    assert [g.token_ids for g in path.generations] == [g.token_ids for g in plain.generations]
    a, _, base = _runs(handle, "later", heads=((last - 1, 1),))
    b, _, _ = _runs(handle, f"{last}:*", heads=((last - 1, 1),))
    assert _tracked(a) == _tracked(b) and _tracked(a) != pytest.approx(_tracked(base), abs=1e-4)


def test_senders_in_the_last_layer_have_no_later_heads_to_receive():
    handle = load_tiny("tiny-gpt2")
    last = handle.shape.n_layers - 1
    with pytest.raises(UserError, match="no receiver left"):
        parse_receivers("later", ((last, 0),), handle.shape.n_layers, handle.shape.n_heads)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "name later heads"),
        ("0:1", "not above the lowest sender layer 0"),
        ("1:2, direct", None),
        ("2:0", "is also a sender"),
        ("9:0", "9"),
    ],
)
def test_receivers_are_checked_against_the_senders(text, message):
    senders = ((0, 1), (2, 0))
    if message is None:
        assert parse_receivers(text, senders, 3, 4) == Receivers(((1, 2),), True)
        return
    with pytest.raises(UserError, match=message):
        parse_receivers(text, senders, 3, 4)


def test_later_names_every_head_above_the_lowest_sender_but_the_senders():
    rec = parse_receivers("later,direct", ((0, 1), (1, 0)), 3, 2)
    assert rec.heads == ((1, 1), (2, 0), (2, 1)) and rec.direct and rec.to_text() == "1:1,2:0,2:1,direct"


def test_modes_that_read_the_target_are_refused():
    handle = load_tiny("tiny-gpt2")
    src = capture_source(handle, ["thanks"], [0], get_needs("v_only"))
    with pytest.raises(UserError, match="z-valued modes"):
        path_hooks(handle, PatchConfig(((0, 1),), "v_only"), src, Receivers(((1, 0),), True))


def test_the_fan_out_hooks_are_removed_after_the_run():
    handle = load_tiny("tiny-gpt2")
    blocks = handle.hooked.decoder_layers()
    before = [(len(b._forward_pre_hooks), len(b._forward_hooks)) for b in blocks]
    _runs(handle, "direct", tokens=2)
    assert [(len(b._forward_pre_hooks), len(b._forward_hooks)) for b in blocks] == before
