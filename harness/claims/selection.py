"""Exploratory or confirmatory: a claim's evaluation prompts against the prompts that selected it.

A claim written by ``sweep --write-claims`` names its discovery record (``selected_on``: the
sweep document, which lists the sha256 of every prompt it ranked heads on). Evaluating the claim
on any of those prompts is selection and confirmation on one data set ("double dipping",
Kriegeskorte et al. 2009): such a claim is *exploratory*. It is labelled so (a data warning in
every output), and corrected in a family of its own (:func:`harness.claims.family.correct_family`),
so that it neither passes as a confirmation nor dilutes the confirmatory family. Evaluated on
prompts the discovery never saw, it is *confirmatory*. A claim without ``selected_on`` carries no
label (nothing records what selected it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from harness.claims.spec import Claim
from harness.core.errors import UserError
from harness.run.prompts import prompt_hashes

EXPLORATORY, CONFIRMATORY = "exploratory", "confirmatory"


def _locate(claim: Claim) -> str:
    """``selected_on`` as written, or relative to the claims file's folder when that is where it is."""
    path = claim.selected_on
    beside = os.path.join(os.path.dirname(claim.file), path) if claim.file and not os.path.isabs(path) else path
    return beside if os.path.isfile(beside) else path


def _discovery_document(claim: Claim, path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError) as exc:
        raise UserError(
            f"claim {claim.id!r}: selected_on {claim.selected_on!r}: cannot read the discovery record "
            f"({type(exc).__name__}: {exc}); without it the claim cannot be told exploratory or confirmatory"
        ) from None
    hashes = doc.get("prompts_sha256") if isinstance(doc, dict) else None
    if not isinstance(hashes, dict) or not all(isinstance(hashes.get(k, []), list) for k in ("source", "target")):
        raise UserError(
            f"claim {claim.id!r}: selected_on {claim.selected_on!r} does not list the prompts that selected it "
            "(field prompts_sha256; sweeps written since 2026-12-04 do): rerun the sweep"
        )
    return doc


def discovery_effect(claim: Claim, doc: dict[str, Any]) -> dict[str, Any] | None:
    """What the discovery measured for the claim's heads (None when it did not measure them): a
    single head's sweep row (mean Δ of the next-token metric, its CI, and where the sweep ran
    with ``--bootstrap``, the share of prompt resamples that selected it); several heads: their
    combination patched together; with ``versus`` the best single head, the combination's gain."""
    heads = claim.heads
    if claim.kind == "circuit":  # its quantity (faithfulness) is not one the sweep measured
        return None
    if "," not in heads:
        row = next((r for r in doc.get("ranked", []) if r.get("head") == heads), None)
        if row is None or claim.versus is not None:
            return None
        keys = ("mean", "ci_low", "ci_high", "selected_share", "rank_interval", "rank")
        return {"heads": heads, "metric": doc.get("metric"), **{k: row[k] for k in keys if k in row}}
    combo = next((c for c in doc.get("combinations", []) if c.get("heads") == heads), None)
    if combo is None:
        return None
    if claim.versus is None:
        return {
            "heads": heads,
            "metric": doc.get("metric"),
            "mean": combo["mean"],
            "ci_low": combo["ci_low"],
            "ci_high": combo["ci_high"],
        }
    if claim.versus.heads != combo.get("best_single"):
        return None
    return {
        "heads": f"{heads} vs {claim.versus.heads}",
        "metric": doc.get("metric"),
        "mean": combo["gain_over_best"],
        "ci_low": combo["gain_ci_low"],
        "ci_high": combo["gain_ci_high"],
    }


def selection(claim: Claim, targets: Sequence[str], sources: Sequence[str]) -> dict[str, Any] | None:
    """The claim's label against its discovery record (None without ``selected_on``): how many of
    the prompts it is evaluated on (targets and sources) the discovery used."""
    if not claim.selected_on:
        return None
    path = _locate(claim)
    doc = _discovery_document(claim, path)
    found = {str(h) for k in ("source", "target") for h in doc["prompts_sha256"].get(k, [])}
    used = set(prompt_hashes([*targets, *sources]))
    overlap = len(used & found)
    effect = discovery_effect(claim, doc)
    return {
        "document": claim.selected_on,
        "overlap": overlap,
        "prompts": len(used),
        "label": EXPLORATORY if overlap else CONFIRMATORY,
        **({"discovery": effect} if effect else {}),
    }


def is_exploratory(record: dict[str, Any] | None) -> bool:
    return record is not None and record.get("label") == EXPLORATORY
