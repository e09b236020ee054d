"""Benchmarks that report ratios against a reference run in the same process.

``python -m harness.bench sweep --model smollm2-135m --json`` times the all-heads sweep
(:mod:`harness.analysis.sweep`) against one full forward per head on the same prompts and heads,
and reports ``harness_s``, ``reference_s``, ``speedup`` and the largest difference.

``python -m harness.bench sweep-scaling --model smollm2-135m`` times the sweep alone over a grid
of prompt counts × layer counts (all heads of the first k layers), to show how its cost grows.

``python -m harness.bench generation --model smollm2-135m --batch 70 --max-tokens 30 --json``

Times greedy generation of one batch two ways, alternating, after one warm-up each:

- ``hf``: plain Hugging Face ``generate`` on the model exactly as loaded (hook points
  uninstalled, transformers' own ``sdpa`` attention);
- ``harness``: :func:`harness.run.generation.generate` with hook points installed and a no-op
  patch hook on ``blocks.0.attn.hook_z`` (so the hook path really runs at every step).

Prints medians, tokens per second (generated rows × decode steps / seconds, the same count
for both since they produce the same tokens) and ``ratio`` = harness / HF. Also reports
whether the two produced identical tokens. Not a test: speed is read, never asserted.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time

import numpy as np
import torch

from harness.analysis.sweep import reference_sweep, sweep
from harness.errors import UserError
from harness.model.loading import load_model
from harness.results import REPO_ROOT
from harness.run.generation import GenerationConfig, generate
from harness.run.hf_reference import reference_generate
from harness.run.prompts import load_emotion_prompts, load_prompt_set

BENCH_PROMPTS = os.path.join(REPO_ROOT, "fixtures", "bench_prompts.json")


def _prompts(n: int) -> list[str]:
    with open(BENCH_PROMPTS, encoding="utf-8") as fh:
        prompts = json.load(fh)["prompts"]
    if n > len(prompts):
        raise UserError(f"--batch {n} is larger than the {len(prompts)} benchmark prompts in {BENCH_PROMPTS}")
    return prompts[:n]


def bench_generation(model: str, batch: int, max_tokens: int, repeats: int) -> dict:

    handle = load_model(model)
    prompts = _prompts(batch)
    cfg = GenerationConfig(max_tokens=max_tokens, batch_size=batch)
    noop = [("blocks.0.attn.hook_z", lambda z, hook: z)]
    hooked = handle.hooked
    times: dict[str, list[float]] = {"hf": [], "harness": []}
    outputs: dict[str, list] = {}

    def run_hf():
        hooked.uninstall()
        rows, seconds = reference_generate(handle, prompts, handle.prompt_format, max_tokens)
        outputs["hf"] = rows
        return seconds

    def run_harness():
        hooked.install()
        start = time.perf_counter()
        res = generate(handle, prompts, cfg, hooks=noop)
        outputs["harness"] = [list(g.token_ids) for g in res.generations]
        return time.perf_counter() - start

    run_hf(), run_harness()  # warm-up
    for _ in range(repeats):
        times["hf"].append(run_hf())
        times["harness"].append(run_harness())
    steps = max(len(r) for r in outputs["hf"])
    tokens = batch * steps
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "benchmark": "generation",
        "model": handle.name,
        "weights_sha256": handle.weights_sha256,
        "batch": batch,
        "max_new_tokens": max_tokens,
        "decode_steps": steps,
        "repeats": repeats,
        "harness_s": med["harness"],
        "hf_generate_s": med["hf"],
        "harness_tokens_per_s": tokens / med["harness"],
        "hf_generate_tokens_per_s": tokens / med["hf"],
        "ratio": med["hf"] / med["harness"],
        "tokens_match": outputs["hf"] == outputs["harness"],
        "all_times_s": times,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def bench_sweep(model: str, n_prompts: int, layers: list[int] | None, emotion: str) -> dict:
    """All heads of ``layers``: the batched, KV-reusing sweep vs one full forward per head."""

    handle = load_model(model)
    layers = list(range(0, handle.shape.n_layers, 3)) if layers is None else layers
    bad = [layer for layer in layers if not 0 <= layer < handle.shape.n_layers]
    if bad:
        raise UserError(f"--layers: {bad} out of range for {handle.name} ({handle.shape.n_layers} layers)")
    targets = load_prompt_set("neutral").head(n_prompts)
    sources = load_emotion_prompts(emotion).head(n_prompts)
    heads = [(layer, h) for layer in layers for h in range(handle.shape.n_heads)]
    sweep(handle, targets[:2], sources[:2], emotion, layers=layers[:1])  # warm-up
    start = time.perf_counter()
    fast = sweep(handle, targets, sources, emotion, layers=layers)
    harness_s = time.perf_counter() - start
    start = time.perf_counter()
    ref = reference_sweep(handle, targets, sources, emotion, heads)
    reference_s = time.perf_counter() - start
    got = np.stack([fast.deltas[layer, h] for layer, h in heads])
    return {
        "benchmark": "sweep",
        "model": handle.name,
        "emotion": emotion,
        "n_prompts": n_prompts,
        "layers": layers,
        "heads": len(heads),
        "harness_s": harness_s,
        "reference_s": reference_s,
        "speedup": reference_s / harness_s,
        "max_abs_diff": float(np.abs(got - ref).max()),
        "reference": "one full forward per head through harness.patch.hooks (z, last alignment)",
        "torch_threads": torch.get_num_threads(),
    }


def bench_sweep_scaling(model: str, prompt_counts: list[int], layer_counts: list[int], emotion: str) -> dict:
    """How the sweep's time grows: all heads of the first ``k`` layers on the first ``n`` prompts."""

    handle = load_model(model)
    targets, sources = load_prompt_set("neutral").prompts, load_emotion_prompts(emotion).prompts
    if max(prompt_counts) > min(len(targets), len(sources)) or max(layer_counts) > handle.shape.n_layers:
        raise UserError(
            f"--prompts/--layer-counts exceed the prompt sets ({len(targets)}) or the model's "
            f"{handle.shape.n_layers} layers"
        )
    sweep(handle, targets[:2], sources[:2], emotion, layers=[0])  # warm-up
    rows = []
    for n in prompt_counts:
        for k in layer_counts:
            start = time.perf_counter()
            sweep(handle, targets[:n], sources[:n], emotion, layers=range(k))
            seconds = time.perf_counter() - start
            rows.append(
                {
                    "n_prompts": n,
                    "layers": k,
                    "heads": k * handle.shape.n_heads,
                    "seconds": seconds,
                    "ms_per_head_prompt": 1000 * seconds / (n * k * handle.shape.n_heads),
                }
            )
    return {
        "benchmark": "sweep-scaling",
        "model": handle.name,
        "emotion": emotion,
        "rows": rows,
        "torch_threads": torch.get_num_threads(),
    }
