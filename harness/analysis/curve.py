"""Faithfulness curves: how much of a behaviour the top-k heads carry, for k along a range.

    causal-heads circuit curve --model smollm2-135m --emotion gratitude --rank-by sweep \
        --sweep causal_tests/discovery/smollm2-135m_gratitude.json --sizes 1,2,5,10,20,50

Heads are ranked on the discovery prompts (by a sweep document's mean Δ, or by attribution
patching run here), and for each size k the top-k heads are a circuit claim
(:mod:`harness.claims.circuit`) measured on the confirmation prompts (where the sets have a
split) under each ablation: its faithfulness F(k) with the 95% CI. All sizes and ablations are
one planned claims run (baselines generated once). The areas follow MIB (Mueller et al. 2025),
over the circuit's size as a share x = k / N of the model's N heads, with the empty circuit
(x = 0, its own F) and the whole model (x = 1, F = 1) as end points: CPR, the area under F(x)
(higher is better), and CMD, the area between F(x) and 1, ∫|1 − F(x)| dx (lower is better).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.analysis.attribution import attribution
from harness.analysis.sweep import load_sweep
from harness.claims.session import ClaimSession
from harness.claims.spec import Claim
from harness.core.errors import UserError
from harness.core.results import environment, file_stem
from harness.model.loading import load_model
from harness.report.plots import curve_plot, document_with_plot
from harness.run.prompts import load_prompt_set, other_split, selection_prompts

SCHEMA, SCHEMA_VERSION = "causal-heads/curve", 1
RANKINGS = ("sweep", "attribution", "elimination")
MAX_ELIMINATION_HEADS = 64  # elimination measures N(N+1)/2 circuits: for small models


@dataclass(frozen=True)
class CurveOptions:
    """What a curve measures (``causal-heads circuit curve``'s options)."""

    emotion: str
    sizes: tuple[int, ...]
    model: str = "smollm2-135m"
    target: str = "neutral"
    rank_by: str = "sweep"
    sweep: str | None = None  # the sweep document that ranks the heads (rank_by sweep)
    ablations: tuple[str, ...] = ("mean", "zero")
    n_prompts: int = 70
    max_tokens: int = 1  # the next-token log-mass, the quantity a sweep ranks on
    seed: int = 0
    placement: dict[str, Any] = field(default_factory=dict)


def ranked_heads(opts: CurveOptions) -> tuple[list[tuple[int, int]], str]:
    """Every head of the model, best first, and the split the ranking used."""
    if opts.rank_by == "sweep":
        if not opts.sweep:
            raise UserError("--rank-by sweep needs --sweep SWEEP.json (a sweep document of this model and emotion)")
        doc = load_sweep(opts.sweep)
        if doc["emotion"] != opts.emotion:
            raise UserError(f"--sweep {opts.sweep}: a sweep of {doc['emotion']!r}, not {opts.emotion!r}")
        rows = doc["ranked"]
        return [(int(a), int(b)) for a, b in (r["head"].split(":") for r in rows)], str(doc.get("split", "all"))
    if opts.rank_by == "elimination":
        return eliminate(opts)
    if opts.rank_by != "attribution":
        raise UserError(f"--rank-by {opts.rank_by!r}: one of {', '.join(RANKINGS)}")
    sources, targets, split = selection_prompts(opts.emotion, opts.target, opts.n_prompts)
    handle = load_model(opts.model, **opts.placement)
    result = attribution(handle, targets, sources, opts.emotion)
    return [(layer, head) for layer, head, *_ in result.ranked()], split


def eliminate(opts: CurveOptions) -> tuple[list[tuple[int, int]], str]:
    """Backward elimination by faithfulness on the discovery prompts: from the whole model, drop
    at each step the head whose removal keeps the circuit's F highest (under the first ablation);
    the heads ranked in reverse order of removal. Unlike a last-position screen it sees heads that
    act only through others (a previous-token head feeding an induction head's keys)."""
    handle = load_model(opts.model, **opts.placement)
    left = [(layer, h) for layer in range(handle.shape.n_layers) for h in range(handle.shape.n_heads)]
    if len(left) > MAX_ELIMINATION_HEADS:
        raise UserError(
            f"--rank-by elimination measures N(N+1)/2 circuits: {handle.name} has {len(left)} heads "
            f"(at most {MAX_ELIMINATION_HEADS}); rank by sweep or attribution"
        )
    sets = (load_prompt_set(opts.emotion), load_prompt_set(opts.target))
    split = "discovery" if all(ps.splits for ps in sets) else "all"
    n = min(opts.n_prompts, *(len(ps.split(split)) for ps in sets))
    removed: list[tuple[int, int]] = []
    while len(left) > 1:
        claims = [
            Claim(id=f"without_{a}_{b}", model=opts.model, kind="circuit",
                  heads=",".join(f"{x}:{y}" for x, y in left if (x, y) != (a, b)), patch_mode=opts.ablations[0],
                  source=opts.emotion, target=opts.target, metric=f"{opts.emotion}_logprob", direction="increase",
                  fraction=1.0, split=split, n_prompts=n, max_tokens=opts.max_tokens, seed=opts.seed, tier="fast")
            for a, b in left
        ]  # fmt: skip
        results = ClaimSession(claims, device=opts.placement.get("device", "cpu"),
                               dtype=opts.placement.get("dtype", "float32")).results()  # fmt: skip
        kept = {}
        for a, b in left:
            r = results[f"without_{a}_{b}"]
            if r.error or r.circuit is None:
                raise UserError(f"elimination: the circuit without {a}:{b}: {r.error}")
            kept[(a, b)] = r.circuit["ablations"][opts.ablations[0]]["faithfulness"]
        drop = max(left, key=lambda h: (np.nan_to_num(kept[h], nan=-np.inf), -h[0], -h[1]))
        left.remove(drop)
        removed.append(drop)
    return left + removed[::-1], split


def curve_claims(opts: CurveOptions, ranked: list[tuple[int, int]], split: str) -> list[Claim]:
    """One circuit claim per size and ablation: the top-k heads, measured on the other split."""
    confirm = other_split(split)
    available = min(len(load_prompt_set(n).split(confirm)) for n in (opts.emotion, opts.target))
    n = min(opts.n_prompts, available)
    out = []
    for k in opts.sizes:
        if not 1 <= k <= len(ranked):
            raise UserError(f"--sizes: {k} is not a circuit size of this model (1 to {len(ranked)} heads)")
        heads = ",".join(f"{a}:{b}" for a, b in ranked[:k])
        for mode in opts.ablations:
            out.append(
                Claim(
                    id=f"curve_{k}_{mode}",
                    model=opts.model,
                    kind="circuit",
                    heads=heads,
                    patch_mode=mode,
                    source=opts.emotion,
                    target=opts.target,
                    metric=f"{opts.emotion}_logprob",
                    direction="increase",
                    fraction=1.0,
                    split=confirm,
                    n_prompts=n,
                    max_tokens=opts.max_tokens,
                    seed=opts.seed,
                    tier="fast",
                )  # fmt: skip
            )
    return out


def areas(sizes: list[int], values: list[float], empty: float, n_heads: int) -> dict[str, float]:
    """MIB's CPR (area under F over x = k / N) and CMD (area between F and 1), with the empty
    circuit at x = 0 and the whole model (F = 1) at x = 1 as end points (trapezoids)."""
    x = np.array([0.0, *[k / n_heads for k in sizes], 1.0])
    f = np.array([empty, *values, 1.0])
    order = np.argsort(x, kind="stable")
    x, f = x[order], f[order]
    return {"cpr": float(np.trapezoid(f, x)), "cmd": float(np.trapezoid(np.abs(1.0 - f), x))}


def measure(claims: list[Claim], opts: CurveOptions, *, planned: bool = True) -> dict[str, dict[int, dict]]:
    """Each size's faithfulness per ablation: one planned claims run (or, ``planned`` False, one
    run per size: the benchmark's reference)."""
    groups = [claims] if planned else [[c for c in claims if c.id.startswith(f"curve_{k}_")] for k in opts.sizes]
    out: dict[str, dict[int, dict]] = {m: {} for m in opts.ablations}
    for group in groups:
        session = ClaimSession(group, device=opts.placement.get("device", "cpu"),
                               dtype=opts.placement.get("dtype", "float32"))  # fmt: skip
        for c in group:
            r = session.results()[c.id]
            if r.error:
                raise UserError(f"circuit of the top {c.id.split('_')[1]} heads: {r.error}")
            assert r.circuit is not None
            out[c.patch_mode][int(c.id.split("_")[1])] = r.circuit["ablations"][c.patch_mode]
    return out


def run_curve(opts: CurveOptions, output: str | None = None) -> tuple[dict[str, Any], str, str]:
    """Rank, measure every size under every ablation, write the document and its plot; returns
    the document, its path and the PNG's."""
    start = time.perf_counter()
    ranked, split = ranked_heads(opts)
    claims = curve_claims(opts, ranked, split)
    handle = load_model(opts.model, **opts.placement)
    measured = measure(claims, opts)
    n_heads = handle.shape.n_layers * handle.shape.n_heads
    per_mode = {}
    for mode, points in measured.items():
        sizes = sorted(points)
        empty = points[sizes[0]]["empty_faithfulness"]
        values = [points[k]["faithfulness"] for k in sizes]
        per_mode[mode] = {
            "points": [{"size": k, **{f: points[k][f] for f in ("faithfulness", "ci_low", "ci_high")}} for k in sizes],
            "empty": empty,
            **areas(sizes, values, empty, n_heads),
        }
    doc = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "model": handle.provenance(),
        "emotion": opts.emotion,
        "target": opts.target,
        "rank_by": opts.rank_by,
        "sweep": opts.sweep,
        "ranked_on": split,
        "measured_on": claims[0].split,
        "n_prompts": claims[0].n_prompts,
        "max_tokens": opts.max_tokens,
        "n_heads": n_heads,
        "top_heads": [f"{a}:{b}" for a, b in ranked[: max(opts.sizes)]],
        "ablations": per_mode,
        "seconds": time.perf_counter() - start,
        **environment(),
    }
    out = output or os.path.join("results", "curves", f"{file_stem(handle.name)}_{opts.emotion}_{opts.rank_by}.json")
    png = document_with_plot(doc, out, curve_plot)
    return doc, out, png


def bench_curve(opts: CurveOptions) -> dict[str, Any]:
    """A curve's sizes as one planned claims run vs one run per size (each with its own
    baselines), in this process: both times, their ratio, and whether every faithfulness and CI
    is identical."""
    ranked, split = ranked_heads(opts)
    claims = curve_claims(opts, ranked, split)
    load_model(opts.model, **opts.placement)  # loaded once, outside both timings
    start = time.perf_counter()
    planned = measure(claims, opts, planned=True)
    planned_s = time.perf_counter() - start
    start = time.perf_counter()
    separate = measure(claims, opts, planned=False)
    separate_s = time.perf_counter() - start
    return {
        "model": opts.model,
        "sizes": list(opts.sizes),
        "ablations": list(opts.ablations),
        "n_prompts": claims[0].n_prompts,
        "planned_s": planned_s,
        "separate_s": separate_s,
        "ratio": separate_s / planned_s,
        "identical": planned == separate,
    }
