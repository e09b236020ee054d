"""Benchmarks that report ratios against a reference run in the same process.

``python -m harness.bench sweep --model smollm2-135m --json`` times the all-heads sweep
(:mod:`harness.sweep`) against one full forward per head on the same prompts and heads,
and reports ``harness_s``, ``reference_s``, ``speedup`` and the largest difference.

``python -m harness.bench sweep-scaling --model smollm2-135m`` times the sweep alone over a grid
of prompt counts × layer counts (all heads of the first k layers), to show how its cost grows.

``python -m harness.bench generation --model smollm2-135m --batch 70 --max-tokens 30 --json``

Times greedy generation of one batch two ways, alternating, after one warm-up each:

- ``hf``: plain Hugging Face ``generate`` on the model exactly as loaded (hook points
  uninstalled, transformers' own ``sdpa`` attention);
- ``harness``: :func:`harness.generation.generate` with hook points installed and a no-op
  patch hook on ``blocks.0.attn.hook_z`` (so the hook path really runs at every step).

Prints medians, tokens per second (generated rows × decode steps / seconds, the same count
for both since they produce the same tokens) and ``ratio`` = harness / HF. Also reports
whether the two produced identical tokens. Not a test: speed is read, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch

from harness.errors import UserError, run_cli

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH_PROMPTS = os.path.join(HERE, os.pardir, "fixtures", "bench_prompts.json")


def _prompts(n: int) -> list[str]:
    with open(BENCH_PROMPTS, encoding="utf-8") as fh:
        prompts = json.load(fh)["prompts"]
    if n > len(prompts):
        raise UserError(f"--batch {n} is larger than the {len(prompts)} benchmark prompts in {BENCH_PROMPTS}")
    return prompts[:n]


def bench_generation(model: str, batch: int, max_tokens: int, repeats: int) -> dict:
    from harness.generation import GenerationConfig, generate
    from harness.hf_reference import reference_generate
    from harness.models import load_model

    handle = load_model(model)
    prompts = _prompts(batch)
    cfg = GenerationConfig(max_new_tokens=max_tokens, batch_size=batch)
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
        "benchmark": "generation", "model": handle.name, "weights_sha256": handle.weights_sha256,
        "batch": batch, "max_new_tokens": max_tokens, "decode_steps": steps, "repeats": repeats,
        "harness_s": med["harness"], "hf_generate_s": med["hf"],
        "harness_tokens_per_s": tokens / med["harness"], "hf_generate_tokens_per_s": tokens / med["hf"],
        "ratio": med["hf"] / med["harness"],
        "tokens_match": outputs["hf"] == outputs["harness"],
        "all_times_s": times, "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
    }


def bench_sweep(model: str, n_prompts: int, layers: list[int] | None, emotion: str) -> dict:
    """All heads of ``layers``: the batched, KV-reusing sweep vs one full forward per head."""
    from harness.models import load_model
    from harness.prompts import load_emotion_prompts, load_prompt_set
    from harness.sweep import reference_sweep, sweep

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
    return {"benchmark": "sweep", "model": handle.name, "emotion": emotion, "n_prompts": n_prompts,
            "layers": layers, "heads": len(heads), "harness_s": harness_s, "reference_s": reference_s,
            "speedup": reference_s / harness_s, "max_abs_diff": float(np.abs(got - ref).max()),
            "reference": "one full forward per head through harness.patching (z, last alignment)",
            "torch_threads": torch.get_num_threads()}


def bench_sweep_scaling(model: str, prompt_counts: list[int], layer_counts: list[int], emotion: str) -> dict:
    """How the sweep's time grows: all heads of the first ``k`` layers on the first ``n`` prompts."""
    from harness.models import load_model
    from harness.prompts import load_emotion_prompts, load_prompt_set
    from harness.sweep import sweep

    handle = load_model(model)
    targets, sources = load_prompt_set("neutral").prompts, load_emotion_prompts(emotion).prompts
    if max(prompt_counts) > min(len(targets), len(sources)) or max(layer_counts) > handle.shape.n_layers:
        raise UserError(f"--prompts/--layer-counts exceed the prompt sets ({len(targets)}) or the model's "
                        f"{handle.shape.n_layers} layers")
    sweep(handle, targets[:2], sources[:2], emotion, layers=[0])  # warm-up
    rows = []
    for n in prompt_counts:
        for k in layer_counts:
            start = time.perf_counter()
            sweep(handle, targets[:n], sources[:n], emotion, layers=range(k))
            seconds = time.perf_counter() - start
            rows.append({"n_prompts": n, "layers": k, "heads": k * handle.shape.n_heads, "seconds": seconds,
                         "ms_per_head_prompt": 1000 * seconds / (n * k * handle.shape.n_heads)})
    return {"benchmark": "sweep-scaling", "model": handle.name, "emotion": emotion, "rows": rows,
            "torch_threads": torch.get_num_threads()}


def _ints(text: str, flag: str, minimum: int = 1) -> list[int]:
    try:
        values = [int(x) for x in text.split(",")]
    except ValueError:
        raise UserError(f"{flag} {text!r}: expected comma-separated integers") from None
    if not values or min(values) < minimum:
        raise UserError(f"{flag} {text!r}: values must be >= {minimum}")
    return values


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.bench")
    sub = ap.add_subparsers(dest="what", required=True)
    g = sub.add_parser("generation", help="harness generate vs HF generate, same process")
    g.add_argument("--model", default="smollm2-135m")
    g.add_argument("--batch", type=int, default=70)
    g.add_argument("--max-tokens", type=int, default=30)
    g.add_argument("--repeats", type=int, default=3)
    g.add_argument("--json", action="store_true", help="print one JSON object")
    w = sub.add_parser("sweep", help="all-heads sweep vs one forward per head, same process")
    w.add_argument("--model", default="smollm2-135m")
    w.add_argument("--n-prompts", type=int, default=20)
    w.add_argument("--layers", default=None,
                   help="comma-separated layers (all their heads); default every third layer, whose heads "
                        "amortise the sweep's fixed cost (source capture, prefix) as a full sweep does")
    w.add_argument("--emotion", default="gratitude")
    w.add_argument("--json", action="store_true")
    sc = sub.add_parser("sweep-scaling", help="sweep time over prompt counts × layer counts")
    sc.add_argument("--model", default="smollm2-135m")
    sc.add_argument("--prompts", default="10,20,40,70", help="comma-separated prompt counts")
    sc.add_argument("--layer-counts", default="10,20,30", help="comma-separated counts of layers (from 0)")
    sc.add_argument("--emotion", default="gratitude")
    sc.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.what == "sweep-scaling":
        res = bench_sweep_scaling(args.model, _ints(args.prompts, "--prompts"),
                                  _ints(args.layer_counts, "--layer-counts"), args.emotion)
        if args.json:
            print(json.dumps(res, indent=1))
        else:
            print("prompts  layers  heads  seconds  ms per head·prompt")
            for r in res["rows"]:
                print(f"{r['n_prompts']:>7}  {r['layers']:>6}  {r['heads']:>5}  {r['seconds']:>7.1f}  "
                      f"{r['ms_per_head_prompt']:>8.2f}")
        return 0
    if args.what == "sweep":
        layers = None if args.layers is None else _ints(args.layers, "--layers", minimum=0)
        res = bench_sweep(args.model, args.n_prompts, layers, args.emotion)
        print(json.dumps(res, indent=1) if args.json else
              f"sweep {res['harness_s']:.1f} s, reference {res['reference_s']:.1f} s, speedup {res['speedup']:.1f}x")
        return 0
    if args.batch < 1 or args.max_tokens < 1 or args.repeats < 1:
        raise UserError("--batch, --max-tokens and --repeats must be >= 1")
    res = bench_generation(args.model, args.batch, args.max_tokens, args.repeats)
    if args.json:
        json.dump(res, sys.stdout, indent=1)
        print()
    else:
        print(f"harness {res['harness_tokens_per_s']:.1f} tok/s, HF generate "
              f"{res['hf_generate_tokens_per_s']:.1f} tok/s, ratio {res['ratio']:.3f}, "
              f"tokens match: {res['tokens_match']}")
    return 0


if __name__ == "__main__":
    run_cli(main)
