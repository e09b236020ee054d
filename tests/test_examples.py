"""A claim's generations: which prompts the patch changed, which are shown, and the inert warning."""

from __future__ import annotations

import numpy as np
import pytest

from harness.claims.examples import all_generations, changed_per_prompt, changes_text, pick_examples, text_changes
from harness.claims.spec import Claim, Condition
from harness.run.generation import Generation, GenerationConfig, GenerationResult

BASE = {"id": "c1", "model": "tiny-gpt2", "heads": "1:10", "patch_mode": "z", "source": "gratitude",
        "metric": "gratitude_keywords", "direction": "increase"}


def _run(tokens: list[list[tuple[int, ...]]]) -> GenerationResult:
    """A fake run: tokens[prompt][sample] -> generated ids; text is the ids spelled out."""
    gens = [Generation(prompt_index=i, sample_index=s, seed=0, prompt=f"prompt {i}", prompt_token_ids=(1,),
                       token_ids=ids, text=" ".join(map(str, ids)), stopped_at_eos=False)
            for i, samples in enumerate(tokens) for s, ids in enumerate(samples)]
    return GenerationResult(config=GenerationConfig(do_sample=True, samples=len(tokens[0])), prompt_format="plain", generations=gens)


def test_a_prompt_changed_when_any_sample_differs_token_for_token():
    base = _run([[(1, 2), (3, 4)], [(5,), (6,)], [(7,), (8,)]])
    patched = _run([[(1, 2), (3, 9)], [(5,), (6,)], [(7, 7), (8,)]])
    assert changed_per_prompt(base, patched) == [True, False, True]
    assert changed_per_prompt(base, base) == [False] * 3
    with pytest.raises(ValueError, match="different prompts"):
        changed_per_prompt(base, _run([[(1,), (2,)]]))


def test_text_changes_count_each_contrast():
    base = _run([[(1,)], [(2,)], [(3,)], [(4,)]])
    patched = _run([[(9,)], [(9,)], [(3,)], [(4,)]])
    versus = _run([[(9,)], [(2,)], [(3,)], [(8,)]])
    assert text_changes(base, patched) == {"n": 4, "patched_vs_baseline": 2, "versus_vs_baseline": None,
                                           "patched_vs_versus": None}
    ch = text_changes(base, patched, versus)
    assert (ch["patched_vs_baseline"], ch["versus_vs_baseline"], ch["patched_vs_versus"]) == (2, 2, 2)
    assert changes_text(text_changes(base, patched)) == "2/4"
    assert changes_text(ch) == "2/4 vs versus (2 and 2 vs baseline)"
    assert changes_text(None) == "—"  # documents written before this was recorded


def test_all_generations_keep_every_prompt_and_sample():
    base = _run([[(1,), (2,)], [(3,), (4,)]])
    patched = _run([[(1,), (5,)], [(3,), (4,)]])
    gens = all_generations(base, patched, np.array([0.5, 0.0]))
    assert gens == [{"index": 0, "target": "prompt 0", "baseline": ["1", "2"], "patched": ["1", "5"], "delta": 0.5,
                     "changed": True},
                    {"index": 1, "target": "prompt 1", "baseline": ["3", "4"], "patched": ["3", "4"], "delta": 0.0,
                     "changed": False}]
    versus = _run([[(1,), (5,)], [(3,), (6,)]])
    gens = all_generations(base, patched, np.array([0.0, -1.0]), versus)
    assert gens[1]["versus"] == ["3", "6"]
    assert [g["changed"] for g in gens] == [False, True]  # the contrast tested: patched vs versus


def _gens(deltas, changed):
    return [{"index": i, "target": f"p{i}", "baseline": [f"b{i}"], "patched": [f"q{i}"], "delta": float(d),
             "changed": ch} for i, (d, ch) in enumerate(zip(deltas, changed))]


def test_examples_are_picked_by_evidence_not_position():
    gens = _gens([0.0, 0.3, -0.5, 0.9, 0.0, 0.1], [False, True, True, True, True, True])
    picked = pick_examples(gens, "greater")
    assert [(x["index"], x["why"]) for x in picked] == [(3, "moved most the claimed way"),
                                                        (1, "moved most the claimed way"),
                                                        (5, "moved most the claimed way"),
                                                        (2, "moved most the other way")]
    assert picked[0] == {"index": 3, "why": "moved most the claimed way", "delta": 0.9, "changed": True,
                         "target": "p3", "baseline": "b3", "patched": "q3"}
    down = pick_examples(gens, "less", k=3)
    assert [(x["index"], x["why"]) for x in down] == [(2, "moved most the claimed way"),
                                                      (3, "moved most the other way"),
                                                      (4, "text changed, metric did not")]
    both = pick_examples(gens, "two-sided", k=3)  # |Δ| ranks; the last slot goes to a changed text
    assert [(x["index"], x["why"]) for x in both] == [(3, "moved most"), (2, "moved most"),
                                                      (4, "text changed, metric did not")]
    assert pick_examples([], "greater") == []
    still = pick_examples(_gens([0, 0, 0], [False, True, False]), "greater")
    assert [(x["index"], x["why"]) for x in still] == [(1, "text changed, metric did not"), (0, "text unchanged"),
                                                       (2, "text unchanged")]


def test_inert_warning_when_the_patch_changed_no_generation():
    from harness.claims.data_warnings import data_warnings
    from harness.metrics import get_metric

    senti = get_metric("sentiment")
    x = np.linspace(0.2, 0.8, 70)
    none = {"n": 70, "patched_vs_baseline": 0, "versus_vs_baseline": None, "patched_vs_versus": None}
    some = {**none, "patched_vs_baseline": 3}
    codes = [w["code"] for w in data_warnings(Claim(**BASE), senti, x, x, x - x, "greater", none)]
    assert codes == ["inert", "untestable"]
    msg = data_warnings(Claim(**BASE), senti, x, x, x - x, "greater", none)[0]["message"]
    assert msg.startswith("the patch changed none of the 70 generations") and "heads 1:10, mode z" in msg
    assert "inert" not in [w["code"] for w in data_warnings(Claim(**BASE), senti, x, x, x - x, "greater", some)]
    # an identity-like equivalence to no patch: unchanged text is the expected outcome, not inert;
    # but every difference is 0, so its TOST p (0) is flagged degenerate
    eq = Claim(**{**BASE, "direction": "equivalent", "margin": 0.1})
    assert [w["code"] for w in data_warnings(eq, senti, x, x, x - x, "two-sided", none)] == ["degenerate"]
    # a versus claim is vacuous only when neither condition changed anything
    vs = Claim(**{**BASE, "direction": "equivalent", "margin": 0.1, "versus": Condition("1:10", "pattern_v", "gratitude")})
    both = {**none, "versus_vs_baseline": 0, "patched_vs_versus": 0}
    assert [w["code"] for w in data_warnings(vs, senti, x, x, x - x, "two-sided", both)] == ["inert", "degenerate"]
    assert "neither condition changed any of the 70" in data_warnings(vs, senti, x, x, x - x, "two-sided", both)[0]["message"]
    one = {**both, "versus_vs_baseline": 5, "patched_vs_versus": 5}
    assert [w["code"] for w in data_warnings(vs, senti, x, x, x - x, "two-sided", one)] == ["degenerate"]


def test_a_tiny_model_claim_records_changes_generations_and_examples(tiny_gpt2):
    """End to end: the identity patch changes no text, the zero control does; every prompt is kept."""
    from harness.claims.session import ClaimSession

    small = {"n_prompts": 6, "max_tokens": 5}
    identity = Claim(**{**BASE, "id": "identity", "source": "neutral", "metric": "sentiment", "direction": "equivalent",
                        "margin": 0.01, **small})
    zero = Claim(**{**BASE, "id": "zero", "heads": "0:*,1:*", "patch_mode": "zero", "metric": "sentiment",
                    "direction": "decrease", **small})
    session = ClaimSession([identity, zero], n_resamples=500)
    session.models.add("tiny-gpt2", tiny_gpt2)
    res = session.results()
    ident, z = res["identity"], res["zero"]
    assert ident.text_changed == {"n": 6, "patched_vs_baseline": 0, "versus_vs_baseline": None,
                                  "patched_vs_versus": None}
    assert [w["code"] for w in ident.warnings] == ["degenerate"]  # 6/6 differences 0: TOST p 0 from no spread
    assert z.text_changed["patched_vs_baseline"] == 6  # every head of the model zeroed: all texts change
    assert len(z.generations) == 6 and [g["index"] for g in z.generations] == list(range(6))
    assert [g["delta"] for g in z.generations] == pytest.approx(z.per_prompt["delta"])
    assert all(g["baseline"] != g["patched"] for g in z.generations)
    assert 1 <= len(z.examples) <= 4 and all(x["why"] for x in z.examples)
    assert "generations changed (token for token): 6/6 prompts" in z.message()
