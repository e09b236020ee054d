"""Claims written in Python: a claim mark, the claim_result fixture and follow-up assertions.

Each test is one claim, evaluated with every other claim of the run (the TOML rows included)
as one family: one correction, one findings document, one HTML report. ``-k head_1_10``
selects these as it does a claim file's rows. The tiny random model keeps them in the
per-commit tier.
"""

from __future__ import annotations

import pytest

from harness import Claim, register_intervention

TINY = {"model": "tiny-gpt2", "metric": "sentiment", "n_prompts": 8, "max_tokens": 4, "tier": "fast"}


@pytest.mark.claim(Claim(id="py_identity_patch_changes_nothing", heads="1:10", patch_mode="z", source="neutral",
                         direction="equivalent", margin=0.01, **TINY))
def test_identity_patch_changes_nothing(claim_result):
    assert claim_result.supported, claim_result.explain()
    # follow-ups a row cannot express: not one prompt's Δ moved, not one generation changed
    assert claim_result.delta == [0.0] * 8
    assert claim_result.text_changed["patched_vs_baseline"] == 0


@pytest.mark.parametrize("heads", ["0:3", "1:10"])
@pytest.mark.claim(lambda heads: Claim(id=f"py_zeroing_{heads.replace(':', '_')}_changes_text", heads=heads,
                                       patch_mode="zero", source="neutral", direction="increase", **TINY))
def test_zeroing_one_head_changes_generations(claim_result, heads):
    """Whatever the verdict on sentiment, zeroing a head of a random model must change some text:
    otherwise the patch did nothing (the research log's identical Δ)."""
    assert claim_result.error is None, claim_result.explain()
    assert claim_result.claim.heads == heads
    assert claim_result.text_changed["patched_vs_baseline"] > 0, claim_result.explain()


@register_intervention("scale_head_x3", per_head=True)
def scale_head_x3(z, hook):
    """scale the head's output z three times (an intervention: a hook function, no source prompts)"""
    return 3.0 * z


@pytest.mark.claim(Claim(id="py_tripling_1_10_changes_text", intervention="scale_head_x3", heads="1:10",
                         random_heads=2, direction="increase", **TINY))
def test_tripling_a_head_changes_generations(claim_result):
    """An intervention claim gets the same statistics and controls: the random heads of layer 1
    are tripled the same way."""
    assert claim_result.error is None, claim_result.explain()
    assert len(claim_result.random_control["null"]) == 2
    assert claim_result.text_changed["patched_vs_baseline"] > 0, claim_result.explain()
