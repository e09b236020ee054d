"""Nightly regression of findings: verdict flips, moved effects, lost findings."""

from __future__ import annotations

import copy
import json

import pytest

from harness.errors import UserError
from harness.regress import compare, load_findings


def _claim(cid, verdict, mean, low, high):
    return {"claim": {"id": cid}, "verdict": verdict, "effect": {"mean": mean, "ci_low": low, "ci_high": high},
            "error": None}


DOC = {"schema": "causal-heads/findings", "schema_version": 1, "claims": [
    _claim("gratitude_up", "supported", 0.20, 0.10, 0.30),
    _claim("sentiment_up", "not supported", 0.01, -0.02, 0.04),
    _claim("equiv", "supported", 0.0, -0.01, 0.01),
]}


def _write(tmp_path, name, doc):
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return str(path)


def test_flipped_verdict_exits_nonzero_and_names_the_claim(tmp_path, cli):
    new = copy.deepcopy(DOC)
    new["claims"][0].update(verdict="not supported", effect={"mean": 0.02, "ci_low": -0.05, "ci_high": 0.09})
    proc = cli("harness.regress", _write(tmp_path, "old.json", DOC), _write(tmp_path, "new.json", new))
    assert proc.returncode == 1
    assert "gratitude_up" in proc.stdout and "LOST verdict" in proc.stdout
    assert "1 finding(s) lost: gratitude_up" in proc.stdout
    assert "sentiment_up" not in proc.stdout  # unchanged claims are not listed


def test_unchanged_findings_exit_0(tmp_path, cli):
    proc = cli("harness.regress", _write(tmp_path, "a.json", DOC), _write(tmp_path, "b.json", DOC))
    assert proc.returncode == 0 and "no changes" in proc.stdout


def test_moved_effect_gained_new_and_missing_claims():
    old = {c["claim"]["id"]: c for c in DOC["claims"]}
    new = copy.deepcopy(old)
    new["sentiment_up"]["effect"]["mean"] = 0.08  # outside the old CI, same verdict
    new["sentiment_up"]["verdict"] = "not supported"
    del new["equiv"]
    new["fresh"] = _claim("fresh", "supported", 0.1, 0.05, 0.15)
    rows = {r["claim"]: r for r in compare(old, new)}
    assert rows["sentiment_up"]["change"] == "effect moved outside old CI" and not rows["sentiment_up"]["lost"]
    assert rows["equiv"]["change"] == "missing" and rows["equiv"]["lost"]
    assert rows["fresh"]["change"] == "new" and not rows["fresh"]["lost"]
    assert "gratitude_up" not in rows
    gained = copy.deepcopy(old)
    gained["sentiment_up"]["verdict"] = "supported"
    (row,) = compare(old, gained)
    assert row["change"] == "verdict" and not row["lost"]


@pytest.mark.parametrize("content, message", [
    ("{", "not valid JSON"),
    (json.dumps({"schema": "other"}), "not a findings document"),
    (json.dumps({"schema": "causal-heads/findings", "schema_version": 9}), "schema_version 9 is not supported"),
])
def test_bad_documents_are_named(tmp_path, content, message):
    path = tmp_path / "f.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        load_findings(str(path))
