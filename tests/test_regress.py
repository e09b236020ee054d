"""Nightly regression of findings: verdict flips, moved effects, lost findings."""

from __future__ import annotations

import copy
import json
import os

import pytest

from harness.core.errors import UserError
from harness.findings.regress import compare
from harness.findings.schema import load_findings


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
    proc = cli("harness", "regress", _write(tmp_path, "old.json", DOC), _write(tmp_path, "new.json", new))
    assert proc.returncode == 1
    assert "gratitude_up" in proc.stdout and "LOST verdict" in proc.stdout
    assert "1 finding(s) lost: gratitude_up" in proc.stdout
    assert "sentiment_up" not in proc.stdout  # unchanged claims are not listed


def test_unchanged_findings_exit_0(tmp_path, cli):
    proc = cli("harness", "regress", _write(tmp_path, "a.json", DOC), _write(tmp_path, "b.json", DOC))
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
    (json.dumps({"schema": "causal-heads/findings", "schema_version": True}), "schema_version True is not supported"),
    (b'{"schema": "\xff"}', "not UTF-8 text"),
])
def test_bad_documents_are_named(tmp_path, content, message):
    path = tmp_path / "f.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(UserError, match=message):
        load_findings(str(path))


def _with(edit):
    doc = copy.deepcopy(DOC)
    edit(doc)
    return doc


@pytest.mark.parametrize("doc, message", [
    ({"schema": "causal-heads/findings", "schema_version": 1}, "has no 'claims' list (it is missing)"),
    (_with(lambda d: d.update(claims="oops")), "has no 'claims' list (got str)"),
    (_with(lambda d: d["claims"].append({"id": "x"})), "claims[3]: must be an object with a 'claim' object"),
    (_with(lambda d: d["claims"][1]["claim"].update(id="")),
     "claims[1] (''): field 'claim.id' = '': must be a non-empty string"),
    (_with(lambda d: d["claims"][1]["claim"].update(model=3)),
     "claims[1] ('sentiment_up'): field 'claim.model' = 3: must be a string"),
    (_with(lambda d: d["claims"][1]["claim"].update(id="gratitude_up")),
     "claims[1] ('gratitude_up'): claim id 'gratitude_up' appears more than once"),
    (_with(lambda d: d["claims"][0].update(verdict="maybe")),
     "claims[0] ('gratitude_up'): field 'verdict' = 'maybe': must be one of supported, not supported"),
    (_with(lambda d: d["claims"][2].update(effect=[0.1])), "claims[2] ('equiv'): field 'effect' = [0.1]"),
    (_with(lambda d: d["claims"][2]["effect"].update(mean="0.1")),
     "field 'effect.mean' = '0.1': must be a number or null"),
    (_with(lambda d: d["claims"][0].update(random_control={"null": [0.1, "x"]})),
     "field 'random_control.null[1]' = 'x': must be a number or null"),
    (_with(lambda d: d["claims"][0].update(warnings=["floor"])), "field 'warnings[0]' = 'floor': must be an object"),
    (_with(lambda d: d["claims"][0].update(warnings=[{"code": "floor"}, {"message": "no code"}])),
     "claims[0] ('gratitude_up'): field 'warnings[1].code' is missing"),
    (_with(lambda d: d["claims"][0]["effect"].update(mean=float("inf"))),
     "not valid JSON: Infinity is not a JSON number (this code stores a missing number as null)"),
    (_with(lambda d: d["claims"][0]["claim"].update(n_prompts=True)), "field 'claim.n_prompts' = True: must be an integer"),
    (_with(lambda d: d["claims"][0]["claim"].update(n_prompts=-1)), "field 'claim.n_prompts' = -1: must be greater than or equal to 0"),
    (_with(lambda d: d.update(models={"m": {"shape_tuple": [2, 10**9]}})),
     "field 'models.m.shape_tuple[1]' = 1000000000: must be less than or equal to 4096"),
    (_with(lambda d: d.update(git=[])), "f.json: field 'git' = []: must be an object or null"),
])
def test_malformed_claim_records_are_named(tmp_path, cli, doc, message):
    path = _write(tmp_path, "f.json", doc)
    with pytest.raises(UserError) as info:
        load_findings(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_well_formed_warnings_and_errors_load_and_an_error_is_the_detail(tmp_path):
    doc = _with(lambda d: d["claims"][0].update(warnings=[{"code": "floor", "message": "..."}]))
    assert load_findings(_write(tmp_path, "f.json", doc))["gratitude_up"]["warnings"][0]["code"] == "floor"
    old = {c["claim"]["id"]: c for c in copy.deepcopy(DOC)["claims"]}
    new = copy.deepcopy(old)
    new["equiv"].update(verdict="error", effect=None, error="RuntimeError: out of memory")
    (row,) = compare(old, new)
    assert row["change"] == "verdict" and row["lost"] and row["detail"] == "RuntimeError: out of memory"


def test_regress_and_report_refuse_a_malformed_document_with_exit_2(tmp_path, main_in_process):
    bad = _write(tmp_path, "bad.json", _with(lambda d: d["claims"][0].update(verdict="maybe")))
    proc = main_in_process("harness.cli.regress", bad, bad)
    assert proc.returncode == 2 and "field 'verdict' = 'maybe'" in proc.stderr and "Traceback" not in proc.stderr
    # the regression's minimal records are not enough for the report, which names what is missing
    proc = main_in_process("harness.cli.report", _write(tmp_path, "min.json", DOC), "--markdown", str(tmp_path / "r.md"))
    assert proc.returncode == 2 and "claims[0] ('gratitude_up'): field 'claim.model' is missing" in proc.stderr
    assert not (tmp_path / "r.md").exists()


def test_changed_inputs_are_listed_above_the_table(tmp_path, cli):
    old = copy.deepcopy(DOC)
    old.update(git={"commit": "0123456789abcdef" * 2 + "a" * 8, "dirty": False},
               packages={"torch": "2.13.0", "scipy": "1.17.1", "long-name": "x" * 45},
               correction="holm", profile=None,
               models={"m": {"weights_sha256": "1" * 64}},
               data_files={"prompts:neutral": {"path": "p/n.json", "sha256": "2" * 64},
                           "keywords:anger": {"path": "p/a.json", "sha256": "3" * 64}})
    new = copy.deepcopy(old)
    new["git"]["commit"] = "b" * 40
    new["packages"]["scipy"] = "1.18.0"
    new.update(correction="bh", profile="greedy")
    new["packages"]["statsmodels"] = "0.14.6"  # added since: shown from None
    new["models"]["m"]["weights_sha256"] = "4" * 64
    new["data_files"]["prompts:neutral"]["sha256"] = "5" * 64
    del new["data_files"]["keywords:anger"]  # unused tonight: not a change of input
    new["packages"]["long-name"] = "y" * 45  # not a digest: shown in full
    proc = cli("harness", "regress", _write(tmp_path, "old.json", old), _write(tmp_path, "new.json", new))
    assert proc.returncode == 0, proc.stderr
    head = proc.stdout.split("\n\n")[0].splitlines()
    assert head == ["changed between the runs:", f"  git commit 0123456789ab -> {'b' * 12}",
                    "  correction holm -> bh", "  profile None -> greedy",
                    f"  packages long-name: {'x' * 45} -> {'y' * 45}",
                    "  packages scipy: 1.17.1 -> 1.18.0", "  packages statsmodels: None -> 0.14.6",
                    f"  models m: {'1' * 12} -> {'4' * 12}",
                    f"  data_files prompts:neutral: {'2' * 12} -> {'5' * 12}"]
    assert "no changes: every verdict and effect is as before" in proc.stdout


def test_changed_claim_settings_are_a_row_and_annotate_verdict_changes():
    old = {c["claim"]["id"]: c for c in copy.deepcopy(DOC)["claims"]}
    for c in old.values():
        c["claim"].update(n_prompts=70, seed=0, description="old words")
    new = copy.deepcopy(old)
    new["sentiment_up"]["claim"].update(n_prompts=16, description="new words")
    new["gratitude_up"]["claim"]["seed"] = 1
    new["gratitude_up"].update(verdict="not supported", effect={"mean": 0.02, "ci_low": -0.05, "ci_high": 0.09})
    new["equiv"]["claim"]["description"] = "reworded only"
    rows = {r["claim"]: r for r in compare(old, new)}
    assert rows["sentiment_up"]["change"] == "settings changed" and not rows["sentiment_up"]["lost"]
    assert rows["sentiment_up"]["detail"].endswith("settings: n_prompts 70->16")
    assert rows["gratitude_up"]["change"] == "verdict" and rows["gratitude_up"]["lost"]
    assert rows["gratitude_up"]["detail"].endswith("; settings: seed 0->1")
    assert "equiv" not in rows  # a reworded description is not a change of the claim
    # other model weights under the same claim are a settings change too (a document without them is not)
    weighed = copy.deepcopy(old)
    for c in weighed.values():
        c["model"] = {"weights_sha256": "ab" * 32}
    reweighed = copy.deepcopy(weighed)
    reweighed["equiv"]["model"] = {"weights_sha256": "cd" * 32}
    rows = {r["claim"]: r for r in compare(weighed, reweighed)}
    assert list(rows) == ["equiv"] and rows["equiv"]["detail"].endswith("settings: weights abababababab->cdcdcdcdcdcd")
    assert compare(old, weighed) == []


def test_an_effect_on_its_old_ci_bound_has_not_moved_outside_it():
    # the identity claim's CI is [0, 0]: an unchanged 0 must not be reported every night
    old = {"identity": _claim("identity", "supported", 0.0, 0.0, 0.0), "up": _claim("up", "supported", 0.2, 0.1, 0.3)}
    new = {"identity": _claim("identity", "supported", 0.0, 0.0, 0.0), "up": _claim("up", "supported", 0.3, 0.2, 0.4)}
    assert compare(old, new) == []
    new["up"]["effect"]["mean"] = 0.30001
    assert [r["change"] for r in compare(old, new)] == ["effect moved outside old CI"]


def test_changed_data_warnings_are_a_row_and_old_documents_without_them_are_not():
    old = {c["claim"]["id"]: c for c in copy.deepcopy(DOC)["claims"]}
    for c in old.values():
        c["warnings"] = []
    new = copy.deepcopy(old)
    new["sentiment_up"]["warnings"] = [{"code": "untestable", "message": "only 2/70 prompts changed"},
                                       {"code": "floor", "message": "..."}]
    rows = {r["claim"]: r for r in compare(old, new)}
    assert list(rows) == ["sentiment_up"]
    assert rows["sentiment_up"]["change"] == "data warnings changed" and not rows["sentiment_up"]["lost"]
    assert rows["sentiment_up"]["detail"].endswith("warnings: none -> floor,untestable")
    legacy = copy.deepcopy(old)
    for c in legacy.values():
        del c["warnings"]
    assert compare(legacy, new) == []  # recorded in one run only: nothing to compare


def test_the_published_json_schema_is_the_loaders_own(tmp_path, main_in_process):
    """docs/findings.schema.json is FindingsDocument's JSON Schema, byte for byte as
    ``causal-heads report --json-schema`` writes it (``make schema`` regenerates it when the model changes)."""
    from harness.findings.schema import FindingsDocument

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "findings.schema.json")
    with open(path) as fh:
        published = fh.read()
    assert json.loads(published) == FindingsDocument.model_json_schema()
    proc = main_in_process("harness", "report", "--json-schema", str(tmp_path / "s.json"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "s.json").read_text() == published
    bad = main_in_process("harness", "report", "f.json", "--json-schema", str(tmp_path / "t.json"))
    assert bad.returncode == 2 and "--json-schema writes the schema alone" in bad.stderr


@pytest.mark.parametrize("hostile", ["\x1b[2J\x1b[31mall good\x1b[0m", "ok\rLOST", "bell\x07", "csi\x9b31m"])
def test_claim_ids_with_terminal_escapes_are_shown_not_obeyed(tmp_path, main_in_process, hostile):
    """Class 10 of the reliability issue: ids and details come from the documents and reach the
    terminal only as visible escapes (an ANSI sequence could clear the screen or recolour a row)."""
    old, new = copy.deepcopy(DOC), copy.deepcopy(DOC)
    for doc in (old, new):
        doc["claims"][0]["claim"]["id"] = hostile
    new["claims"][0].update(verdict="not supported", effect={"mean": 0.02, "ci_low": -0.05, "ci_high": 0.09})
    proc = main_in_process("harness", "regress", _write(tmp_path, "old.json", old), _write(tmp_path, "new.json", new))
    assert proc.returncode == 1 and "LOST verdict" in proc.stdout
    shown = proc.stdout.replace("\n", "").replace("\t", "")
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in shown), repr(proc.stdout)
    assert repr(hostile[0])[1:-1] in proc.stdout  # e.g. \x1b, shown


V1 = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "findings_v1_8d19a05.json")


def test_a_committed_v1_document_loads_renders_and_regresses(tmp_path, main_in_process):
    """The main job's findings as written at 8d19a05 (before the claims pipeline was split into
    resolve/plan/execute/evaluate/family): they load complete, render to markdown and the HTML
    summary, and regress against themselves with no change and against an edited copy with one."""
    from harness.findings.regress import regression
    from harness.findings.schema import load_document
    from harness.report.html import summary_table
    from harness.report.markdown import render_markdown

    doc = load_document(V1, complete=True)
    assert doc["schema_version"] == 1 and len(doc["claims"]) == 16
    text = render_markdown(doc, doc["claims"])
    assert "sanity_identity_patch_equivalent_to_no_patch" in text and "smollm2_21_1_gratitude_logprob_direct_path" in text
    table = summary_table(doc["claims"])
    assert table.count('class="verdict-supported"') == 7
    assert regression(doc, doc)[1] == []
    edited = copy.deepcopy(doc)
    edited["claims"][9]["verdict"] = "not supported"  # the identity sanity claim, lost
    (row,) = regression(doc, edited)[1]
    assert row["claim"] == "sanity_identity_patch_equivalent_to_no_patch" and row["lost"]
    proc = main_in_process("harness", "regress", V1, _write(tmp_path, "new.json", edited))
    assert proc.returncode == 1 and "sanity_identity_patch_equivalent_to_no_patch" in proc.stdout
    proc = main_in_process("harness", "report", V1, "--markdown", str(tmp_path / "r.md"))
    assert proc.returncode == 0, proc.stderr


def test_a_circuit_claims_faithfulness_is_compared_per_ablation():
    old = _claim("circuit", "refuted", -2.0, -2.2, -1.8)
    old["circuit"] = {"ablations": {"mean": {"faithfulness": 0.10, "ci_low": 0.05, "ci_high": 0.15},
                                    "zero": {"faithfulness": 0.00, "ci_low": -0.01, "ci_high": 0.01}}}  # fmt: skip
    new = copy.deepcopy(old)
    assert compare({"circuit": old}, {"circuit": new}) == []
    new["circuit"]["ablations"]["mean"]["faithfulness"] = 0.40  # the effect stays inside its old CI
    (row,) = compare({"circuit": old}, {"circuit": new})
    assert row["change"] == "faithfulness moved outside old CI" and not row["lost"]
    assert "faithfulness mean 0.100 [0.050, 0.150] -> 0.400" in row["detail"] and "zero" not in row["detail"]


def test_a_changed_config_tokenizer_or_chat_template_is_named():
    """Reliability round 2, class 2: an edited rope_theta or a replaced chat template changes every
    generation under the same weights hash; findings record config, tokenizer and chat template
    digests, and regress names a change in any of them (above the table and in the claim's row)."""
    from harness.findings.regress import context_changes

    model = {"weights_sha256": "1" * 64, "config_sha256": "2" * 64, "tokenizer_sha256": "3" * 64,
             "chat_template_sha256": "4" * 64}
    for field in ("config_sha256", "tokenizer_sha256", "chat_template_sha256"):
        old = {c["claim"]["id"]: {**c, "model": dict(model)} for c in copy.deepcopy(DOC)["claims"]}
        new = copy.deepcopy(old)
        for c in new.values():
            c["model"][field] = "9" * 64
        rows = {r["claim"]: r for r in compare(old, new)}
        assert set(rows) == set(old), field
        assert all(r["change"] == "settings changed" for r in rows.values())
        name = field.removesuffix("_sha256")
        assert all(f"{name} {model[field][:12]}->{'9' * 12}" in r["detail"] for r in rows.values()), field
        above = context_changes({"models": {"m": dict(model)}}, {"models": {"m": {**model, field: "9" * 64}}})
        assert above == [f"models m {field}: {model[field][:12]} -> {'9' * 12}"]
    # findings from before the digests were recorded: not a change
    assert context_changes({"models": {"m": {"weights_sha256": "1" * 64}}}, {"models": {"m": dict(model)}}) == []
