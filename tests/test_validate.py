"""``causal-heads validate``: the pipeline on the ground-truth models, and how claims are read
against their truth."""

from __future__ import annotations

import json
import os

import pytest

from harness.claims.spec import Claim
from harness.model import groundtruth
from harness.model.loading import load_model
from harness.validation.record import check_against, read_record
from harness.validation.truth import classify, load_truth

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORD = groundtruth.RECORD  # the shipped record (fixtures/groundtruth/validation.json)


def _claim(**kw) -> Claim:
    row = {"id": "c", "model": "groundtruth-planted", "source": "mood", "metric": "mood_logprob",
           "direction": "increase", "patch_mode": "z", "heads": "1:2"}  # fmt: skip
    row.update(kw)
    return Claim(**row)


@pytest.fixture
def mood_prompts(monkeypatch):
    monkeypatch.setenv("CAUSAL_HEADS_PROMPTS", groundtruth.prompts_dir("planted"))


def test_classify_reads_claims_against_the_truth(mood_prompts):
    t = load_truth("planted")
    assert classify(_claim(), t) == "true"
    assert classify(_claim(metric="mood_keywords"), t) == "true"
    assert classify(_claim(direction="decrease"), t) == "false"
    assert classify(_claim(heads="0:3"), t) == "false"  # inert, in a mode that keeps lengths
    assert classify(_claim(heads="0:3", patch_mode="zero"), t) is None  # zeroing changes the residual's length
    assert classify(_claim(heads="1:2", patch_mode="pattern_only"), t) is None
    assert classify(_claim(heads="1:2,0:3"), t) == "true"
    assert classify(_claim(heads="1:2,0:3", versus={"heads": "1:2"}), t) == "false"  # adds only an inert head
    assert classify(_claim(heads="1:2,0:3", versus={"heads": "0:3"}), t) == "true"
    assert classify(_claim(versus={"source": "neutral"}), t) is None
    assert (
        classify(_claim(direction="equivalent", margin=0.05, patch_mode="pattern_v", versus={"patch_mode": "z"}), t)
        == "true"
    )
    assert classify(_claim(direction="equivalent", margin=0.05, heads="1:0"), t) == "true"
    assert classify(_claim(direction="equivalent", margin=0.05), t) is None


def test_classify_distractor_and_path(monkeypatch):
    monkeypatch.setenv("CAUSAL_HEADS_PROMPTS", groundtruth.prompts_dir("distractor"))
    d = load_truth("distractor")
    assert classify(_claim(model="groundtruth-distractor", heads="1:1", metric="mood_keywords"), d) == "false"
    assert classify(_claim(model="groundtruth-distractor", heads="1:1", metric="sentiment"), d) is None  # text moves
    monkeypatch.setenv("CAUSAL_HEADS_PROMPTS", groundtruth.prompts_dir("induction"))
    i = load_truth("induction")
    path = {"model": "groundtruth-induction", "kind": "path", "heads": "", "senders": "0:1", "receivers": "1:2",
            "source": "repeat", "metric": "repeat_keywords", "max_tokens": 1}  # fmt: skip
    assert classify(_claim(**path), i) == "true"
    assert classify(_claim(**{**path, "max_tokens": 30}), i) is None  # the truth decides the next token only
    assert classify(_claim(**{**path, "senders": "0:0"}), i) == "false"
    assert classify(_claim(**{**path, "metric": "repeat_logprob"}), i) is None  # not fixed by construction


@pytest.mark.parametrize("model", groundtruth.MODELS)
def test_ground_truth_models_load_through_the_normal_path(model):
    handle = load_model(groundtruth.registered_name(model))
    assert handle.name == f"groundtruth-{model}" and handle.source.startswith("dir:")
    assert handle.shape.n_layers == 2 and handle.shape.n_heads == 4 and handle.prompt_format == "plain"
    assert handle.tokenizer("a b").input_ids == [handle.tokenizer.convert_tokens_to_ids(w) for w in ("a", "b")]


def test_quick_validation_meets_the_record(cli, tmp_path):
    """The per-commit check: every step of the pipeline on every ground-truth model (2 draws of 16
    prompts); power no lower and false positives no higher than the recorded release figures."""
    out = tmp_path / "v.json"
    r = cli("harness", "validate", "--quick", "--json", "--output", str(out), "--check", RECORD)
    assert r.returncode == 0, r.stdout + r.stderr
    figures = json.loads(r.stdout)
    assert set(figures) == set(groundtruth.MODELS)
    doc = read_record(str(out))
    for model, m in figures.items():
        assert m["runs"] == 2 and m["recall_at_3"] == 1.0, model
        assert m["power_detail"]["n"] > 0 and m["false_positive_detail"]["n"] > 0, model
    assert figures["planted"]["power"] == 1.0
    # the planted head is selected in >= 0.9 of the sweep's prompt resamples, inert heads in <= 0.1
    sel = figures["planted"]["selection_frequency"]
    assert sel["causal_min"] >= 0.9 and sel["other_max"] <= 0.1
    for m in figures.values():  # the sweep's claims are confirmed on prompts that did not select them
        assert m["written_claims_confirmatory"]["rate"] == 1.0
    for claim in figures["distractor"]["distractor"].values():
        assert claim["not_supported"]["rate"] == 1.0
    assert check_against(doc, read_record(RECORD)) == []


def test_check_against_names_a_worse_run():
    record = read_record(RECORD)
    worse = json.loads(json.dumps(record))
    worse["models"]["planted"]["power"] = 0.2
    worse["models"]["planted"]["false_positive_rate"] = 0.9
    problems = check_against(worse, record)
    assert any("power 0.200" in p for p in problems) and any("false-positive rate 0.900" in p for p in problems)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models", "plantd"], "did you mean"),
        (["--runs", "0"], "--runs 0 is invalid"),
        (["--n-prompts", "1000"], "--n-prompts 1000 is invalid"),
        (["--check", "README.md"], "not a readable validation record"),
    ],
)
def test_bad_options_are_one_line_exit_2(main_in_process, args, message):
    r = main_in_process("harness", "validate", *args)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert message.lower() in r.stderr.lower()


def test_selection_stability_is_the_sweep_on_resampled_prompts():
    import numpy as np

    from harness.analysis.stability import selection_stability

    rng = np.random.default_rng(0)
    deltas = rng.normal(0.0, 1.0, (2, 4, 30))
    deltas[1, 2] += 3.0  # one head far above the rest
    deltas[0, 1] += 0.4  # one a little above
    a = selection_stability(deltas, top_k=1, resamples=300, seed=5)
    b = selection_stability(deltas, top_k=1, resamples=300, seed=5)
    assert np.array_equal(a.selected_share, b.selected_share)  # reproducible with the seed
    assert a.selected_share[1, 2] == 1.0 and a.selected_share.sum() == 1.0  # top 1: one head per resample
    assert a.rank_low[1, 2] == a.rank_high[1, 2] == 1
    wide = selection_stability(deltas, top_k=3, resamples=300, seed=5)
    assert 0.0 < wide.selected_share[0, 1] < 1.0 and wide.rank_low[0, 1] < wide.rank_high[0, 1]
    # by definition: the first resample's selection is the top k of the first resample's columns
    first = np.random.default_rng(5 + 4099).integers(0, 30, 30)
    one = selection_stability(deltas, top_k=3, resamples=1, seed=5)
    means = deltas.reshape(8, 30)[:, first].mean(1)
    top = [i for i in np.argsort(-means, kind="stable")[:3] if means[i] > 1e-5]  # above rounding only
    assert set(np.flatnonzero(one.selected_share.reshape(8))) == set(top)
    # heads whose effect is rounding are never selected
    assert selection_stability(np.full((1, 3, 10), 1e-7), top_k=3, resamples=50, seed=0).selected_share.sum() == 0


def test_sweep_min_stability_writes_only_stable_heads(main_in_process, tmp_path, monkeypatch):
    monkeypatch.setenv("CAUSAL_HEADS_PROMPTS", groundtruth.prompts_dir("planted"))
    claims = tmp_path / "sweep_claims.toml"
    base = ["sweep", "--model", "groundtruth-planted", "--emotion", "mood", "--n-prompts", "16", "--combine", "0",
            "--output", str(tmp_path / "s.json")]  # fmt: skip
    r = main_in_process("harness", *base, "--write-claims", str(claims), "--min-stability", "0.8")
    assert r.returncode == 2 and "--bootstrap" in r.stderr
    r = main_in_process("harness", *base, "--bootstrap", "100", "--write-claims", str(claims), "--min-stability", "0.8")
    assert r.returncode == 0, r.stderr
    text = claims.read_text()
    assert text.count("[[claim]]") == 1 and "1_2" in text and "selected in 100% of prompt resamples" in text
    doc = json.loads((tmp_path / "s.json").read_text())
    shares = {row["head"]: row["selected_share"] for row in doc["ranked"]}
    assert shares["1:2"] == 1.0 and max(v for h, v in shares.items() if h != "1:2") == 0.0


def test_every_report_carries_the_shipped_ground_truth_record(tmp_path):
    from harness.report.markdown import write_report
    from harness.report.trust import trust_html, trust_markdown

    record = groundtruth.shipped_record()
    assert record is not None
    lines = trust_markdown(record)
    planted = record["models"]["planted"]["power_detail"]
    assert lines[0] == "## How far to trust these verdicts"
    assert any(line.startswith("- planted:") and f"({planted['k']}/{planted['n']})" in line for line in lines)
    html = trust_html({**record, "models": {"<b>x</b>": record["models"]["planted"]}})
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>" not in html  # model names are escaped
    assert "<h2>How far to trust these verdicts</h2>" in html and "`" not in html
    assert trust_markdown(None) == [] and trust_html(None) == ""
    md = tmp_path / "r.md"
    write_report(os.path.join(ROOT, "fixtures", "findings_v1_8d19a05.json"), str(md), str(tmp_path / "plots"))
    assert "## How far to trust these verdicts" in md.read_text()
