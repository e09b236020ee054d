"""The main job end to end on a tiny model: claims -> evidence HTML, report, plots, verdict table."""

from __future__ import annotations

import json

from harness.claims.spec import claims_toml

TINY = {"model": "tiny-gpt2", "heads": "1:10", "patch_mode": "z", "n_prompts": 4, "max_tokens": 4}
ROWS = [
    {**TINY, "id": "identity", "source": "neutral", "metric": "sentiment", "direction": "equivalent", "margin": 0.01,
     "tier": "fast"},
    {**TINY, "id": "gratitude_up", "source": "gratitude", "metric": "gratitude_logprob", "direction": "increase"},
    {**TINY, "id": "other_model", "model": "smollm2-135m", "source": "gratitude", "heads": "21:1",
     "metric": "sentiment", "direction": "increase"},
]


def _has_chromium() -> bool:
    """The lookup the job itself uses (``$CAUSAL_HEADS_CHROMIUM``, then the usual names)."""
    from harness.core.errors import UserError
    from harness.report.browser import find_chromium

    try:
        find_chromium()
    except UserError:
        return False
    return True


def test_evidence_runs_one_models_claims_and_writes_every_artifact(tmp_path, cli):
    (tmp_path / "claims.toml").write_text(claims_toml(ROWS))
    proc = cli("harness", "evidence", "--model", "tiny-gpt2", "--out", "out", "--", "--claims", "claims.toml",
               cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]  # a claim that fails is a result
    out = tmp_path / "out"
    for name in ("evidence.html", "findings.json", "phase7_head_patching_report.md", "summary.md",
                 "plots/forest_identity.png", "plots/forest_gratitude_up.png"):
        assert (out / name).stat().st_size > 0, name
    doc = json.loads((out / "findings.json").read_text())
    by_id = {c["claim"]["id"]: c for c in doc["claims"]}
    assert set(by_id) == {"identity", "gratitude_up"}  # only the chosen model's claims
    assert doc["complete"] is True and doc["not_run"] == []
    assert by_id["identity"]["verdict"] == "supported"
    # one live line per claim while the first test evaluates them all, then the verdict table
    up = by_id["gratitude_up"]
    assert "claim 1/2 identity: effect +0.0000" in proc.stdout
    assert f"claim 2/2 gratitude_up: effect {up['effect']['mean']:+.4f}" in proc.stdout
    if _has_chromium():  # causal-heads browser opened the report: every summary row visible
        assert "2 of 2 claims' summary rows visible; screenshot " in proc.stdout
        assert (out / "evidence.png").read_bytes()[:4] == b"\x89PNG"
    else:
        assert "evidence: no screenshot: no Chromium found" in proc.stdout
    summary = (out / "summary.md").read_text()
    assert summary in proc.stdout and "2 claims: " in summary
    row = next(line for line in summary.splitlines() if line.startswith("| gratitude_up |"))
    assert row.startswith(f"| gratitude_up | {up['verdict']} | {up['effect']['mean']:+.4f} | "
                          f"[{up['effect']['ci_low']:+.4f}, {up['effect']['ci_high']:+.4f}] |")


def test_a_model_without_claims_or_a_broken_run_is_exit_3_with_the_reason_and_replaces_nothing(tmp_path, cli):
    """A broken run leaves the last run's outputs as they were (it once rewrote evidence.html
    before exiting 3: reliability class 3)."""
    (tmp_path / "claims.toml").write_text(claims_toml(ROWS))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "evidence.html").write_text("<title id=\"head-title\">evidence.html</title>last run")
    proc = cli("harness", "evidence", "--model", "tiny-llama-gqa", "--out", "out", "--", "--claims", "claims.toml",
               cwd=str(tmp_path))
    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "--model 'tiny-llama-gqa': no collected claim is about it" in proc.stdout + proc.stderr
    assert "models with claims: smollm2-135m, tiny-gpt2" in proc.stdout + proc.stderr
    assert f"evidence: the claims run broke (pytest exit 4); nothing replaced in {tmp_path / 'out'}" in proc.stderr
    proc = cli("harness", "evidence", "--model", "tiny-gpt2", "--out", "out", "--", "--claims", "claims.toml",
               "-k", "nothing_matches", cwd=str(tmp_path))
    assert proc.returncode == 3 and "nothing replaced" in proc.stderr, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["evidence.html"]  # no staging folder left
    assert (tmp_path / "out" / "evidence.html").read_text() == "<title id=\"head-title\">evidence.html</title>last run"


def test_a_model_whose_weights_are_absent_is_refused_before_running(tmp_path, monkeypatch, cli):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))  # no GPT-2 here, whatever this machine has
    proc = cli("harness", "evidence", "--model", "gpt2", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stderr == ("error: gpt2 weights are not in the local Hugging Face cache; provide them (see README) "
                           "or run with --model gpt2=/path/to/gpt2-dir\n")
    assert "$ " not in proc.stdout and not (tmp_path / "out").exists()


def test_sigterm_stops_the_job_and_its_pytest_child_and_leaves_the_old_outputs(tmp_path):
    """Reliability class 4: SIGTERM to ``causal-heads evidence`` once left its pytest child running,
    which wrote findings and HTML after the job had exited. Now: exit 143, no process of the run
    left, no temporary file, and the old outputs unchanged."""
    import os
    import signal
    import subprocess
    import sys
    import time

    rows = [{**r, "n_prompts": 12, "max_tokens": 30} for r in ROWS[:2]]  # long enough to be stopped mid-run
    (tmp_path / "claims.toml").write_text(claims_toml(rows))
    out = tmp_path / "out"
    out.mkdir()
    old = {"findings.json": '{"schema": "causal-heads/findings", "claims": []}',  # the job's own kinds
           "evidence.html": '<html><title id="head-title">evidence.html</title>old</html>',
           "summary.md": "# Evidence\n\nold summary\n"}
    for name, text in old.items():
        (out / name).write_text(text)
    job = subprocess.Popen([sys.executable, "-m", "harness", "evidence", "--model", "tiny-gpt2", "--out", str(out), "--",
                            "--claims", "claims.toml"], cwd=str(tmp_path), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert job.stdout.readline().startswith("$ ")  # the pytest child has been started
    time.sleep(4)  # it is importing torch or evaluating claims; either way it must be stopped

    def of_this_run():
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    if str(out).encode() in fh.read():
                        found.append(pid)
            except OSError:
                pass
        return found

    assert of_this_run()
    job.send_signal(signal.SIGTERM)
    assert job.wait(timeout=120) == 143, job.stderr.read()[-3000:]
    assert of_this_run() == []
    assert sorted(p.name for p in out.iterdir()) == sorted(old)  # no staging folder, no .tmp file
    assert {name: (out / name).read_text() for name in old} == old
