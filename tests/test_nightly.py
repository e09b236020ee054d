"""The nightly job end to end on a tiny model: claims -> evidence, report, plots -> regression."""

from __future__ import annotations

import json

import pytest

from harness.claims.spec import claims_toml
from harness.cli.nightly import summary_markdown
from harness.findings.regress import context_changes

TINY = {"model": "tiny-gpt2", "heads": "1:10", "patch_mode": "z", "n_prompts": 4, "max_tokens": 4}
CLAIMS = claims_toml([
    {**TINY, "id": "identity", "source": "neutral", "metric": "sentiment", "direction": "equivalent", "margin": 0.01,
     "tier": "fast"},
    {**TINY, "id": "gratitude_up", "source": "gratitude", "metric": "gratitude_keywords", "direction": "increase",
     "tier": "slow"},
])


@pytest.mark.slow  # two whole nightly jobs (34 s); the per-commit tier runs the job's steps in test_evidence.py
def test_first_night_then_a_night_that_loses_a_finding(tmp_path, cli):
    (tmp_path / "claims.toml").write_text(CLAIMS)
    claims = ("--", "--claims", "claims.toml")  # relative to the caller's folder, not the repo's
    first = tmp_path / "first"
    proc = cli("harness", "nightly", "--last", str(tmp_path / "none.json"), "--out", str(first), *claims, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 failed, 1 passed" in proc.stdout  # the slow claim ran too: "not supported" on 4 prompts
    assert f"no earlier findings at {tmp_path / 'none.json'}: nothing to compare" in proc.stdout
    for name in ("evidence.html", "phase7_head_patching_report.md", "plots/forest_identity.png",
                 "plots/forest_gratitude_up.png", "nightly.md"):
        assert (first / name).stat().st_size > 0, name
    doc = json.loads((first / "findings.json").read_text())
    assert {c["claim"]["id"]: c["verdict"] for c in doc["claims"]} == {"identity": "supported",
                                                                         "gratitude_up": "not supported"}
    summary = (first / "nightly.md").read_text()
    assert "2 claims: 1 supported, 1 not supported" in summary
    up = next(c["sign"] for c in doc["claims"] if c["claim"]["id"] == "gratitude_up")
    assert f"| {up['n_up']} / {up['n_down']} |" in summary

    # last night as if gratitude_up had held and identity had run with another seed
    for c in doc["claims"]:
        if c["claim"]["id"] == "gratitude_up":
            c["verdict"] = "supported"
        else:
            c["claim"]["seed"] = 7
    doc["data_files"]["prompts:neutral"]["sha256"] = "f" * 64
    last = tmp_path / "last.json"
    last.write_text(json.dumps(doc))
    second = tmp_path / "second"
    proc = cli("harness", "nightly", "--last", "last.json", "--out", "second", *claims, cwd=str(tmp_path))
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 finding(s) lost: gratitude_up" in proc.stdout
    assert f"data_files prompts:neutral: {'f' * 12} -> " in proc.stdout
    summary = (second / "nightly.md").read_text()
    assert "| gratitude_up | **LOST** verdict | supported → not supported |" in summary
    row = next(line for line in summary.splitlines() if line.startswith("| identity | settings changed |"))
    assert row.startswith("| identity | settings changed | supported → supported | effect +0.0000")
    assert row.endswith("; settings: seed 7-&gt;0 |")


@pytest.mark.slow  # three nightly runs (~20 s); evidence has the per-commit broken-run test
def test_a_broken_run_exits_3_and_the_summary_shows_errors(tmp_path, cli):
    proc = cli("harness", "nightly", "--last", str(tmp_path / "none.json"), "--out", str(tmp_path / "o"),
               "--", "--claims", str(tmp_path / "missing.toml"))
    assert proc.returncode == 3 and "the claims run broke (pytest exit 4)" in proc.stderr, proc.stderr[-2000:]
    assert f"file or directory not found: {tmp_path / 'missing.toml'}" in proc.stdout + proc.stderr
    assert not (tmp_path / "o" / "findings.json").exists()
    (tmp_path / "o").mkdir(exist_ok=True)
    (tmp_path / "o" / "findings.json").write_text('{"schema": "causal-heads/findings", "claims": []}')  # an earlier run's: kept, and not taken for tonight's
    (tmp_path / "c.toml").write_text(CLAIMS.replace('"tiny-gpt2"', '"gpt2"'))  # no GPT-2 weights: all skipped
    proc = cli("harness", "nightly", "--out", str(tmp_path / "o"), "--", "--claims", str(tmp_path / "c.toml"))
    assert proc.returncode == 3 and "pytest wrote no findings" in proc.stderr, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "2 skipped" in proc.stdout
    assert (tmp_path / "o" / "findings.json").read_text() == '{"schema": "causal-heads/findings", "claims": []}'
    (tmp_path / "bad.json").write_text("{")
    proc = cli("harness", "nightly", "--last", str(tmp_path / "bad.json"), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: {tmp_path / 'bad.json'}: not valid JSON")
    assert "$ " not in proc.stdout  # refused before running any claim
    doc = {"claims": [{"claim": {"id": "a"}, "verdict": "supported", "error": None, "p_adjusted": 0.01,
                       "effect": {"mean": 0.5, "ci_low": 0.1, "ci_high": 0.9}},
                      {"claim": {"id": "b"}, "verdict": "not supported", "error": "ValueError: boom\ntrace",
                       "effect": None}]}
    text = summary_markdown(doc, [], None, "last/findings.json")
    assert "2 claims: 1 supported, 1 error" in text
    assert "| a | supported | +0.5000 | [+0.1000, +0.9000] | 0.01 | — |" in text
    assert "| b | error: ValueError: boom | — | — | — | — |" in text
    assert "no earlier findings at last/findings.json: nothing to compare" in text
    assert context_changes(doc, doc) == []


def test_a_sign_claim_shows_its_median_in_the_summary():
    doc = {"claims": [{"claim": {"id": "s", "statistic": "sign"}, "verdict": "supported", "error": None,
                       "p_adjusted": 0.001, "effect": {"mean": 0.08, "ci_low": -0.07, "ci_high": 0.24},
                       "sign": {"median": 0.1, "ci_low": 0.08, "ci_high": 0.12, "n_up": 60, "n_down": 10}}]}
    assert "| s | supported | +0.1000 (median) | [+0.0800, +0.1200] | 0.001 | 60 / 10 |" in summary_markdown(doc, [], None, None)
