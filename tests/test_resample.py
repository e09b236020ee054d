"""Resample ablation and claims that ask for necessity under several ablations."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import harness
from harness.claims.spec import Claim
from harness.core.errors import UserError
from harness.core.results import REPO_ROOT
from harness.patch.hooks import PatchConfig, patch_hooks
from harness.patch.modes import MODES
from harness.patch.resample import resample_draw
from harness.patch.source import capture_source
from harness.run.generation import forward
from harness.run.prompts import load_prompt_set

POOL = ["The quick brown fox jumps over", "Hello there", "Thank you so much for the help",
        "I am so grateful for everything you did for me", "Thanks!", "The train leaves at nine", "Sorry"]


def test_the_draw_takes_another_prompt_of_the_pool_and_is_the_seeds():
    drawn = resample_draw(POOL[:4], POOL, seed=3)
    assert len(drawn) == 4 and all(d != p and d in POOL for d, p in zip(drawn, POOL))
    assert resample_draw(POOL[:4], POOL, seed=3) == drawn  # reproducible with the seed
    assert {resample_draw(POOL[:4], POOL, seed=s) for s in range(6)} != {drawn}  # another seed, another draw
    many = [resample_draw(["Hello there"], POOL, seed=s)[0] for s in range(300)]
    assert set(many) == set(POOL) - {"Hello there"}  # every other prompt can be drawn
    with pytest.raises(UserError, match="no prompt other than 'Sorry' to draw from"):
        resample_draw(["Sorry"], ["Sorry"], seed=0)


def _patched(handle, cfg, sources, targets):
    src = capture_source(handle, sources, sorted(cfg.by_layer()), MODES[cfg.mode].needs)
    return forward(handle, targets, patch_hooks(handle, cfg, src))


@settings(max_examples=8, deadline=None)
@given(data=st.data(), alignment=st.sampled_from(["end", "last"]))
def test_resample_patching_invariants(tiny_gpt2, data, alignment):
    """Self-patch exact; equal to z patching from the drawn prompts; the same seed, the same logits."""
    targets = data.draw(st.lists(st.sampled_from(POOL), min_size=3, max_size=3, unique=True))
    seed = data.draw(st.integers(0, 1000))
    heads = ((0, data.draw(st.integers(0, 3))), (1, data.draw(st.integers(0, 3))))
    base, _ = forward(tiny_gpt2, targets)
    cfg = PatchConfig(heads, "resample", alignment)
    itself, _ = _patched(tiny_gpt2, cfg, targets, targets)
    assert torch.equal(itself, base)  # drawing each prompt itself would change nothing, exactly
    drawn = resample_draw(targets, POOL, seed)
    resampled, _ = _patched(tiny_gpt2, cfg, drawn, targets)
    as_z, _ = _patched(tiny_gpt2, PatchConfig(heads, "z", alignment), drawn, targets)
    assert torch.equal(resampled, as_z)
    again, _ = _patched(tiny_gpt2, cfg, resample_draw(targets, POOL, seed), targets)
    assert torch.equal(again, resampled) and not torch.equal(resampled, base)


def _folder(tmp_path, n_pool: int, drawn: tuple[str, ...]) -> str:
    """Prompts where the neutral set is its first ``n_pool`` prompts and an emotion ``drawn`` holds ``drawn``."""
    folder = tmp_path / "prompts"
    folder.mkdir()
    src = os.path.join(REPO_ROOT, "prompts")
    neutral = load_prompt_set("neutral")
    head = {"format": "causal-heads/prompts", "version": 1, "description": "test"}
    (folder / "neutral_prompts.json").write_text(json.dumps(
        {**head, "name": "neutral", "kind": "neutral", "prompts": list(neutral.prompts[:n_pool])}))
    (folder / "drawn_prompts.json").write_text(json.dumps(
        {**head, "name": "drawn", "kind": "emotion", "prompts": list(drawn)}))
    words = json.load(open(os.path.join(src, "gratitude_keywords.json")))
    (folder / "drawn_keywords.json").write_text(json.dumps({**words, "emotion": "drawn"}))
    shutil.copy(os.path.join(src, "gratitude_keywords.json"), folder)
    return str(folder)


def test_a_resample_claim_is_z_patching_from_prompts_drawn_with_its_seed(tmp_path, monkeypatch):
    n, pool = 4, 8
    neutral = load_prompt_set("neutral").prompts
    # a seed whose draw repeats no prompt (a prompt set, which the z claim reads them from, cannot)
    seed = next(s for s in range(100) if len(set(resample_draw(neutral[:n], neutral[:pool], seed=s))) == n)
    drawn = resample_draw(neutral[:n], neutral[:pool], seed=seed)
    monkeypatch.setenv("CAUSAL_HEADS_PROMPTS", _folder(tmp_path, pool, drawn))
    common = dict(model="tiny-gpt2", heads="1:1,0:2", metric="gratitude_logprob", direction="decrease",
                  n_prompts=n, max_tokens=4, seed=seed, tier="fast")  # fmt: skip
    resample = Claim(id="resample", patch_mode="resample", source="neutral", **common)
    z = Claim(id="z_from_drawn", patch_mode="z", source="drawn", **common)
    other_seed = resample.replace(id="other_seed", seed=seed + 1)
    results = harness.evaluate([resample, z, other_seed])
    a, b = results["resample"], results["z_from_drawn"]
    assert a.per_prompt["patched"] == b.per_prompt["patched"] and a.per_prompt["baseline"] == b.per_prompt["baseline"]
    assert [g["patched"] for g in a.generations] == [g["patched"] for g in b.generations]
    assert a.to_dict()["prompts"]["resample"] == b.to_dict()["prompts"]["sources"]["drawn"]
    assert results["other_seed"].to_dict()["prompts"]["resample"] != a.to_dict()["prompts"]["resample"]
    again = harness.evaluate([resample])["resample"]
    assert again.per_prompt == a.per_prompt  # reproducible with the seed


def test_a_claim_under_several_ablations_takes_the_largest_p():
    claim = Claim(id="necessary", model="tiny-gpt2", heads="1:1", patch_mode="zero", source="neutral",
                  metric="gratitude_logprob", direction="decrease", n_prompts=6, max_tokens=4, tier="fast",
                  ablations=["zero", "mean", "resample"])  # fmt: skip
    r = harness.evaluate([claim])["necessary"]
    assert r.error is None and list(r.ablations) == ["zero", "mean", "resample"]
    assert r.p_raw == max(a["p_raw"] for a in r.ablations.values())
    alone = harness.evaluate([claim.replace(ablations=None)])["necessary"]
    assert r.ablations["zero"]["p_raw"] == alone.p_raw and r.ablations["zero"]["mean"] == alone.effect["mean"]
    for mode in ("mean", "resample"):
        single = harness.evaluate([claim.replace(ablations=None, patch_mode=mode)])["necessary"]
        assert r.ablations[mode]["p_raw"] == single.p_raw and r.ablations[mode]["mean"] == pytest.approx(
            single.effect["mean"])
    record = r.to_dict()
    assert record["claim"]["ablations"] == ["zero", "mean", "resample"] and set(record["ablations"]) == set(
        r.ablations)
    assert "necessary under every ablation?" in r.explain()
    assert "ablations" not in claim.replace(ablations=None).to_dict()


@pytest.mark.parametrize("change, message", [
    ({"ablations": ["zero"]}, "field 'ablations' = ['zero']: must list at least two different ones of zero, mean"),
    ({"ablations": ["zero", "z"]}, "must list at least two different ones"),
    ({"ablations": ["mean", "resample"]}, "field 'patch_mode' = 'zero': a claim with ablations uses one of them"),
    ({"source": "gratitude"}, "field 'source' = 'gratitude': an ablation claim's source is its target set"),
    ({"direction": "equivalent", "margin": 0.1}, "are for a directional patch claim without versus"),
    ({"ablations": None, "patch_mode": "resample", "source": "gratitude"},
     "field 'source' = 'gratitude': a resample ablation draws each target prompt's replacement from the target set"),
])
def test_bad_ablation_claims_are_named(change, message):
    row = dict(id="c", model="tiny-gpt2", heads="1:1", patch_mode="zero", source="neutral", metric="sentiment",
               direction="decrease", ablations=["zero", "mean", "resample"])  # fmt: skip
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace("[", r"\[").replace("]", r"\]")):
        Claim(**{**row, **change})
