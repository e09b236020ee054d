"""The head screens as jobs: Δattention to an emotion's keyword tokens, or attribution patching,
ranked with bootstrap CIs, compared with a causal sweep, written as a document with its heatmap.

``causal-heads screen`` parses its options and calls :func:`run_screen`; a notebook gets the
same result::

    from harness.analysis.screen_job import ScreenOptions, run_screen

    job = run_screen(ScreenOptions(model="smollm2-135m", emotion="gratitude", method="attribution"))

The methods are in :mod:`harness.analysis.screen` and :mod:`harness.analysis.attribution`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from harness.analysis.attribution import agreement, attribution
from harness.analysis.screen import MIN_TARGETS_PER_DISTANCE, check_sweep_matches, compare_with_sweep, mean_ci, screen
from harness.analysis.sweep import load_sweep
from harness.core.errors import UserError
from harness.core.results import environment, file_stem
from harness.model.loading import ModelHandle, load_model
from harness.patch.modes import get_mode
from harness.report.plots import document_with_heatmap
from harness.run.prompts import selection_prompts

SCREEN_SCHEMA = "causal-heads/screen"
METHODS = ("attention", "attribution")


@dataclass(frozen=True)
class ScreenOptions:
    """What a screen runs on (``causal-heads screen``'s options)."""

    emotion: str
    model: str = "smollm2-135m"
    target: str = "neutral"
    n_prompts: int = 70
    split: str | None = None  # the prompts heads are screened on; None: discovery where the sets have one
    seed: int = 0  # the bootstrap's
    reference: str = "pooled"  # attention: comparable tokens pooled over target prompts, or paired
    method: str = "attention"  # or "attribution"
    patch_mode: str = "z"  # the patch attribution patching estimates
    sweep: str | None = None  # a sweep document of the same model and emotion to compare with
    placement: dict[str, Any] = field(default_factory=dict)  # device, dtype


@dataclass
class ScreenJob:
    """A finished screen: its document (written to ``path``, the heatmap to ``png``)."""

    document: dict[str, Any]
    path: str
    png: str

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.document["ranked"]


def default_output(model_name: str, emotion: str, method: str) -> str:
    suffix = "_attribution" if method == "attribution" else ""
    return os.path.join("results", "screens", f"{file_stem(model_name)}_{emotion}{suffix}.json")


def run_screen(opts: ScreenOptions, output: str | None = None) -> ScreenJob:
    """Screen every head of ``opts.model`` and write the document to ``output`` (default
    ``results/screens/<model>_<emotion>[_attribution].json``) with its heatmap."""
    sources, targets, split = selection_prompts(opts.emotion, opts.target, opts.n_prompts, opts.split)
    opts = replace(opts, split=split)
    if opts.method == "attention" and opts.patch_mode != "z":
        raise UserError(f"--patch-mode {opts.patch_mode}: only with --method attribution")
    get_mode(opts.patch_mode)
    sweep_doc = load_sweep(opts.sweep) if opts.sweep else None
    handle = load_model(opts.model, **opts.placement)
    if sweep_doc is not None:
        try:
            check_sweep_matches(sweep_doc, handle, opts.emotion)
        except ValueError as exc:
            raise UserError(f"--sweep {opts.sweep}: {exc}") from None
    out = output or default_output(handle.name, opts.emotion, opts.method)
    if opts.method == "attribution":
        return _attribution_job(opts, handle, sources, targets, sweep_doc, out)
    return _attention_job(opts, handle, sources, targets, sweep_doc, out)


def _attribution_job(
    opts: ScreenOptions,
    handle: ModelHandle,
    sources: tuple[str, ...],
    targets: tuple[str, ...],
    sweep_doc: dict | None,
    out: str,
) -> ScreenJob:
    """Ranked attribution-patching estimates with bootstrap CIs, heatmap, agreement with a sweep."""
    start = time.perf_counter()
    result = attribution(handle, targets, sources, opts.emotion, mode=opts.patch_mode)
    seconds = time.perf_counter() - start
    rows = result.ranked_rows(seed=opts.seed)
    comparison = None
    if sweep_doc is not None:
        causal = np.asarray(sweep_doc["deltas"], dtype=float)
        same = causal.shape == result.deltas.shape and sweep_doc.get("patch_mode", "z") == opts.patch_mode
        comparison = (
            agreement(result.deltas, causal).to_dict()
            if same
            else compare_with_sweep(result.deltas.mean(-1), sweep_doc)
        )
    doc = {
        "schema": SCREEN_SCHEMA,
        "schema_version": 2,
        "method": "attribution",
        "model": handle.provenance(),
        "emotion": opts.emotion,
        "target": opts.target,
        "n_prompts": len(targets),
        "split": opts.split,
        "patch_mode": opts.patch_mode,
        "alignment": "last",
        "measure": "estimated Δ next-token keyword log-prob of the sweep's patch: (z_new − z)·∂M/∂z at the "
        "final prompt position (attribution patching); see harness/analysis/attribution.py",
        "ci": "percentile bootstrap over target prompts",
        "seconds": seconds,
        **environment(),
        "ranked": rows,
        "versus_sweep": comparison,
        "deltas": result.deltas.tolist(),
        "baseline": result.baseline.tolist(),
    }
    png = document_with_heatmap(
        doc,
        out,
        result.deltas.mean(-1),
        f"{handle.name}: attribution estimate of Δ {opts.emotion} keyword log-prob ({opts.patch_mode}, last)",
        label="mean estimated Δ over prompts (nats)",
    )
    return ScreenJob(doc, out, png)


def _attention_job(
    opts: ScreenOptions,
    handle: ModelHandle,
    sources: tuple[str, ...],
    targets: tuple[str, ...],
    sweep_doc: dict | None,
    out: str,
) -> ScreenJob:
    """Ranked Δattention with bootstrap CIs, heatmap, rank agreement with a sweep."""
    start = time.perf_counter()
    try:
        result = screen(handle, sources, targets, opts.emotion, target=opts.target, reference=opts.reference)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    seconds = time.perf_counter() - start
    if len(result.used) < 2:
        raise UserError(f"only {len(result.used)} {opts.emotion} prompt(s) contain a keyword token; need 2")
    low, high = mean_ci(result, seed=opts.seed)
    rows = [
        {
            "rank": rank,
            "head": f"{layer}:{head}",
            "mean": mean,
            "ci_low": float(low[layer, head]),
            "ci_high": float(high[layer, head]),
            "emotion_mass": float(result.emotion_mass[layer, head].mean()),
            "neutral_mass": float(result.neutral_mass[layer, head].mean()),
        }
        for rank, (layer, head, mean) in enumerate(result.ranked(), 1)
    ]
    comparison = compare_with_sweep(result.deltas.mean(-1), sweep_doc) if sweep_doc is not None else None
    pooled = result.reference == "pooled"
    doc = {
        "schema": SCREEN_SCHEMA,
        "schema_version": 2,
        "model": handle.provenance(),
        "emotion": opts.emotion,
        "target": opts.target,
        "reference": result.reference,
        "split": opts.split,
        "n_used": len(result.used),
        "excluded_prompts": result.excluded,
        "excluded_no_keyword": result.no_keyword,
        "query_position": "last prompt position",
        "measure": "Δattention = attention mass on keyword tokens (emotion prompt) − mass on tokens at the "
        "same distances from the end of the text in "
        + ("the target prompts (mean over those that reach each distance)" if pooled else "the paired target prompt")
        + "; see harness/analysis/screen.py",
        "ci": (
            "percentile bootstrap resampling emotion and target prompts independently"
            if pooled
            else "BCa bootstrap over prompt pairs"
        ),
        "keyword_tokens": result.keyword_tokens,
        "clipped_tokens": result.clipped_tokens,
        "seconds": seconds,
        **environment(),
        "ranked": rows,
        "versus_sweep": comparison,
        "deltas": result.deltas.tolist(),
    }
    png = document_with_heatmap(  # the document and its heatmap go in place together
        doc,
        out,
        result.deltas.mean(-1),
        f"{handle.name}: Δattention to {opts.emotion} keywords ({result.reference} reference)",
        label=f"mean Δattention over {attention_unit(doc)}",
    )
    return ScreenJob(doc, out, png)


def attention_unit(doc: dict[str, Any]) -> str:
    """What an attention screen's mean is over: emotion prompts (pooled reference) or prompt pairs."""
    return "emotion prompts" if doc["reference"] == "pooled" else "prompt pairs"


def attention_reach(doc: dict[str, Any]) -> str:
    """How far the comparable tokens reach, for the count of prompts left out."""
    if doc["reference"] == "pooled":
        return f"the distances {MIN_TARGETS_PER_DISTANCE}+ {doc['target']} prompts reach"
    return f"the paired {doc['target']} prompt's length"
