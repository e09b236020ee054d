"""The pytest-html evidence report: summary columns, per-claim evidence, escaping."""

from __future__ import annotations

import json
import os
import shutil
from html.parser import HTMLParser

import pytest

from harness.results import atomic_write as _real_atomic_write

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOSTILE = '<script>alert("x")</script> Describe your day & night.'
CLAIMS = """
[[claim]]
id = "identity"
model = "tiny-gpt2"
heads = "1:10"
patch_mode = "z"
source = "neutral"
metric = "sentiment"
direction = "equivalent"
margin = 0.01
n_prompts = 4
max_tokens = 5
tier = "fast"

[[claim]]
id = "no_effect"
model = "tiny-gpt2"
heads = "1:10"
patch_mode = "z"
source = "gratitude"
metric = "politeness"
direction = "increase"
n_prompts = 4
max_tokens = 5
tier = "fast"
"""


class _Blob(HTMLParser):
    """pytest-html 4 keeps the results in a JSON attribute that its JavaScript renders."""

    blob = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "data-jsonblob" in attrs:
            self.blob = json.loads(attrs["data-jsonblob"])


class _Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.cells, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "td":
            self.cells.append("")

    def handle_data(self, data):
        if self.cells:
            self.cells[-1] += data


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.texts = []

    def handle_data(self, data):
        self.texts.append(data)

    @classmethod
    def of(cls, fragment) -> list[str]:
        p = cls()
        p.feed(fragment if isinstance(fragment, str) else "".join(fragment))
        return p.texts


def _parse(fragment: str) -> _Cells:
    p = _Cells()
    p.feed(fragment)
    return p


def test_html_report_summary_evidence_and_escaping(pytester, monkeypatch):
    tmp_path = pytester.path
    prompts = tmp_path / "prompts"
    shutil.copytree(os.path.join(ROOT, "prompts"), prompts)
    neutral = json.loads((prompts / "neutral_prompts.json").read_text())
    neutral["prompts"][0] = HOSTILE
    (prompts / "neutral_prompts.json").write_text(json.dumps(neutral))
    (tmp_path / "claims.toml").write_text(CLAIMS)
    report = tmp_path / "evidence.html"
    report.write_text("the last run's report")
    old_inode = report.stat().st_ino
    monkeypatch.setenv("CAUSAL_HEADS_PROMPTS", str(prompts))
    result = pytester.runpytest_subprocess(os.path.join(ROOT, "causal_tests", "test_claims.py"), "--claims",
                                           str(tmp_path / "claims.toml"), "--findings", str(tmp_path / "f.json"),
                                           "--html", str(report), "--self-contained-html", "-q",
                                           "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    # replaced by rename (a new inode), not rewritten in place; no temporary file left behind
    assert report.stat().st_ino != old_inode
    assert sorted(p.name for p in tmp_path.glob(".evidence.html*")) == []
    parser = _Blob()
    parser.feed(report.read_text())
    tests = {k.split("[")[1].rstrip("]"): v[0] for k, v in parser.blob["tests"].items()}
    findings = {c["claim"]["id"]: c for c in json.loads((tmp_path / "f.json").read_text())["claims"]}
    for test_id, cid in (("identity-head_1_10", "identity"), ("no_effect-head_1_10", "no_effect")):
        cells = _parse("".join(tests[test_id]["resultsTableRow"])).cells
        f = findings[cid]
        assert cells[2] == f["verdict"]
        assert cells[3] == format(f["effect"]["mean"], "+.4f")
        assert cells[4] == f"[{f['effect']['ci_low']:+.4f}, {f['effect']['ci_high']:+.4f}]"
        assert cells[7] == str(f["effect"]["n"])
        assert cells[10] == (", ".join(w["code"] for w in f["warnings"]) or "—")
        assert cells[11] == f"{f['text_changed']['patched_vs_baseline']}/{f['text_changed']['n']}"
    # 4 prompts: even 4 of 4 up gives p = 1/16 > 0.05, so the directional claim is untestable
    assert "untestable" in [w["code"] for w in findings["no_effect"]["warnings"]]
    assert "untestable" in _parse("".join(tests["no_effect-head_1_10"]["resultsTableRow"])).cells[10]
    assert any(c.startswith("warning (untestable): only") for c in
               [t for t in _Text.of(tests["no_effect-head_1_10"]["log"])])
    assert _parse("".join(tests["identity-head_1_10"]["resultsTableRow"])).cells[2] == "supported"
    evidence = _parse(tests["identity-head_1_10"]["log"])
    assert "script" not in evidence.tags  # the hostile prompt is text, not markup
    assert HOSTILE in evidence.cells  # ... and shown verbatim
    page = _Text.of(report.read_text())
    assert "2 claims evaluated: 1 supported, 1 not supported; p-values holm-adjusted across them." in page
    assert cells_of(tests["identity-head_1_10"]["resultsTableRow"])[11] == "0/4"  # identity: no text changed
    # every prompt's generations are in the evidence, not only the picked examples
    texts = _Text.of(tests["no_effect-head_1_10"]["log"])
    assert "all 4 prompts' generations" in texts
    for g in findings["no_effect"]["generations"]:
        assert g["patched"][0] in texts or not g["patched"][0].strip()


def test_interrupted_report_write_keeps_the_last_report(tmp_path, monkeypatch):
    from pytest_html.selfcontained_report import SelfContainedReport

    from harness import html_report, results

    report = tmp_path / "evidence.html"
    report.write_text("the last complete report")
    plugin = object.__new__(SelfContainedReport)  # only the two names the wrapper uses
    plugin._report_path = report

    class Manager:
        def get_plugins(self):
            return {object(), plugin}

    class Config:
        pluginmanager = Manager()

    assert html_report.atomic_report_writes(Config()) == 1

    def interrupted(fh):
        fh.write(b"<html>half of a ")
        raise KeyboardInterrupt

    monkeypatch.setattr(results, "atomic_write", lambda path, write: _real_atomic_write(path, interrupted))
    with pytest.raises(KeyboardInterrupt):
        plugin._write_report("<html>the whole new report</html>")
    assert report.read_text() == "the last complete report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evidence.html"]
    monkeypatch.undo()
    plugin._write_report("<html>the whole new report</html>")
    assert report.read_text() == "<html>the whole new report</html>"


def cells_of(fragment) -> list[str]:
    return _parse("".join(fragment)).cells
