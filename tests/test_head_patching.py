"""The seed's command end to end, its result document, and its bad input."""

from __future__ import annotations

import json
import math
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest

from harness.cli.patch import main
from harness.core.errors import UserError, run_cli
from harness.core.results import json_safe, write_result
from harness.run.profiles import RunConfig, resolve_run_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory, tiny_gpt2):
    path = tmp_path_factory.mktemp("tiny-gpt2-dir")
    tiny_gpt2.model.save_pretrained(path)
    tiny_gpt2.tokenizer.save_pretrained(path)
    return str(path)


def _run(cli, *args):
    return cli("harness.head_patching", *args)


def test_seed_command_on_a_local_gpt2_architecture_directory(cli, gpt2_dir, tmp_path, tiny_gpt2):
    out = tmp_path / "gpt2_gratitude_1_10.json"
    proc = _run(cli, "--model", gpt2_dir, "--profile", "baseline", "--head-spec", "1:10", "--emotion", "gratitude",
                "--max-tokens", "8", "--patch-mode", "pattern_v", "--n-prompts", "12", "--samples", "2",
                "--output", str(out), "--plots-dir", str(tmp_path / "plots"))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["schema"] == "causal-heads/head-patching" and doc["schema_version"] == 2
    s = doc["settings"]
    assert (s["heads"], s["patch_mode"], s["emotion"], s["n_prompts"]) == (["1:10"], "pattern_v", "gratitude", 12)
    assert s["generation"]["samples"] == 2 and s["generation"]["do_sample"] is True
    assert s["patch"]["alignment"] == "end" and s["prompt_format"] == "plain"
    prov = doc["provenance"]
    assert prov["model"]["weights_sha256"] == tiny_gpt2.weights_sha256
    assert prov["packages"]["transformer-lens"] == "4.3.0" and len(prov["git"]["commit"] or "x" * 40) == 40
    assert set(prov["prompt_files"]) == {"gratitude", "neutral"}
    assert len(doc["prompts"]) == 12
    for e in doc["prompts"]:
        assert len(e["baseline"]) == len(e["patched"]) == len(e["seeds"]) == 2
        sc = e["scores"]["gratitude_keywords"]
        assert sc["delta"] == pytest.approx(sum(sc["patched"]) / 2 - sum(sc["baseline"]) / 2)
    metrics = [r["metric"] for r in doc["summary"]]
    assert metrics == ["sentiment", "politeness", "anger_keywords", "apology_keywords", "gratitude_keywords",
                       "anger_logprob", "apology_logprob", "gratitude_logprob"]
    grat = next(r for r in doc["summary"] if r["metric"] == "gratitude_logprob")
    assert grat["baseline_mean"] < 0 and grat["prompts_changed"] == 12  # continuous: every prompt moves
    assert grat["prompts_up"] + grat["prompts_down"] == 12 and 0 < grat["sign_p"] <= 1
    for r in doc["summary"]:
        assert r["ci_low"] <= r["delta"] <= r["ci_high"] and r["n_prompts"] == 12
    assert (tmp_path / "plots" / f"{os.path.basename(gpt2_dir)}_gratitude_1_10_pattern_v.png").stat().st_size > 1000
    assert "gratitude_keywords" in proc.stdout and "95% CI" in proc.stdout


@pytest.mark.model
def test_seed_command_on_the_default_model(cli, tmp_path):
    out = tmp_path / "smollm2_gratitude_1_8.pkl"
    proc = _run(cli, "--model", "smollm2-135m", "--head-spec", "1:8,3:*", "--emotion", "gratitude",
                "--max-tokens", "10", "--patch-mode", "v_only", "--n-prompts", "6", "--output", str(out), "--no-plots")
    assert proc.returncode == 0, proc.stderr
    with open(out, "rb") as fh:
        doc = pickle.load(fh)  # our own file, written by this test's subprocess
    assert doc["settings"]["heads"] == ["1:8"] + [f"3:{h}" for h in range(9)]
    assert doc["settings"]["prompt_format"] == "chat" and len(doc["prompts"]) == 6
    assert doc["generations_identical"]["prompts"] < 6  # ten heads patched: the patch does something


def test_patching_with_the_same_source_as_target_changes_nothing(tmp_path, tiny_gpt2):
    """In sampled mode, a z patch from the target prompts themselves gives Δ = 0 everywhere."""
    from harness.analysis.head_patching import run_patching
    from harness.patch.hooks import PatchConfig
    from harness.run.generation import GenerationConfig
    from harness.run.prompts import load_prompt_set

    targets = load_prompt_set("neutral").head(6)
    doc = run_patching(tiny_gpt2, PatchConfig(((0, 3), (1, 10)), "z"), GenerationConfig(
        max_tokens=8, do_sample=True, batch_size=6), targets, targets, "plain")
    assert doc["generations_identical"] == {"prompts": 6, "of": 6}
    assert all(r["delta"] == 0 and r["ci_method"] == "degenerate" for r in doc["summary"])


def test_missing_gpt2_weights_exit_2(cli, tmp_path):
    proc = _run(cli, "--model", "org/absent-gpt2", "--head-spec", "1:10", "--emotion", "gratitude",
                "--output", str(tmp_path / "x.pkl"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "not on this machine" in proc.stderr and "--model /path/to/dir" in proc.stderr
    assert not (tmp_path / "x.pkl").exists()


@pytest.mark.parametrize("args, message", [
    (["--head-spec", "1-10"], "malformed head '1-10' in head spec '1-10'"),
    (["--head-spec", "40:1"], "head 40:1 is out of range for tiny-gpt2 (2 layers × 12 heads)"),
    (["--emotion", "gratitud"], "unknown emotion 'gratitud'. Did you mean 'gratitude'?"),
    (["--patch-mode", "pattern-v"], "unknown patch mode 'pattern-v'. Did you mean 'pattern_v'"),
    (["--alignment", "middle"], "unknown alignment 'middle'"),
    (["--profile", "baselin"], "unknown profile 'baselin'. Did you mean 'baseline'?"),
    (["--output", "result.csv"], "--output 'result.csv': the extension must be one of .json, .pkl"),
    (["--n-prompts", "500"], "--n-prompts 500 is invalid for prompt set 'neutral': it has 310 prompts"),
    (["--top-p", "0"], "top_p=0.0 is invalid: must be in (0, 1]"),
    (["--seed", "-1"], "seed=-1 is invalid: must be an integer >= 0"),
    (["--target", "gratitude", "--emotion", "anger", "--n-prompts", "0"], "--n-prompts 0 is invalid"),
    (["--patch-mode", "v_only", "--patch-generated"], "cannot be extended to generated positions"),
])
def test_bad_input_is_one_clear_line(capsys, tmp_path, args, message):
    base = {"--model": "tiny-gpt2", "--head-spec": "1:10", "--emotion": "gratitude",
            "--output": str(tmp_path / "r.json")}
    for flag, value in zip(args[::2], args[1::2]):
        if flag.startswith("--") and not value.startswith("--"):
            base[flag] = value
    argv = [x for kv in base.items() for x in kv] + [a for a in args if a == "--patch-generated"]
    with pytest.raises(SystemExit) as info:
        run_cli(main, argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not os.listdir(tmp_path)


def test_bad_input_through_a_real_process_has_no_traceback(cli, tmp_path):
    proc = _run(cli, "--model", "tiny-gpt2", "--head-spec", "1:99", "--emotion", "gratitude",
                "--output", str(tmp_path / "r.json"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: head 1:99 is out of range for tiny-gpt2 (2 layers × 12 heads)"


def test_ctrl_c_leaves_no_result_file(tmp_path):
    out = tmp_path / "r.json"
    env = dict(os.environ, PYTHONPATH=ROOT, HF_HUB_OFFLINE="1")
    # a shell's background job starts with SIGINT ignored, and Python then keeps ignoring it:
    # give the child the default disposition, as a terminal's foreground job has
    proc = subprocess.Popen([sys.executable, "-m", "harness.head_patching", "--model", "tiny-gpt2", "--head-spec",
                             "1:10", "--emotion", "gratitude", "--max-tokens", "200", "--samples", "8",
                             "--output", str(out), "--no-plots"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = proc.stderr.readline()
        while line and "generating" not in line:
            line = proc.stderr.readline()
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=120)[1]
    finally:
        proc.kill()
    assert proc.returncode == 130, rest
    assert "Traceback" not in rest and os.listdir(tmp_path) == []


def test_atomic_write_leaves_nothing_when_interrupted(tmp_path, monkeypatch):
    from harness.core import outputs

    def explode(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(outputs.os, "fsync", explode)  # half the file written when Ctrl-C lands
    with pytest.raises(KeyboardInterrupt):
        write_result({"a": 1}, str(tmp_path / "r.pkl"))
    assert os.listdir(tmp_path) == []


def test_nan_is_stored_as_null_in_json_and_kept_in_pickle(tmp_path):
    doc = {"x": float("nan"), "y": [1.0, float("inf")], "z": {"w": 2.5}}
    write_result(doc, str(tmp_path / "r.json"))
    write_result(doc, str(tmp_path / "r.pkl"))
    assert json.loads((tmp_path / "r.json").read_text()) == {"x": None, "y": [1.0, None], "z": {"w": 2.5}}
    with open(tmp_path / "r.pkl", "rb") as fh:
        assert math.isnan(pickle.load(fh)["x"])
    assert json_safe((1, float("-inf"))) == [1, None]
    assert oct(os.stat(tmp_path / "r.json").st_mode & 0o777) != oct(0o600)


# ---------------------------------------------------------------- profiles

def test_profile_precedence_cli_over_profile_over_defaults():
    cfg = resolve_run_config("greedy", {"samples": None, "max_tokens": 12, "seed": None})
    assert (cfg.do_sample, cfg.max_tokens, cfg.samples, cfg.top_k) == (False, 12, 1, RunConfig().top_k)
    assert resolve_run_config("sampled5", {}).samples == 5


@pytest.mark.parametrize("body, message", [
    ("[p]\nsampels = 3\n", "profile 'p': unknown key 'sampels'. Did you mean 'samples'"),
    ("[p]\nsamples = '3'\n", "profile 'p': samples = '3' must be of type int"),
    ("[p]\ndo_sample = 1\n", "profile 'p': do_sample = 1 must be of type bool"),
    ("[p\n", "not valid TOML"),
])
def test_bad_profiles_are_named(tmp_path, body, message):
    path = tmp_path / "profiles.toml"
    path.write_text(body)
    with pytest.raises(UserError, match=message.replace("?", "\\?").replace("(", "\\(")):
        resolve_run_config("p", {}, str(path))


def _fake_hf_cache(root, model_dir: str, repo: str = "gpt2") -> str:
    """A Hugging Face hub cache holding ``model_dir`` as ``repo`` (the layout a download leaves)."""
    import shutil

    commit = "0" * 40
    snap = root / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / commit
    shutil.copytree(model_dir, snap)
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text(commit)
    return str(root / "hub")


@pytest.mark.slow  # ~18 s: the seed command and claims end to end
def test_gpt2_from_the_hf_cache_runs_the_seed_command_and_the_seed_claims(cli, gpt2_dir, tmp_path, tiny_gpt2,
                                                                         monkeypatch):
    """`--model gpt2` with GPT-2's weights in the local HF cache (here a GPT-2-architecture stand-in
    under the name gpt2): the seed's command runs as written, and its claims are run, not skipped."""
    monkeypatch.setenv("HF_HUB_CACHE", _fake_hf_cache(tmp_path, gpt2_dir))
    out = tmp_path / "results" / "baseline" / "patching" / "head_patching" / "gpt2_gratitude_1_10.pkl"
    proc = _run(cli, "--model", "gpt2", "--profile", "baseline", "--head-spec", "1:10", "--emotion", "gratitude",
                "--max-tokens", "6", "--patch-mode", "pattern_v", "--n-prompts", "4", "--output", str(out),
                "--no-plots")
    assert proc.returncode == 0, proc.stderr
    with open(out, "rb") as f:
        doc = pickle.load(f)  # our own file, written by the command above
    model = doc["provenance"]["model"]
    assert model["name"] == "gpt2" and model["weights_sha256"] == tiny_gpt2.weights_sha256
    assert "gpt2" in model["source"]
    findings = tmp_path / "findings.json"
    proc = cli("pytest", os.path.join(ROOT, "causal_tests"), "-k", "seed_gpt2_v_only_equivalent", "--model", "gpt2",
               "--n-prompts", "6", "--findings", str(findings), "-p", "no:cacheprovider", "-q", "-m", "claim",
               timeout=900)
    assert "skipped" not in proc.stdout and proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    (claim,) = json.loads(findings.read_text())["claims"]
    assert claim["claim"]["id"] == "seed_gpt2_v_only_equivalent_to_pattern_v" and claim["error"] is None
    assert claim["model"]["weights_sha256"] == tiny_gpt2.weights_sha256 and claim["effect"]["n"] == 6


def test_an_output_that_is_one_of_the_runs_inputs_is_refused_before_any_work(tmp_path, monkeypatch,
                                                                              main_in_process):
    """Class 2 of the reliability issue: --output naming the prompt set the run reads replaced it;
    report --markdown naming the findings it renders replaced them. Both are one line, exit 2."""
    import shutil

    prompts = tmp_path / "prompts"
    shutil.copytree(os.path.join(ROOT, "prompts"), prompts)
    monkeypatch.setenv("CAUSAL_HEADS_PROMPTS", str(prompts))
    target = prompts / "neutral_prompts.json"
    before = target.read_bytes()
    proc = main_in_process("harness.head_patching", "--model", "tiny-gpt2", "--head-spec", "1:0", "--emotion",
                           "gratitude", "--max-tokens", "2", "--n-prompts", "4", "--no-plots",
                           "--output", str(target))
    assert proc.returncode == 2 and "is a file this run reads" in proc.stderr, proc.stderr
    assert target.read_bytes() == before
    findings = tmp_path / "f.json"
    findings.write_text('{"schema": "causal-heads/findings", "schema_version": 1, "claims": []}')
    proc = main_in_process("harness.cli.report", str(findings), "--markdown", str(findings), "--plots-dir",
                           str(tmp_path / "p"))
    assert proc.returncode == 2 and "--markdown" in proc.stderr and findings.read_text().startswith("{")
