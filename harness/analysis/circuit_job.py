"""One head's circuit analysis as a job: model and prompts loaded, DLA, OV or QK run, the
document written with its plot.

``causal-heads circuit`` parses its options and calls :func:`run_circuit`; a notebook gets the
same result::

    from harness.analysis.circuit_job import run_circuit

    job = run_circuit("dla", "21:1", "gratitude", model="smollm2-135m")

The definitions (final norm scale frozen for DLA, the OV approximation, the QK parts) are in
:mod:`harness.analysis.circuit`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from harness.analysis.circuit import dla, ov, qk
from harness.core.errors import UserError
from harness.core.results import environment, file_stem
from harness.model.loading import ModelHandle, load_model
from harness.patch.heads import parse_head_spec
from harness.report.plots import circuit_plot, document_with_plot
from harness.run.prompts import load_emotion_prompts, load_prompt_set

SCHEMA = "causal-heads/circuit"
SCHEMA_VERSION = 1


@dataclass
class CircuitJob:
    """A finished analysis: its document (written to ``path``, the plot to ``png``)."""

    document: dict[str, Any]
    path: str
    png: str


def one_head(spec: str, handle: ModelHandle) -> tuple[int, int]:
    """``--head L:H`` as one (layer, head) of this model, or a UserError naming the value."""
    heads = parse_head_spec(spec).resolve(handle.shape.n_layers, handle.shape.n_heads, handle.name)
    if len(heads) != 1:
        raise UserError(f"--head {spec!r}: names {len(heads)} heads; a circuit analysis takes one (e.g. 21:1)")
    return heads[0]


def run_circuit(
    analysis: str,
    head_spec: str,
    emotion: str,
    *,
    model: str = "smollm2-135m",
    target: str = "neutral",
    n_prompts: int = 20,
    max_tokens: int = 30,
    seed: int = 0,
    placement: dict[str, Any] | None = None,
    output: str | None = None,
) -> CircuitJob:
    """Run ``analysis`` (dla, ov or qk) on one head and write the document to ``output`` (default
    ``results/circuits/<model>_<L>_<H>_<analysis>.json``) with its plot."""
    sources = load_emotion_prompts(emotion).head(n_prompts)
    targets = load_prompt_set(target).head(n_prompts)
    handle = load_model(model, **(placement or {}))
    layer, head = one_head(head_spec, handle)
    start = time.perf_counter()
    if analysis == "dla":
        result = dla(handle, targets, sources, emotion, layer, head, max_tokens=max_tokens, seed=seed)
    elif analysis == "ov":
        result = ov(handle, targets, sources, emotion, layer, head)
    else:
        result = qk(handle, targets, sources, emotion, layer, head, max_tokens=max_tokens, seed=seed)
    doc = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "analysis": analysis,
        "head": f"{layer}:{head}",
        "kv_head": head // handle.shape.group_size,
        "model": handle.provenance(),
        "emotion": emotion,
        "target": target,
        "n_prompts": len(targets),
        "max_tokens": max_tokens,
        "seconds": time.perf_counter() - start,
        **environment(),
        "result": result,
    }
    out = output or os.path.join("results", "circuits", f"{file_stem(handle.name)}_{layer}_{head}_{analysis}.json")
    png = document_with_plot(doc, out, circuit_plot)
    return CircuitJob(doc, out, png)
