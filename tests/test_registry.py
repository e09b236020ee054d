"""Pre-registration: claims recorded before their first evaluation, and findings that say so."""

from __future__ import annotations

import json

import pytest

import harness
from harness.claims.registry import claim_digest, registry_path
from harness.claims.spec import load_claims
from harness.cli import preregister
from harness.core.errors import UserError

ROW = """
[[claim]]
id = "{id}"
model = "tiny-gpt2"
heads = "1:1"
patch_mode = "zero"
source = "gratitude"
metric = "gratitude_logprob"
direction = "decrease"
n_prompts = {n}
max_tokens = 2
tier = "fast"
description = "{text}"
"""


def _file(tmp_path, name="claims.toml", n=2, text="first"):
    path = tmp_path / name
    path.write_text(ROW.format(id="a", n=n, text=text) + ROW.format(id="b", n=n, text=text))
    return str(path)


def test_registration_then_evaluation(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no reports/findings.json here
    path = _file(tmp_path)
    assert preregister.main([path]) == 0
    assert "claims.registry.json: 2 claims registered" in capsys.readouterr().out
    doc = json.loads(open(registry_path(path)).read())
    assert doc["schema"] == "causal-heads/registry" and len(doc["registrations"]) == 1 and doc["first_evaluated"] == {}
    results = harness.evaluate(load_claims(path))
    pre = results["a"].preregistration
    assert pre["before_first_evaluation"] is True and pre["registry"] == "claims.registry.json"
    assert pre["registered"] < pre["first_evaluated"] and results["a"].to_dict()["preregistration"] == pre
    assert "pre-registered: yes" in results["a"].explain()
    # a second evaluation keeps the first one's time
    again = harness.evaluate(load_claims(path))["a"].preregistration
    assert again["first_evaluated"] == pre["first_evaluated"]
    # the description is free text: editing it is the same claim; changing what is tested is not
    _file(tmp_path, text="reworded")
    assert harness.evaluate(load_claims(path))["a"].preregistration["before_first_evaluation"] is True
    _file(tmp_path, n=3)
    changed = harness.evaluate(load_claims(path))["a"].preregistration
    assert changed["registered"] is None and changed["before_first_evaluation"] is False
    assert "pre-registered: no (registered never" in harness.evaluate(load_claims(path))["a"].explain()


def test_a_claim_evaluated_before_registration_is_not_preregistered(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = _file(tmp_path)
    first = harness.evaluate(load_claims(path))
    assert first["a"].preregistration is None  # no registry: no record
    findings = tmp_path / "reports" / "findings.json"
    findings.parent.mkdir()
    first.to_json(str(findings))
    created = json.loads(findings.read_text())["created"]
    assert preregister.main([path]) == 0  # reads reports/findings.json: both were evaluated before
    out = capsys.readouterr().out
    assert f"a: first evaluated {created}, before this registration: not pre-registered" in out
    later = harness.evaluate(load_claims(path))["a"].preregistration
    assert later["before_first_evaluation"] is False and later["first_evaluated"] == created


def test_the_digest_is_the_claims_fields_without_its_description(tmp_path):
    (a,) = load_claims(_file(tmp_path, "one_claims.toml"))[:1]
    assert claim_digest(a.to_dict()) == claim_digest({**a.to_dict(), "description": "other"})
    assert claim_digest(a.to_dict()) != claim_digest({**a.to_dict(), "n_prompts": 3})


def test_bad_input_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="a claims file is a .toml file"):
        preregister.main([str(tmp_path / "claims.json")])
    path = _file(tmp_path)
    (tmp_path / "claims.registry.json").write_text('{"schema": "causal-heads/registry", "schema_version": 1}')
    with pytest.raises(UserError, match="not a valid registry"):
        preregister.main([path])


def test_claims_run_before_with_no_record_can_be_registered_as_not_preregistered(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = _file(tmp_path)
    assert preregister.main([path, "--already-evaluated"]) == 0
    assert "b: first evaluated" in capsys.readouterr().out
    assert harness.evaluate(load_claims(path))["b"].preregistration["before_first_evaluation"] is False


def test_a_field_added_with_a_default_leaves_registered_digests_as_they_were(tmp_path):
    (a,) = load_claims(_file(tmp_path, "one_claims.toml"))[:1]
    record = a.to_dict()
    assert record["alpha"] == 0.05 and record["statistic"] == "mean"  # both at their defaults
    older = {k: v for k, v in record.items() if k not in ("alpha", "statistic")}  # as if they did not exist yet
    assert claim_digest(record) == claim_digest(older)
    assert claim_digest(record) != claim_digest({**record, "alpha": 0.01})


def test_a_claim_run_with_overrides_leaves_the_registry_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _file(tmp_path)
    assert preregister.main([path]) == 0
    before = open(registry_path(path)).read()
    changed = [c.replace(seed=7) for c in load_claims(path)]  # as --seed 7 would run them
    results = harness.evaluate(changed)
    assert results["a"].preregistration is None and open(registry_path(path)).read() == before
