"""The all-heads sweep equals patching one head at a time."""

from __future__ import annotations

import numpy as np
import pytest

from harness.sweep import reference_sweep, sweep

TARGETS = ["The train leaves at", "Hello there, how are", "Tell me about the weather in your town today."]
SOURCES = ["Thank you so much for your help, I am grateful", "Thanks!", "I really appreciate it, thank you"]


def test_sweep_equals_one_head_at_a_time(tiny_model):
    s = sweep(tiny_model, TARGETS, SOURCES, "gratitude")
    heads = [(layer, h) for layer in range(tiny_model.shape.n_layers) for h in range(tiny_model.shape.n_heads)]
    ref = reference_sweep(tiny_model, TARGETS, SOURCES, "gratitude", heads)
    got = np.stack([s.deltas[layer, h] for layer, h in heads])
    assert np.abs(got - ref).max() < 1e-3
    assert np.abs(ref).max() > 1e-2  # the patches do something, so the equality is not vacuous
    top = s.ranked()[0]
    assert top[2] == pytest.approx(got.mean(-1).max())


@pytest.mark.model
def test_sweep_equals_one_head_at_a_time_on_the_default_model(smollm2):
    heads = [(21, 1), (13, 6), (0, 0)]
    s = sweep(smollm2, TARGETS[:2], SOURCES[:2], "gratitude", layers=[0, 13, 21])
    ref = reference_sweep(smollm2, TARGETS[:2], SOURCES[:2], "gratitude", heads)
    got = np.stack([s.deltas[layer, h] for layer, h in heads])
    assert np.abs(got - ref).max() < 1e-3


def test_sweep_cli_writes_ranked_json_and_heatmap(cli, tmp_path):
    import json

    out = tmp_path / "s.json"
    proc = cli("harness.sweep", "--model", "tiny-llama-gqa", "--emotion", "gratitude", "--n-prompts", "4",
               "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["schema"] == "causal-heads/sweep" and len(doc["ranked"]) == 2 * 6
    means = [r["mean"] for r in doc["ranked"]]
    assert means == sorted(means, reverse=True)
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    bad = cli("harness.sweep", "--model", "tiny-gpt2", "--emotion", "gratitude", "--patch-mode", "v_only",
              "--output", str(tmp_path / "x.json"))
    assert bad.returncode == 2 and "implements only 'z'" in bad.stderr
