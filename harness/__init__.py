"""Causal hypothesis tests for attention heads: patched generation, paired statistics, evidence.

The packages, from the bottom layer up (each imports only from the layers below it; the
contracts are in pyproject.toml and checked by import-linter):

=====================  =================================================================
``harness.core.errors``      user errors and the one place that turns them into exit code 2
``harness.core.results``     result documents: provenance, NaN policy, atomic writes
``harness.stats``       pure, explicitly seeded statistics returning typed records
``harness.model``       model shape, offline loading and registry, hook points, tiny models
``harness.run``         prompt sets, templating, KV-cached generation, settings profiles
``harness.patch``       head specs, source capture, patch modes, interventions, patch hooks
``harness.metrics``     per-text and model-side metrics
``harness.claims``      the claim spec, the run session, verdicts and results
``harness.findings``    the findings document: schema, validating loader, regression
``harness.report``      markdown, HTML pieces, plots, the headless-browser check
``harness.analysis``    the seed's patching run, sweep, screen, calibration, benchmarks, jobs
``harness.pytest_plugin``  the pytest plugin (entry point ``pytest11``)
``harness.cli``         ``causal-heads <command>``
=====================  =================================================================

The public names below are imported on first use (PEP 562), so ``import harness`` is
cheap; this is the one place where imports are deferred for start-up time.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> module that defines it
_PUBLIC = {
    "load_model": "harness.model.loading",
    "weights_absent": "harness.model.loading",
    "ModelHandle": "harness.model.loading",
    "ModelShape": "harness.model.shape",
    "GenerationConfig": "harness.run.generation",
    "generate": "harness.run.generation",
    "parse_head_spec": "harness.patch.heads",
    "PatchConfig": "harness.patch.hooks",
    "register_mode": "harness.patch.modes",
    "register_intervention": "harness.patch.interventions",
    "Claim": "harness.claims.spec",
    "Condition": "harness.claims.spec",
    "load_claims": "harness.claims.spec",
    "load_claim_files": "harness.claims.spec",
    "with_overrides": "harness.claims.spec",
    "ClaimSession": "harness.claims.session",
    "ClaimResult": "harness.claims.result",
    "get_metric": "harness.metrics",
    "register_metric": "harness.metrics",
    "load_findings": "harness.findings.schema",
    "FindingsDocument": "harness.findings.schema",
    "load_document": "harness.findings.schema",
    "UserError": "harness.core.errors",
    "evaluate": "harness.analysis.evaluate",
    "Findings": "harness.analysis.evaluate",
    "RayBackend": "harness.distributed.ray_backend",
}

__all__ = [
    "__version__",
    "Claim",
    "ClaimResult",
    "ClaimSession",
    "Findings",
    "FindingsDocument",
    "Condition",
    "GenerationConfig",
    "ModelHandle",
    "ModelShape",
    "PatchConfig",
    "RayBackend",
    "UserError",
    "generate",
    "get_metric",
    "load_claim_files",
    "load_claims",
    "load_document",
    "load_findings",
    "load_model",
    "evaluate",
    "parse_head_spec",
    "register_intervention",
    "register_metric",
    "register_mode",
    "weights_absent",
    "with_overrides",
]

if TYPE_CHECKING:
    from harness.analysis.evaluate import Findings, evaluate
    from harness.claims.result import ClaimResult
    from harness.claims.session import ClaimSession
    from harness.claims.spec import (
        Claim,
        Condition,
        load_claim_files,
        load_claims,
        with_overrides,
    )
    from harness.core.errors import UserError
    from harness.distributed.ray_backend import RayBackend
    from harness.findings.schema import FindingsDocument, load_document, load_findings
    from harness.metrics import get_metric, register_metric
    from harness.model.loading import ModelHandle, load_model, weights_absent
    from harness.model.shape import ModelShape
    from harness.patch.heads import parse_head_spec
    from harness.patch.hooks import PatchConfig
    from harness.patch.interventions import register_intervention
    from harness.patch.modes import register_mode
    from harness.run.generation import GenerationConfig, generate


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
