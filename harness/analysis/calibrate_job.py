"""Calibration as a job: pools of the model's own unpatched continuations (generated, or read
back from an earlier calibration document), the A/A statistics on null datasets drawn from them,
and the versioned calibration document.

``causal-heads calibrate`` parses its options and calls these; a notebook gets the same result::

    from harness.analysis.calibrate_job import CalibrationSettings, generated_pools, run_calibration

    pools = generated_pools("smollm2-135m", pool=10)
    rows = run_calibration(pools, CalibrationSettings(datasets=1000))

The method is in :mod:`harness.analysis.calibrate`.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.analysis.calibrate import (
    READABLE_VERSIONS,
    SCHEMA,
    SCHEMA_VERSION,
    NullCalibration,
    calibrate,
    score_pool,
)
from harness.analysis.head_patching import generation_config, table_metrics
from harness.core.errors import UserError
from harness.core.results import command_line, environment, load_versioned, write_result
from harness.metrics import get_metric
from harness.metrics.next_token import keyword_tracks
from harness.model.loading import file_sha256, load_model
from harness.run.generation import generate
from harness.run.profiles import resolve_run_config
from harness.run.prompts import load_prompt_set


@dataclass
class Pools:
    """Scored continuations per metric (``[prompts][continuations]``), with what made them."""

    scores: dict[str, np.ndarray]
    settings: dict[str, Any]
    provenance: dict[str, Any]
    seed: int  # the datasets' seed (the generation's unless given)
    generation_seconds: float | None = None  # None: read back from a document


@dataclass(frozen=True)
class CalibrationSettings:
    """How the null datasets are drawn and tested (``causal-heads calibrate``'s options)."""

    samples: int = 1
    datasets: int = 1000
    alpha: float = 0.05
    shift: float = 0.0
    margin: float | None = None
    resamples: int = 2000


def generated_pools(
    model: str | None = None,
    *,
    profile: str | None = None,
    n_prompts: int | None = None,
    max_tokens: int | None = None,
    seed: int | None = None,
    pool: int = 10,
    metrics: list[str] | None = None,
    placement: dict[str, Any] | None = None,
) -> Pools:
    """Generate ``pool`` unpatched continuations per target prompt and score them (default: the
    seed's table metrics)."""
    profile = profile or "baseline"
    run = resolve_run_config(profile, {"n_prompts": n_prompts, "max_tokens": max_tokens, "seed": seed, "samples": pool})
    if not run.do_sample:
        raise UserError(
            f"profile {profile!r} decodes greedily: every continuation of a prompt would be "
            f"the same; calibration needs a sampling profile"
        )
    target_set = load_prompt_set(run.target)
    targets = target_set.head(run.n_prompts)
    gen_cfg = generation_config(run)
    t0 = time.perf_counter()
    handle = load_model(model or "smollm2-135m", **(placement or {}))
    fmt = handle.prompt_format if run.prompt_format == "model" else run.prompt_format
    print(
        f"{handle.name}: {len(targets)} {run.target} prompts × {pool} samples × {run.max_tokens} tokens, no patch",
        file=sys.stderr,
        flush=True,
    )
    result = generate(handle, targets, gen_cfg, prompt_format=fmt, track=keyword_tracks(handle.tokenizer))
    gen_s = time.perf_counter() - t0
    settings = {
        "model": handle.name,
        "run": run.to_dict(),
        "generation": gen_cfg.to_dict(),
        "prompt_format": fmt,
        "pool": pool,
    }
    provenance = {
        "model": handle.provenance(),
        **environment(),
        "prompt_file": {"path": target_set.path, "sha256": target_set.sha256},
    }
    return Pools(score_pool(result, metrics or table_metrics()), settings, provenance, run.seed, gen_s)


def stored_pools(path: str, metrics: list[str] | None = None, *, samples: int = 1, seed: int | None = None) -> Pools:
    """The scored continuations of an earlier calibration document, with its settings (nothing
    is unpickled: only a .json document is read)."""
    if not path.endswith(".json"):
        raise UserError(f"--pools {path!r}: must be a .json calibration document (pickles are never read)")
    doc = load_versioned(path, SCHEMA, READABLE_VERSIONS, "calibration")
    scores = _stored_scores(path, doc, metrics)
    width = min(p.shape[1] for p in scores.values())
    if width < 2 * samples:
        raise UserError(
            f"--samples {samples} is invalid: {path} holds {width} continuations per "
            f"prompt, at least 2 × samples are needed"
        )
    settings, provenance = doc.get("settings"), doc.get("provenance")
    run_seed = settings.get("run", {}).get("seed") if isinstance(settings, dict) else None
    stored_seed = settings.get("dataset_seed", run_seed) if isinstance(settings, dict) else None
    for ok, field_name, value, kind in (
        (isinstance(settings, dict), "settings", settings, "an object"),
        (isinstance(provenance, dict), "provenance", provenance, "an object"),
        (
            seed is not None or isinstance(stored_seed, int) and not isinstance(stored_seed, bool) and stored_seed >= 0,
            "settings.dataset_seed (or settings.run.seed)",
            stored_seed,
            "an integer >= 0",
        ),
    ):
        if not ok:
            raise UserError(
                f"{path}: field {field_name!r} = {value!r}: must be {kind} (write calibration "
                f"documents with causal-heads calibrate --output)"
            )
    assert isinstance(settings, dict) and isinstance(provenance, dict)  # checked just above
    provenance = {**provenance, "pools_from": {"path": path, "sha256": file_sha256(path)}}
    dataset_seed = seed if seed is not None else stored_seed
    assert isinstance(dataset_seed, int)  # checked above
    return Pools(scores, dict(settings), provenance, dataset_seed)


def _stored_scores(path: str, doc: dict, metrics: list[str] | None) -> dict[str, np.ndarray]:
    stored = doc.get("pools")
    if not isinstance(stored, dict) or not stored:
        raise UserError(f"{path}: has no pools of scores")
    for m in metrics or ():
        if m not in stored:
            raise UserError(f"metric {m!r} is not in {path}; it has: {', '.join(stored)}")
    scores: dict[str, np.ndarray] = {}
    for m in metrics or stored:
        try:
            pool = np.asarray(stored[m], dtype=float)
        except (TypeError, ValueError):
            pool = None
        if pool is None or pool.ndim != 2 or pool.shape[0] < 2 or not np.all(np.isfinite(pool)):
            raise UserError(f"{path}: pool {m!r} must be finite scores, [prompts >= 2][continuations]")
        scores[m] = pool
    return scores


def run_calibration(pools: Pools, settings: CalibrationSettings) -> list[NullCalibration]:
    """Each metric's null calibration: rejection rates and CI coverage on datasets drawn from its pool."""
    return [
        calibrate(
            pool,
            metric=m,
            lower=get_metric(m).lower,
            samples=settings.samples,
            datasets=settings.datasets,
            alpha=settings.alpha,
            shift=settings.shift,
            margin=settings.margin,
            seed=pools.seed,
            n_resamples=settings.resamples,
        )
        for m, pool in pools.scores.items()
    ]


@dataclass
class CalibrationReport:
    """The calibration's rows and what they say about the statistics."""

    rows: list[NullCalibration]
    liberal: list[str] = field(default_factory=list)  # "metric test": rejects more often than alpha
    narrow: list[str] = field(default_factory=list)  # "metric (coverage)": the CI undercovers

    @classmethod
    def of(cls, rows: list[NullCalibration]) -> CalibrationReport:
        liberal = [f"{r.metric} {t}" for r in rows for t in r.rejections if r.reading(t) == "too many rejections"]
        narrow = [f"{r.metric} ({r.coverage()[0]:.3f})" for r in rows if r.coverage_reading() == "undercovers"]
        return cls(rows, liberal, narrow)


def write_calibration(
    path: str, pools: Pools, settings: CalibrationSettings, rows: list[NullCalibration], wall_seconds: float
) -> None:
    """The versioned calibration document (atomically; its pools can be read back with ``--pools``)."""
    recorded = {
        **pools.settings,
        "samples": settings.samples,
        "datasets": settings.datasets,
        "alpha": settings.alpha,
        "shift": settings.shift,
        "margin": settings.margin,
        "bootstrap_resamples": settings.resamples,
        "dataset_seed": pools.seed,
    }
    write_result(
        {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": command_line(),
            "settings": recorded,
            "provenance": {**pools.provenance, "analysis": environment()},
            "pools": {m: p.tolist() for m, p in pools.scores.items()},
            "results": [r.to_dict() for r in rows],
            "generation_seconds": pools.generation_seconds,
            "wall_seconds": wall_seconds,
        },
        path,
    )
