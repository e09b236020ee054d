"""The model-side next-token keyword log-probability metric."""

from __future__ import annotations

import pytest
import torch

from harness.core.errors import UserError
from harness.metrics import get_metric
from harness.metrics.next_token import (
    keyword_logprob,
    keyword_token_ids,
    keyword_tracks,
    track_key,
)
from harness.run.generation import GenerationConfig, generate
from harness.run.prompts import load_keywords

PROMPTS = ["Thank you so much for the", "The train leaves at", "Hello"]


def test_keyword_token_ids_are_keyword_pieces(tiny_gpt2):
    tok = tiny_gpt2.tokenizer
    ids = keyword_token_ids(tok, "gratitude")
    pieces = {tok.decode([i]).strip().lower() for i in ids}
    assert {"thank", "thanks", "grateful"} <= pieces
    words = [k for k in load_keywords("gratitude").keywords if " " not in k]
    assert all(any(w.startswith(p) for w in words) for p in pieces), pieces
    assert not pieces & {"many", "much", "could", "than"}  # generic first words are excluded


def test_first_token_rule_single_tokens_or_prefixes_of_five_letters(tiny_gpt2, monkeypatch):
    """A keyword counts through its first token when that token is the whole word, or a
    prefix of at least 5 letters; phrases are skipped. GPT-2 pieces: 'thank'+'fulness' (5,
    kept in all four spellings), ' contr'+'ite' (5, kept) but 'cont'+'rite' (4, not), ' glad'
    (one token, kept although 4 letters) but 'gl'+'ad' (not), 'k'+'udos' (never)."""
    from types import SimpleNamespace

    import harness.metrics.next_token as nt

    tok = tiny_gpt2.tokenizer
    monkeypatch.setattr(nt, "load_keywords", lambda emotion: SimpleNamespace(
        keywords=("thankfulness", "contrite", "glad", "kudos", "glad tidings")))
    first = {s: tok(s, add_special_tokens=False).input_ids[0]
             for s in ("thank", " thank", "Thank", " Thank", " contr", " glad", " Glad")}
    assert [tok.decode([i]) for i in keyword_token_ids(tok, "any")] == [tok.decode([i]) for i in sorted(first.values())]


def test_logprob_matches_a_manual_single_prompt_computation(tiny_model):
    got = keyword_logprob(tiny_model, PROMPTS, "gratitude", batch_size=2)
    ids = keyword_token_ids(tiny_model.tokenizer, "gratitude")
    assert got.shape == (3,) and (got < 0).all()
    for i, p in enumerate(PROMPTS):
        enc = tiny_model.tokenizer(p, return_tensors="pt")
        with torch.no_grad():
            logp = tiny_model.model(**enc).logits[0, -1].log_softmax(-1)
        assert got[i].item() == pytest.approx(torch.logsumexp(logp[ids], 0).item(), abs=1e-4)


def test_logprob_sees_hooks(tiny_model):
    plain = keyword_logprob(tiny_model, PROMPTS, "anger")

    def zero(z, hook):
        return torch.zeros_like(z)
    patched = keyword_logprob(tiny_model, PROMPTS, "anger", hooks=[("blocks.1.attn.hook_z", zero)])
    assert (patched - plain).abs().max() > 1e-3


@pytest.mark.model
def test_default_model_puts_more_mass_on_the_fitting_emotion(smollm2):
    prompts = ["My friend spent all weekend helping me move. What do I say to her?",
               "Describe the weather today.",
               "I broke my neighbour's window. What should I say first?"]
    grat = keyword_logprob(smollm2, prompts, "gratitude")
    apol = keyword_logprob(smollm2, prompts, "apology")
    assert grat[0] > grat[1] + 1.0
    assert apol[2] > apol[1] + 1.0


# ------------------------------------------------- the same mass tracked over generated tokens

def _teacher_forced(handle, g, ids):
    """log-mass on ``ids`` before each generated token, from one unpadded forward pass."""
    seq = torch.tensor([list(g.prompt_token_ids) + list(g.token_ids)])
    with torch.no_grad():
        logp = handle.model(input_ids=seq).logits[0].log_softmax(-1)
    start = len(g.prompt_token_ids) - 1
    return torch.logsumexp(logp[start:start + len(g.token_ids)][:, ids], dim=-1)


@pytest.mark.parametrize("do_sample", [False, True])
def test_tracked_mass_equals_a_teacher_forced_forward_and_changes_no_token(tiny_model, do_sample):
    cfg = GenerationConfig(max_tokens=6, do_sample=do_sample, samples=2 if do_sample else 1, seed=3)
    track = keyword_tracks(tiny_model.tokenizer)
    tracked = generate(tiny_model, PROMPTS, cfg, track=track)
    plain = generate(tiny_model, PROMPTS, cfg)
    assert [g.token_ids for g in tracked.generations] == [g.token_ids for g in plain.generations]
    assert all(g.tracked == {} for g in plain.generations)
    ids = keyword_token_ids(tiny_model.tokenizer, "gratitude")
    for g in tracked.generations:
        values = g.tracked[track_key("gratitude")]
        assert len(values) == len(g.token_ids) and set(g.tracked) == set(track)
        assert values == pytest.approx(_teacher_forced(tiny_model, g, ids).tolist(), abs=1e-4)


def test_logprob_metric_scores_tracked_generations_and_sees_the_patch(tiny_gpt2):
    track = keyword_tracks(tiny_gpt2.tokenizer)
    cfg = GenerationConfig(max_tokens=5)
    base = generate(tiny_gpt2, PROMPTS, cfg, track=track)
    zero = [("blocks.1.attn.hook_z", lambda z, hook: torch.zeros_like(z))]
    patched = generate(tiny_gpt2, PROMPTS, cfg, track=track, hooks=zero)
    m = get_metric("gratitude_logprob")
    assert m.on == "generation" and m.upper == 0.0
    for b in base.generations:
        values = b.tracked[track_key("gratitude")]
        assert m.score(b) == pytest.approx(sum(values) / len(values))
        assert m.score(b) < 0
    assert any(abs(m.score(b) - m.score(p)) > 1e-3 for b, p in zip(base.generations, patched.generations))
    with pytest.raises(UserError, match="'gratitude_logprob' is model-side: it scores generations"):
        m("Thank you so much!")
    untracked = generate(tiny_gpt2, PROMPTS[:1], cfg).generations[0]
    with pytest.raises(UserError, match="needs generations tracked for 'keywords:gratitude'; this run tracked nothing"):
        m.score(untracked)
    with pytest.raises(UserError, match=r"track 'bad': token ids must be a non-empty set in \[0, 50257\)"):
        generate(tiny_gpt2, PROMPTS[:1], cfg, track={"bad": [50257]})
