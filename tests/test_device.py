"""Devices and precision: --device / --dtype / --batch-size auto, on every command and in pytest.

This machine has no GPU: the CUDA paths are checked for their errors here and run where a GPU is
lent (docs/how-to/run-on-gpu-and-ray.md says what was measured where)."""

from __future__ import annotations

import json

import pytest
import torch

from harness.core.errors import UserError
from harness.model.device import (
    MAX_AUTO_BATCH,
    auto_batch_size,
    bytes_per_row,
    parse_batch_size,
    parse_device,
    parse_dtype,
)
from harness.model.loading import load_model
from harness.run.generation import GenerationConfig, generate
from harness.run.hf_reference import reference_generate
from harness.run.prompts import load_prompt_set

NO_GPU = not torch.cuda.is_available()


def test_device_and_dtype_names_are_checked_before_any_work():
    assert parse_device("cpu") == "cpu" and parse_device(None) == "cpu"
    assert parse_device("auto") == ("cpu" if NO_GPU else "cuda:0")
    assert parse_dtype("bf16") == "bfloat16" and parse_dtype("FP32") == "float32" and parse_dtype(None) == "float32"
    for bad, words in [("tpu", "use one of"), ("cuda:x", "must be a number")]:
        with pytest.raises(UserError, match=words):
            parse_device(bad)
    with pytest.raises(UserError, match="--dtype 'int8': use one of float32, bfloat16, float16"):
        parse_dtype("int8")
    if NO_GPU:
        with pytest.raises(UserError, match="no CUDA GPU"):
            parse_device("cuda")
    assert parse_batch_size("auto") == "auto" and parse_batch_size("64") == 64
    for bad in ("0", "-3", "lots"):
        with pytest.raises(UserError, match="positive integer or auto"):
            parse_batch_size(bad)


def test_a_model_loads_in_bfloat16_with_the_fp32_weights_hash(tiny_llama):
    handle = load_model("tiny-llama-gqa", dtype="bfloat16")
    assert {p.dtype for p in handle.model.parameters()} == {torch.bfloat16}
    # rotary frequencies stay float32, as Hugging Face keeps them in a reduced-precision model
    assert all(b.dtype == torch.float32 for n, b in handle.model.named_buffers() if "inv_freq" in n)
    assert handle.weights_sha256 == tiny_llama.weights_sha256
    assert (handle.provenance()["device"], handle.provenance()["dtype"]) == ("cpu", "bfloat16")


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama-gqa"])
def test_greedy_generation_equals_hf_generate_in_the_same_reduced_precision(name):
    handle = load_model(name, dtype="bfloat16")
    prompts = load_prompt_set("neutral").head(6)
    ours = generate(handle, prompts, GenerationConfig(max_tokens=8), hooks=[])
    handle.hooked.uninstall()
    try:
        theirs, _ = reference_generate(handle, prompts, handle.prompt_format, 8)
    finally:
        handle.hooked.install()
    assert [list(g.token_ids) for g in ours.generations] == theirs
    # sampling draws on the CPU in float32: a bf16 run samples, and tracks log-probs, as fp32 does
    sampled = generate(handle, prompts, GenerationConfig(max_tokens=4, do_sample=True, seed=1), track={"a": [5, 6]})
    assert all(len(g.tracked["a"]) == len(g.token_ids) for g in sampled.generations)


def test_auto_batch_size_fits_the_free_memory(tiny_gpt2, monkeypatch):
    import harness.model.device as device

    shape = tiny_gpt2.shape
    per_row = bytes_per_row(shape, shape.vocab_size, 100, "float32")
    monkeypatch.setattr(device, "free_memory_bytes", lambda d: 40 * per_row)
    assert auto_batch_size(shape, shape.vocab_size, 100, "float32", "cpu") == 20  # half of it
    monkeypatch.setattr(device, "free_memory_bytes", lambda d: 10**15)
    assert auto_batch_size(shape, shape.vocab_size, 100, "float32", "cpu") == MAX_AUTO_BATCH
    monkeypatch.setattr(device, "free_memory_bytes", lambda d: 10)
    assert auto_batch_size(shape, shape.vocab_size, 100, "float32", "cpu") == 1
    assert bytes_per_row(shape, shape.vocab_size, 100, "bfloat16") < per_row


@pytest.mark.parametrize(
    "args",
    [
        ["harness.head_patching", "--model", "tiny-gpt2", "--head-spec", "1:0", "--emotion", "gratitude",
         "--output", "o.json", "--device", "tpu"],
        ["harness.head_patching", "--model", "tiny-gpt2", "--head-spec", "1:0", "--emotion", "gratitude",
         "--output", "o.json", "--dtype", "int4"],
        ["harness.head_patching", "--model", "tiny-gpt2", "--head-spec", "1:0", "--emotion", "gratitude",
         "--output", "o.json", "--batch-size", "0"],
        ["harness", "sweep", "--model", "tiny-gpt2", "--emotion", "gratitude", "--dtype", "half-ish"],
        ["harness", "evidence", "--model", "tiny-gpt2", "--out", "out", "--device", "gpu"],
    ],
    ids=["patch-device", "patch-dtype", "patch-batch", "sweep-dtype", "evidence-device"],
)
def test_bad_placement_options_give_one_line_and_exit_2(cli, tmp_path, monkeypatch, args):
    from conftest import run_main

    monkeypatch.chdir(tmp_path)
    # one real process (it proves no traceback reaches the terminal), the others in this one
    proc = cli(*args, cwd=str(tmp_path)) if args[:2] == ["harness", "evidence"] else run_main(*args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing written


def test_the_patch_command_runs_in_bfloat16_with_an_auto_batch(cli, tmp_path):
    out = tmp_path / "r.json"
    proc = cli("harness.head_patching", "--model", "tiny-gpt2", "--head-spec", "1:0", "--emotion", "gratitude",
               "--output", str(out), "--max-tokens", "4", "--n-prompts", "6", "--dtype", "bfloat16",
               "--batch-size", "auto", "--no-plots")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    settings = json.dumps(doc)
    assert '"dtype": "bfloat16"' in settings and '"batch_size": "auto"' not in settings


def test_pytest_takes_the_device_options_and_records_them(pytester):
    pytester.makefile(".toml", claims=(
        '[[claim]]\nid = "ident"\nmodel = "tiny-gpt2"\nheads = "1:0"\npatch_mode = "z"\nsource = "neutral"\n'
        'metric = "sentiment"\ndirection = "equivalent"\nmargin = 0.05\nn_prompts = 8\nmax_tokens = 4\n'
        'do_sample = false\n'
    ))
    res = pytester.runpytest("--claims", "claims.toml", "--dtype", "bfloat16", "--batch-size", "auto",
                             "--findings", "f.json", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=1)
    doc = json.loads((pytester.path / "f.json").read_text())
    assert '"dtype": "bfloat16"' in json.dumps(doc)
    bad = pytester.runpytest_subprocess("--claims", "claims.toml", "--device", "cuda:x")
    assert bad.ret == 2 and "must be a number" in str(bad.stderr) + str(bad.stdout)


@pytest.mark.slow
def test_the_shipped_sanity_claims_hold_in_bfloat16(cli, tmp_path):
    """The issue's check, as a user types it: ``pytest causal_tests -k sanity --dtype bfloat16``."""
    findings = tmp_path / "f.json"
    proc = cli("pytest", "causal_tests", "-k", "sanity", "--dtype", "bfloat16", "-p", "no:cacheprovider",
               "--findings", str(findings), "-q")
    assert proc.returncode == 0, proc.stdout[-3000:]
    by_id = {c["claim"]["id"]: c for c in json.loads(findings.read_text())["claims"]}
    assert by_id["sanity_identity_patch_equivalent_to_no_patch"]["verdict"] == "supported"
    assert by_id["sanity_identity_patch_equivalent_to_no_patch"]["model"]["dtype"] == "bfloat16"
