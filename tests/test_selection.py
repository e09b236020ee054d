"""Discovery and confirmation: a claim evaluated on the prompts that selected it is exploratory."""

from __future__ import annotations

import json
import os
import shutil

import pytest

import harness
from harness.analysis.sweep_job import SweepOptions, run_sweep, write_sweep_claims
from harness.claims.family import correct_family
from harness.claims.result import ClaimResult
from harness.claims.spec import Claim, load_claims
from harness.core.errors import UserError
from harness.model import groundtruth


def _split(tmp_path, model: str = "planted", n: int = 8) -> tuple[str, str]:
    """Two prompt folders of the planted model: its first n pairs (discovery) and the next n."""
    src = groundtruth.prompts_dir(model)
    folders = []
    for name, part in (("discovery", slice(0, n)), ("confirmation", slice(n, 2 * n))):
        folder = tmp_path / name
        folder.mkdir()
        for f in os.listdir(src):
            doc = json.load(open(os.path.join(src, f)))
            if "prompts" in doc:
                doc["prompts"] = doc["prompts"][part]
            (folder / f).write_text(json.dumps(doc))
        folders.append(str(folder))
    return folders[0], folders[1]


def test_a_claim_on_its_own_discovery_prompts_is_exploratory_and_corrected_apart(tmp_path, monkeypatch):
    discovery, confirmation = _split(tmp_path)
    monkeypatch.setenv("CAUSAL_HEADS_PROMPTS", discovery)
    job = run_sweep(SweepOptions(emotion="mood", model="groundtruth-planted", n_prompts=8, combine=0),
                    str(tmp_path / "sweep.json"))  # fmt: skip
    assert len(job.document["prompts_sha256"]["source"]) == 8
    path = tmp_path / "sweep_claims.toml"
    assert write_sweep_claims(job, str(path), random_heads=0) == 1
    (claim,) = load_claims(str(path))
    assert claim.selected_on == str(tmp_path / "sweep.json")
    other = Claim(id="other", model="groundtruth-planted", heads="1:2", patch_mode="z", source="mood",
                  metric="mood_keywords", direction="increase", n_prompts=8, max_tokens=5)  # fmt: skip
    double_dipped = harness.evaluate([claim.replace(max_tokens=5), other])
    r = double_dipped[claim.id]
    assert r.selection == {"document": claim.selected_on, "overlap": 16, "prompts": 16, "label": "exploratory"}
    assert "exploratory" in [w["code"] for w in r.warnings] and "exploratory" in r.explain()
    assert r.to_dict()["selection"]["label"] == "exploratory"
    # its own family: with one exploratory and one unlabelled claim, neither's Holm p counts the other
    assert r.p_adjusted == r.p_raw and double_dipped["other"].p_adjusted == double_dipped["other"].p_raw
    monkeypatch.setenv("CAUSAL_HEADS_PROMPTS", confirmation)
    confirmed = harness.evaluate([claim.replace(max_tokens=5), other])[claim.id]
    assert confirmed.selection["label"] == "confirmatory" and confirmed.selection["overlap"] == 0
    assert "exploratory" not in [w["code"] for w in confirmed.warnings]
    assert "selection" not in other.to_dict() and "selected_on" not in other.to_dict()


def test_correct_family_splits_exploratory_from_confirmatory():
    base = {"model": "tiny-gpt2", "heads": "1:10", "patch_mode": "z", "source": "gratitude",
            "metric": "sentiment", "direction": "increase"}  # fmt: skip
    results = []
    for i, (p, label) in enumerate([(0.01, "exploratory"), (0.02, "confirmatory"), (0.03, "confirmatory")]):
        r = ClaimResult(claim=Claim(id=f"c{i}", **base), p_raw=p, p_refute_raw=0.9)
        r.effect, r.sign = {"ci_low": 0.1, "ci_high": 0.2}, {"ci_low": 0.1, "ci_high": 0.2}
        r.selection = {"label": label, "overlap": 1 if label == "exploratory" else 0, "prompts": 4, "document": "s"}
        results.append(r)
    correct_family(results, "holm")
    assert results[0].p_adjusted == pytest.approx(0.01)  # alone in its family
    assert results[1].p_adjusted == pytest.approx(0.04) and results[2].p_adjusted == pytest.approx(0.04)


def test_a_missing_or_old_discovery_record_is_the_claims_error(tmp_path, monkeypatch):
    from harness.claims.selection import selection

    claim = Claim(id="c", model="tiny-gpt2", heads="1:10", patch_mode="z", source="gratitude", metric="sentiment",
                  direction="increase", selected_on=str(tmp_path / "gone.json"))  # fmt: skip
    with pytest.raises(UserError, match="cannot read the discovery record"):
        selection(claim, ["a"], ["b"])
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"schema": "causal-heads/sweep"}))
    with pytest.raises(UserError, match="does not list the prompts that selected it"):
        selection(claim.replace(selected_on=str(old)), ["a"], ["b"])
    shutil.rmtree(tmp_path, ignore_errors=True)
