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
