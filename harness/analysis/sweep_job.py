"""The sweep as a job: model and prompts loaded, every head swept, scored against attribution
patching, the top heads combined, the document and its heatmap written, claims written from it.

``causal-heads sweep`` parses its options and calls these; a notebook gets the same result::

    from harness.analysis.sweep_job import SweepOptions, run_sweep

    job = run_sweep(SweepOptions(model="smollm2-135m", emotion="gratitude"))
    job.rows[:5], job.path

The method itself (one forward per prompt, every head's final position recomputed) is in
:mod:`harness.analysis.sweep`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from harness.analysis.attribution import agreement, attribution
from harness.analysis.stability import selection_stability
from harness.analysis.sweep import SCHEMA, SCHEMA_VERSION, Sweep, above_rounding, claim_rows, combinations, sweep
from harness.claims.spec import claims_toml, load_claims
from harness.core.errors import UserError
from harness.core.results import atomic_write_text, environment, file_stem
from harness.model.loading import load_model
from harness.patch.modes import get_mode
from harness.report.plots import document_with_heatmap
from harness.run.prompts import load_prompt_set, other_split, prompt_hashes, selection_prompts


@dataclass(frozen=True)
class SweepOptions:
    """What a sweep runs on (``causal-heads sweep``'s options)."""

    emotion: str
    model: str = "smollm2-135m"
    patch_mode: str = "z"
    n_prompts: int = 70
    target: str = "neutral"
    seed: int = 0  # the bootstrap's
    combine: int = 4  # the top 2..K heads (CI above 0) patched together; 0 = off
    split: str | None = None  # the prompts heads are selected on; None: discovery where the sets have one
    bootstrap: int = 0  # prompt resamples for the selection's stability (harness.analysis.stability); 0 = off
    select_k: int = 3  # the selection whose stability is measured: the top k heads (as --claim-heads)
    placement: dict[str, Any] = field(default_factory=dict)  # device, dtype


class SweepBackend(Protocol):
    """Sweeps layers elsewhere (:class:`harness.distributed.RayBackend`: sharded across actors)."""

    def sweep(
        self,
        model: str,
        targets: Sequence[str],
        sources: Sequence[str],
        emotion: str,
        *,
        mode: str,
        layers: Sequence[int],
        device: str,
        dtype: str,
    ) -> Sweep: ...


@dataclass
class SweepJob:
    """A finished sweep: its document (written to ``path``, the heatmap to ``png``), ranked rows,
    combinations and the agreement of attribution patching with it."""

    model: str  # as the options named it (written claims name it so)
    document: dict[str, Any]
    path: str
    png: str
    top: list[tuple[int, int]]  # heads whose CI lies above 0, best first

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.document["ranked"]

    @property
    def combos(self) -> list[dict[str, Any]]:
        return self.document["combinations"]


def default_output(model_name: str, emotion: str, patch_mode: str) -> str:
    suffix = "" if patch_mode == "z" else f"_{patch_mode}"
    return os.path.join("results", "sweeps", f"{file_stem(model_name)}_{emotion}{suffix}.json")


def run_sweep(opts: SweepOptions, output: str | None = None, backend: SweepBackend | None = None) -> SweepJob:
    """Sweep every head of ``opts.model`` (see the module docstring; ``backend``: where the layers
    are swept, None for here); write the document to ``output`` (default
    ``results/sweeps/<model>_<emotion>[_<mode>].json``) with its heatmap."""
    get_mode(opts.patch_mode)
    sources, targets, split = selection_prompts(opts.emotion, opts.target, opts.n_prompts, opts.split)
    handle = load_model(opts.model, **opts.placement)
    start = time.perf_counter()
    if backend is not None:  # layers sharded across its workers; the same numbers as here
        layers = list(range(handle.shape.n_layers))
        result = backend.sweep(
            opts.model, targets, sources, opts.emotion, mode=opts.patch_mode, layers=layers, **opts.placement
        )
    else:
        result = sweep(handle, targets, sources, opts.emotion, mode=opts.patch_mode)
    seconds = time.perf_counter() - start
    # the attribution-patching screen on the same prompts, scored against this sweep (how far to trust it)
    start = time.perf_counter()
    estimate = attribution(handle, targets, sources, opts.emotion, mode=opts.patch_mode)
    versus_attribution = {
        **agreement(estimate.deltas, result.deltas).to_dict(),
        "attribution_s": time.perf_counter() - start,
        "sweep_s": seconds,
    }
    rows = result.ranked_rows(seed=opts.seed)
    selection = None
    if opts.bootstrap:  # each head's share of prompt resamples whose top k it is in, and its rank interval
        stab = selection_stability(result.deltas, top_k=opts.select_k, resamples=opts.bootstrap, seed=opts.seed)
        for r in rows:
            r.update(stab.row(*map(int, r["head"].split(":"))))
        selection = {"resamples": opts.bootstrap, "top_k": opts.select_k, "rule": "top k by mean Δ above 1e-5"}
    # "top heads": best mean first, among those whose CI lies above 0 (combinations and claims alike)
    top = [(int(a), int(b)) for a, b in (r["head"].split(":") for r in rows if above_rounding(r))]
    combos = (
        combinations(handle, targets, sources, result, top[: opts.combine], seed=opts.seed)
        if min(opts.combine, len(top)) >= 2
        else []
    )
    out = output or default_output(handle.name, opts.emotion, opts.patch_mode)
    doc = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "model": handle.provenance(),
        "emotion": opts.emotion,
        "target": opts.target,
        "n_prompts": len(targets),
        "split": split,
        "patch_mode": opts.patch_mode,
        "alignment": "last",
        "metric": "next-token keyword log-prob mass",
        "seconds": seconds,
        **environment(),
        "ranked": rows,
        **({"selection": selection} if selection else {}),
        "combinations": combos,
        "attribution": versus_attribution,
        # what selected the heads: a claim evaluated on any of these prompts is exploratory
        "prompts_sha256": {"source": prompt_hashes(sources), "target": prompt_hashes(targets)},
        "deltas": result.deltas.tolist(),
        "baseline": result.baseline.tolist(),
    }
    png = document_with_heatmap(  # the document and its heatmap go in place together
        doc,
        out,
        result.deltas.mean(-1),
        f"{handle.name}: Δ {opts.emotion} keyword log-prob ({opts.patch_mode}, last)",
    )
    return SweepJob(opts.model, doc, out, png, top)


def write_sweep_claims(
    job: SweepJob,
    path: str,
    *,
    claim_heads: int = 3,
    random_heads: int = 6,
    claim_metric: str = "logprob",
    command: str = "",
    min_stability: float | None = None,
    claim_prompts: int | None = None,
) -> int:
    """Write the sweep's top heads as claim rows to ``path`` (headed by the ``command`` that made
    them), check that they load, and return how many (0: no head's CI lies above 0, nothing written).
    ``min_stability``: only heads selected in at least that share of the sweep's prompt resamples
    (the sweep must have run with ``bootstrap``). The claims are evaluated on the split the sweep
    did not select on (a discovery sweep's claims on the confirmation split), on ``claim_prompts``
    pairs (default: as many as the sweep, at most what that split has)."""
    doc = job.document
    confirm = other_split(doc.get("split", "all"))
    available = min(len(load_prompt_set(name).split(confirm)) for name in (doc["emotion"], doc["target"]))
    n_claim = min(doc["n_prompts"], available) if claim_prompts is None else claim_prompts
    if not 2 <= n_claim <= available:
        raise UserError(f"--claim-prompts {n_claim}: the {confirm} split has {available} prompt pairs (at least 2)")
    rows = job.rows
    if min_stability is not None:
        if "selection" not in doc:
            raise UserError("--min-stability needs the selection's stability: run the sweep with --bootstrap B")
        rows = [r for r in rows if r["selected_share"] >= min_stability]
    claims = claim_rows(
        job.model,
        doc["emotion"],
        doc["target"],
        n_claim,
        rows,
        job.combos,
        n_heads=claim_heads,
        random_heads=random_heads,
        source_file=job.path,
        weights=doc["model"].get("weights_sha256", ""),
        mode=doc["patch_mode"],
        claim_metric=claim_metric,
        split=confirm,
    )
    if not claims:
        return 0
    header = (
        f"Generated by `{command}`\non {time.strftime('%Y-%m-%d', time.gmtime())} from the sweep in "
        f"{job.path}. Do not edit by hand: rerun the command.\n"
        f"Loaded by the claims suite next to claims.toml (all tier slow)."
    )
    atomic_write_text(path, claims_toml(claims, header))
    load_claims(path)  # what we wrote must load
    return len(claims)
