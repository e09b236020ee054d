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
RECORD = os.path.join(ROOT, "docs", "validation.json")


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
