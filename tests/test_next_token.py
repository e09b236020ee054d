"""The model-side next-token keyword log-probability metric."""

from __future__ import annotations

import pytest
import torch

from harness.metrics.next_token import keyword_logprob, keyword_token_ids
from harness.prompts import load_keywords

PROMPTS = ["Thank you so much for the", "The train leaves at", "Hello"]


def test_keyword_token_ids_are_keyword_pieces(tiny_gpt2):
    tok = tiny_gpt2.tokenizer
    ids = keyword_token_ids(tok, "gratitude")
    pieces = {tok.decode([i]).strip().lower() for i in ids}
    assert {"thank", "thanks", "grateful"} <= pieces
    words = [k for k in load_keywords("gratitude").keywords if " " not in k]
    assert all(any(w.startswith(p) for w in words) for p in pieces), pieces
    assert not pieces & {"many", "much", "could", "than"}  # generic first words are excluded


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
