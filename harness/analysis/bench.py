"""Benchmarks that report ratios against a reference run in the same process.

``python -m harness bench sweep --model smollm2-135m --json`` times the all-heads sweep
(:mod:`harness.analysis.sweep`) against one full forward per head on the same prompts and heads,
and reports ``harness_s``, ``reference_s``, ``speedup`` and the largest difference.

``python -m harness bench sweep-scaling --model smollm2-135m`` times the sweep alone over a grid
of prompt counts × layer counts (all heads of the first k layers), to show how its cost grows.

``python -m harness bench claims --model smollm2-135m --n-prompts 20 --random-heads 2 --json``
generates every run the shipped claims about the model need (``causal_tests/claims.toml``, each
claim at ``--n-prompts``, claims with a random-head control at ``--random-heads``) twice in one
process: planned (:func:`harness.claims.execute.execute`: the layers below each patch computed once per
group, :mod:`harness.run.shared`) and arm by arm (each run alone, as before the planner). It
reports ``planned_s``, ``arm_by_arm_s``, ``speedup``, ``identical`` (every run's tokens equal)
and the split: per shared layer, the arms, their seconds both ways, the share of rows that
diverged from the baseline, the steps those rows were fed their own tokens (``diverged_steps``)
and the lower-layer row computations their distinct continuations took (``side_rows``).

``python -m harness bench generation --model smollm2-135m --batch 70 --max-tokens 30 --json``

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
import tempfile
import time

import numpy as np
import torch

from harness.analysis.attribution import agreement, attribution
from harness.analysis.sweep import reference_sweep, sweep
from harness.claims.execute import Execution, Executor, execute
from harness.claims.run_cache import CacheStats, RunCache
from harness.claims.session import ClaimSession
from harness.claims.spec import load_claims
from harness.core.errors import UserError
from harness.core.memory import peak_rss_mb, reset_peak
from harness.core.results import REPO_ROOT
from harness.model.loading import load_model
from harness.model.names import act_name
from harness.model.store import ModelStore
from harness.run.generation import GenerationConfig, GenerationResult, HookList, generate
from harness.run.hf_reference import reference_generate
from harness.run.prompts import load_emotion_prompts, load_prompt_set

BENCH_PROMPTS = os.path.join(REPO_ROOT, "fixtures", "bench_prompts.json")


def _shipped_claims(model: str, claims_file: str | None, **changes: int) -> list:
    path = claims_file or os.path.join(REPO_ROOT, "causal_tests", "claims.toml")
    claims = [c for c in load_claims(path) if c.model == model]
    if not claims:
        raise UserError(f"{path} has no claims about model {model!r}")
    return [c.replace(**{k: min(v, getattr(c, k)) for k, v in changes.items()}) for c in claims]


def _verdicts(results: dict) -> dict:
    """Each claim's record without its timing, each field as JSON text (what must be equal between
    two evaluations; as text, an undefined dz (NaN) equals itself)."""
    return {
        cid: {k: json.dumps(v, sort_keys=True) for k, v in r.to_dict().items() if k != "seconds"}
        for cid, r in results.items()
    }


def bench_cache(model: str, n_prompts: int | None = None, claims_file: str | None = None) -> dict:
    """The shipped claims about ``model`` evaluated twice on one loaded model with an empty run
    cache in a temporary folder: cold (every run generated and stored) and warm (every run read).
    Times each evaluation (runs and statistics; the model loads before, untimed) and says whether
    the two gave identical results."""
    claims = _shipped_claims(model, claims_file, **({"n_prompts": n_prompts} if n_prompts else {}))
    models = ModelStore()
    out: dict = {"model": model, "claims": len(claims)}
    with tempfile.TemporaryDirectory(prefix="causal-heads-bench-cache-") as root:
        cache = RunCache(root)
        timed = []
        for phase in ("cold", "warm"):
            session = ClaimSession(claims, models=models, cache=cache)
            session.plan()  # resolving loads the model (not timed)
            cache.stats = CacheStats()
            start = time.perf_counter()
            results = session.results()
            out[f"{phase}_s"] = time.perf_counter() - start
            out[f"{phase}_cache"] = cache.stats.to_dict()
            timed.append(_verdicts(results))
        out["runs"] = out["cold_cache"]["stored"]
        out["cache_mb"] = round(cache.info()["bytes"] / 2**20, 2)
    out["warm_share"] = out["warm_s"] / out["cold_s"]
    out["differences"] = [
        f"{cid}: {key}" for cid, r in timed[0].items() for key in r if r[key] != timed[1][cid].get(key)
    ]
    out["identical"] = not out["differences"]
    return out


def bench_claims(model: str, n_prompts: int, random_heads: int, claims_file: str | None = None) -> dict:
    """Planned vs arm-by-arm generation of the runs the shipped claims about ``model`` need."""
    claims = [
        c.replace(random_heads=random_heads) if c.random_heads else c
        for c in _shipped_claims(model, claims_file, n_prompts=n_prompts)
    ]
    session = ClaimSession(claims)
    plan = session.plan()  # resolving loads the model (not timed)
    reset_peak()
    start = time.perf_counter()
    planned = execute(plan, session.models)
    planned_s = time.perf_counter() - start
    peak_mb = peak_rss_mb()

    alone, executor = Execution(), Executor(session.models)  # the same loaded model
    per_run: dict = {}
    start = time.perf_counter()
    for run in plan.runs:
        t0 = time.perf_counter()
        executor.alone(run, alone)
        per_run[run.key] = time.perf_counter() - t0
    arm_by_arm_s = time.perf_counter() - start

    keys = [run.key for run in plan.runs]
    compared = [_compare_runs(planned[k], alone[k]) for k in keys]
    mismatched = [k for k, c in zip(keys, compared, strict=True) if c["rows"]]
    split: dict[int, dict] = {}
    for g, shares in zip(plan.groups, planned.sharing, strict=True):
        for arm, share in zip(g.arms, shares, strict=True):
            row = split.setdefault(
                share["layer"],
                {
                    "arms": 0,
                    "planned_s": 0.0,
                    "arm_by_arm_s": 0.0,
                    "diverged": [],
                    "diverged_steps": 0,
                    "side_rows": 0.0,
                },
            )
            row["arms"] += 1
            row["diverged_steps"] += share["diverged_steps"]
            row["side_rows"] += share["side_rows"]
            row["planned_s"] += share["seconds"]
            row["arm_by_arm_s"] += per_run[arm.key]
            row["diverged"].append(share["diverged"])
    baselines_s = sum(per_run[g.baseline.key] for g in plan.groups)
    return {
        "model": model,
        "claims": len(claims),
        "n_prompts": n_prompts,
        "random_heads": random_heads,
        "groups": len(plan.groups),
        "runs": len(keys),
        "planned_s": planned_s,
        # resident memory: its peak while the planned runs were generated (model loaded before)
        "peak_rss_mb": round(peak_mb, 1),
        "arm_by_arm_s": arm_by_arm_s,
        "speedup": arm_by_arm_s / planned_s,
        "identical": not mismatched,
        "mismatched_runs": len(mismatched),
        # every row whose tokens differ, with the step of its first differing token (none expected:
        # the planned path keeps each row's arithmetic; a flip would show here, never pass silently)
        "mismatched_rows": [{"run": i, **row} for i, c in enumerate(compared) for row in c["rows"]],
        "max_tracked_logprob_diff": max((c["max_tracked_diff"] for c in compared), default=0.0),
        "baselines_arm_by_arm_s": baselines_s,
        "split_by_shared_layers": {
            str(layer): {**row, "diverged": float(np.mean(row["diverged"]))} for layer, row in sorted(split.items())
        },
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
        },
    }


def _compare_runs(a: GenerationResult, b: GenerationResult) -> dict:
    """Rows of two runs of the same prompts whose tokens differ (prompt, sample, first differing
    step), and the largest difference of their tracked log-probs over the tokens both generated."""
    rows, gap = [], 0.0
    for g, h in zip(a.generations, b.generations, strict=True):
        if g.token_ids != h.token_ids:
            step = next((i for i, (x, y) in enumerate(zip(g.token_ids, h.token_ids)) if x != y), None)
            if step is None:
                step = min(len(g.token_ids), len(h.token_ids))
            rows.append({"prompt": g.prompt_index, "sample": g.sample_index, "step": step})
            continue
        for name, values in g.tracked.items():
            gap = max(gap, max((abs(x - y) for x, y in zip(values, h.tracked[name], strict=True)), default=0.0))
    return {"rows": rows, "max_tracked_diff": gap}


def _prompts(n: int) -> list[str]:
    with open(BENCH_PROMPTS, encoding="utf-8") as fh:
        prompts = json.load(fh)["prompts"]
    if n > len(prompts):
        raise UserError(f"--batch {n} is larger than the {len(prompts)} benchmark prompts in {BENCH_PROMPTS}")
    return prompts[:n]


def bench_generation(
    model: str, batch: int, max_tokens: int, repeats: int, device: str = "cpu", dtype: str = "float32"
) -> dict:
    handle = load_model(model, device=device, dtype=dtype)
    prompts = _prompts(batch)
    cfg = GenerationConfig(max_tokens=max_tokens, batch_size=batch)
    noop: HookList = [(act_name("z", 0), lambda z, hook: z)]
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
        "device": handle.device,
        "dtype": handle.dtype,
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


def bench_attribution(model: str, n_prompts: int, emotion: str) -> dict:
    """Attribution patching (one forward + backward) vs the causal sweep over every head, in one
    process on the same prompts, and how well the estimate ranks the heads (Spearman ρ of the
    per-head means, top-10 overlap, per head × prompt sign agreement)."""

    handle = load_model(model)
    targets = load_prompt_set("neutral").head(n_prompts)
    sources = load_emotion_prompts(emotion).head(n_prompts)
    attribution(handle, targets[:2], sources[:2], emotion)  # warm-up
    start = time.perf_counter()
    estimate = attribution(handle, targets, sources, emotion)
    attribution_s = time.perf_counter() - start
    start = time.perf_counter()
    causal = sweep(handle, targets, sources, emotion)
    sweep_s = time.perf_counter() - start
    agree = agreement(estimate.deltas, causal.deltas)
    return {
        "benchmark": "attribution",
        "model": handle.name,
        "emotion": emotion,
        "n_prompts": n_prompts,
        "heads": handle.shape.n_layers * handle.shape.n_heads,
        "attribution_s": attribution_s,
        "sweep_s": sweep_s,
        "ratio": sweep_s / attribution_s,
        "spearman": agree.spearman_rho,
        **{k: v for k, v in agree.to_dict().items() if k != "spearman_rho"},
        "reference": "the causal sweep (z, last alignment; harness.analysis.sweep) on the same prompts",
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


def bench_precision(model: str, dtype: str, n_prompts: int, max_tokens: int, device: str = "cpu") -> dict:
    """The same generations in float32 and in ``dtype``: the share of rows whose tokens are equal
    (greedy and sampled, same seeds), where the first differing token falls, and the times."""
    prompts = load_prompt_set("neutral").head(n_prompts)
    out: dict = {
        "benchmark": "precision",
        "model": model,
        "dtype": dtype,
        "device": device,
        "n_prompts": len(prompts),
        "max_tokens": max_tokens,
    }
    handles = {"float32": load_model(model, device=device), dtype: load_model(model, device=device, dtype=dtype)}
    for label, cfg in (
        ("greedy", GenerationConfig(max_tokens=max_tokens)),
        ("sampled", GenerationConfig(max_tokens=max_tokens, do_sample=True, top_k=50, seed=0)),
    ):
        runs, seconds = {}, {}
        for name, handle in handles.items():
            start = time.perf_counter()
            runs[name] = [g.token_ids for g in generate(handle, prompts, cfg).generations]
            seconds[name] = time.perf_counter() - start
        first = [
            next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None if a == b else min(len(a), len(b)))
            for a, b in zip(runs["float32"], runs[dtype], strict=True)
        ]
        differing = [f for f in first if f is not None]
        out[label] = {
            "rows_equal": sum(f is None for f in first) / len(first),
            "median_first_difference": float(np.median(differing)) if differing else None,
            "float32_s": seconds["float32"],
            f"{dtype}_s": seconds[dtype],
        }
    return out
