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
    row = job.rows[0]
    assert r.selection == {"document": claim.selected_on, "overlap": 16, "prompts": 16, "label": "exploratory",
                           "discovery": {"heads": "1:2", "metric": job.document["metric"], "mean": row["mean"],
                                         "ci_low": row["ci_low"], "ci_high": row["ci_high"], "rank": 1}}
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


def test_sweep_claims_on_the_shipped_sets_select_on_discovery_and_confirm_on_confirmation(tmp_path, tiny_gpt2):
    """The shipped sets' split: the sweep ranks heads on discovery prompts, its claims name the
    confirmation split (disjoint: confirmatory); the same claim on discovery prompts is exploratory."""
    job = run_sweep(SweepOptions(emotion="gratitude", model="tiny-gpt2", n_prompts=16, combine=0, bootstrap=20),
                    str(tmp_path / "sweep.json"))  # fmt: skip
    assert job.document["split"] == "discovery"
    path = tmp_path / "claims.toml"
    assert write_sweep_claims(job, str(path), claim_heads=1, random_heads=0, claim_prompts=4) == 1
    (claim,) = load_claims(str(path))
    assert claim.split == "confirmation" and claim.n_prompts == 4
    claim = claim.replace(max_tokens=3, tier="fast")
    other = claim.replace(id="same_on_discovery", split="discovery")
    results = harness.evaluate([claim, other])
    confirmed, dipped = results[claim.id], results["same_on_discovery"]
    assert confirmed.selection["label"] == "confirmatory" and confirmed.selection["overlap"] == 0
    assert dipped.selection["label"] == "exploratory" and dipped.selection["overlap"] == 8  # 4 targets + 4 sources
    assert confirmed.selection["discovery"]["selected_share"] == job.rows[0]["selected_share"]
    # the findings record which prompts: the split and every prompt's sha256
    from harness.run.prompts import load_prompt_set, prompt_hashes

    record = confirmed.to_dict()["prompts"]
    assert record["split"] == "confirmation" and record["target"] == prompt_hashes(
        load_prompt_set("neutral").split("confirmation")[:4])
    assert record["sources"] == {"gratitude": prompt_hashes(load_prompt_set("gratitude").split("confirmation")[:4])}
    assert confirmed.to_dict()["claim"]["split"] == "confirmation"
    with pytest.raises(UserError, match=r"--claim-prompts 500: the confirmation split has 120 prompt pairs"):
        write_sweep_claims(job, str(path), claim_prompts=500)


def test_the_reports_show_discovery_beside_confirmation():
    from harness.report.discovery import discovery_html, discovery_markdown

    claim = {"claim": {"id": "c<1>"}, "verdict": "supported", "effect": {"mean": 0.5, "ci_low": 0.2, "ci_high": 0.8},
             "one_token": {"mean": 0.9, "ci_low": 0.7, "ci_high": 1.1},
             "selection": {"document": "s.json", "overlap": 0, "prompts": 8, "label": "confirmatory",
                           "discovery": {"heads": "1:2", "mean": 1.25, "ci_low": 1.0, "ci_high": 1.5,
                                         "selected_share": 0.95, "rank_interval": [1, 2]}}}  # fmt: skip
    lines = discovery_markdown([claim, {"claim": {"id": "hand"}, "verdict": "supported"}])
    row = lines[-2]
    assert lines[0] == "## Discovery and confirmation" and "hand" not in "\n".join(lines)
    assert row == ("| c&lt;1&gt; | confirmatory | +1.250 [+1.000, +1.500] | 95% (rank 1-2) | +0.900 [+0.700, +1.100] "
                   "| +0.5000 [+0.2000, +0.8000] | supported |")
    html = discovery_html([claim])
    assert "<td>c&lt;1&gt;</td>" in html and "<td>95% (rank 1-2)</td>" in html
    assert discovery_markdown([{"claim": {"id": "hand"}, "verdict": "supported"}]) == [] and discovery_html([]) == ""
    dipped = {**claim, "selection": {**claim["selection"], "overlap": 8, "label": "exploratory"}}
    assert "exploratory (8/8 prompts shared)" in discovery_markdown([dipped])[-2]
    versus = {**claim, "claim": {"id": "gain", "versus": {"heads": "1:2"}}}
    assert "| — (versus) |" in discovery_markdown([versus])[-2]
