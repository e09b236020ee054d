"""The research log's run as a job: the model loaded, the heads patched from emotion prompts into
target prompts during generation, scored, written as a versioned document with its plot.

``causal-heads patch`` (and ``python -m harness.head_patching``) check their options and call
:func:`run_patch_job`; a notebook gets the same document. What it measures is in
:mod:`harness.analysis.head_patching`.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.analysis.head_patching import SCHEMA, SCHEMA_VERSION, generation_config, run_patching
from harness.core.results import command_line, environment, file_stem, write_result
from harness.model.device import auto_batch_size, placement
from harness.model.loading import ModelHandle, load_model
from harness.patch.heads import HeadSpec
from harness.patch.hooks import PatchConfig
from harness.report.plots import head_effect_plot
from harness.run.generation import GenerationConfig
from harness.run.profiles import RunConfig
from harness.run.prompts import PromptSet

Progress = Callable[[int, str], tuple[Any, Callable[[], None]]]


@dataclass(frozen=True)
class PatchRequest:
    """One patching run: which heads, how, from which emotion, with the run's settings."""

    model: str
    spec: HeadSpec
    mode: str
    emotion: str
    run: RunConfig  # the resolved profile and flags
    source_set: PromptSet
    target_set: PromptSet


@dataclass
class PatchJob:
    document: dict[str, Any]
    path: str
    plot: str | None


def run_patch_job(
    req: PatchRequest,
    output: str,
    *,
    plots_dir: str | None = None,
    plots: bool = True,
    status: Callable[[str], None] = lambda m: None,
    progress: Progress | None = None,
) -> PatchJob:
    """Baseline and patched generations of ``req``, scored; the document written to ``output`` and
    (``plots``) the heads' effect plot to ``plots_dir`` (default ``results/<profile>/plots/heads``)."""
    run = req.run
    targets = req.target_set.head(run.n_prompts)
    sources = req.source_set.head(min(run.n_prompts, len(req.source_set.prompts)))
    gen_cfg = generation_config(run)
    place = placement(run.device, run.dtype)
    t0 = time.perf_counter()
    handle = load_model(req.model, device=place.device, dtype=place.dtype)
    if run.batch_size == "auto":
        run, gen_cfg = _auto_batch(run, gen_cfg, handle, targets)
    heads = req.spec.resolve(handle.shape.n_layers, handle.shape.n_heads, handle.name)
    patch = PatchConfig(heads, req.mode, run.alignment, run.patch_generated)
    fmt = handle.prompt_format if run.prompt_format == "model" else run.prompt_format
    kwargs = {} if progress is None else {"progress": progress}
    doc = run_patching(handle, patch, gen_cfg, sources, targets, fmt, status, **kwargs)
    doc.update(_settings_and_provenance(req, run, handle, patch, gen_cfg, fmt))
    doc["wall_seconds"] = time.perf_counter() - t0
    write_result(doc, output)
    status(f"wrote {output}")
    plot = None
    if plots:
        folder = plots_dir or os.path.join("results", run.profile, "plots", "heads")
        name = f"{file_stem(handle.name)}_{req.emotion}_{req.spec.slug}_{req.mode}.png"
        plot = head_effect_plot(doc, os.path.join(folder, name))
        status(f"wrote {plot}")
    return PatchJob(doc, output, plot)


def _auto_batch(
    run: RunConfig, gen_cfg: GenerationConfig, handle: ModelHandle, targets: tuple[str, ...]
) -> tuple[RunConfig, GenerationConfig]:
    """``--batch-size auto``: rows that fit half the device's free memory (recorded as a number)."""
    longest = max(len(handle.tokenizer(p).input_ids) for p in targets) + 64  # + a chat template
    vocab = handle.model.get_output_embeddings().weight.shape[0]
    rows = auto_batch_size(handle.shape, vocab, longest + run.max_tokens, handle.dtype, handle.device)
    return run.model_copy(update={"batch_size": rows}), gen_cfg.model_copy(update={"batch_size": rows})


def _settings_and_provenance(
    req: PatchRequest, run: RunConfig, handle: ModelHandle, patch: PatchConfig, gen_cfg: GenerationConfig, fmt: str
) -> dict[str, Any]:
    source_set, target_set = req.source_set, req.target_set
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command_line(),
        "settings": {
            "model": handle.name,
            "head_spec": req.spec.text,
            "heads": [f"{l}:{h}" for l, h in patch.heads],
            "patch_mode": patch.mode,
            "emotion": req.emotion,
            "n_prompts": len(target_set.head(run.n_prompts)),
            "patch": patch.to_dict(),
            "generation": gen_cfg.to_dict(),
            "run": run.to_dict(),
            "prompt_format": fmt,
            "pairing": "target prompt i <- source prompt i mod n_sources",
        },
        "provenance": {
            "model": handle.provenance(),
            **environment(),
            "prompt_files": {
                s.name: {"path": os.path.relpath(s.path), "sha256": s.sha256} for s in (source_set, target_set)
            },
        },
    }
