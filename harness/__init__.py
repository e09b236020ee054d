"""Causal hypothesis tests for attention heads: patched generation, paired statistics, evidence.

The packages, from the bottom layer up (each imports only from the layers below it; the
contracts are in pyproject.toml and checked by import-linter):

=====================  =================================================================
``harness.core``        user errors and exit codes, result documents, atomic outputs
``harness.stats``       pure, explicitly seeded statistics returning typed records
``harness.model``       model shape, offline loading and registry, hook points, tiny models
``harness.run``         prompt sets, templating, KV-cached generation, settings profiles
``harness.patch``       head specs, source capture, patch modes, interventions, patch hooks
``harness.metrics``     per-text and model-side metrics
``harness.claims``      the claim spec; resolve, plan, execute, evaluate, correct; results
``harness.findings``    the findings document: schema, validating loader, regression
``harness.report``      markdown, HTML pieces, plots, the headless-browser check
``harness.analysis``    the seed's patching run, sweep, screen, calibration, benchmarks, jobs
``harness.pytest_plugin``  the pytest plugin (entry point ``pytest11``)
``harness.distributed`` claims runs and sweeps on Ray actors
``harness.cli``         ``causal-heads <command>`` (``python -m harness <command>``)
=====================  =================================================================

The front door, ``__all__``: write claims (:class:`Claim`, :class:`Condition`, :func:`load_claims`),
run them (:func:`evaluate` -> :class:`Findings` of :class:`ClaimResult`), read findings
(:func:`read_findings` -> :class:`FindingsDocument`), extend (:func:`register_metric`,
:func:`register_mode`, :func:`register_intervention`, :func:`get_metric`), and :func:`load_model`,
:class:`UserError`. Everything else lives in its package (``harness.claims.session.ClaimSession``,
``harness.run.generation.generate`` ...).

The public names below are imported on first use (PEP 562), so ``import harness`` is
cheap; this is the one place where imports are deferred for start-up time.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> module that defines it
_PUBLIC = {
    # write claims
    "Claim": "harness.claims.spec",
    "Condition": "harness.claims.spec",
    "load_claims": "harness.claims.spec",
    # run them
    "evaluate": "harness.analysis.evaluate",
    "Findings": "harness.analysis.evaluate",
    "ClaimResult": "harness.claims.result",
    # read findings
    "read_findings": "harness.findings.schema",
    "FindingsDocument": "harness.findings.schema",
    # extend
    "register_metric": "harness.metrics",
    "register_mode": "harness.patch.modes",
    "register_intervention": "harness.patch.interventions",
    "get_metric": "harness.metrics",
    # models and errors
    "load_model": "harness.model.loading",
    "UserError": "harness.core.errors",
}
# Reached lazily by the pytest plugin (which must start without torch), not part of the front door.
_LAZY = {
    "ClaimSession": "harness.claims.session",
    "RunCache": "harness.claims.run_cache",
    "load_claim_files": "harness.claims.spec",
    "with_overrides": "harness.claims.spec",
    "weights_absent": "harness.model.loading",
    "shape_problem": "harness.claims.shape_check",
    "RayBackend": "harness.distributed.ray_backend",
}

__all__ = [
    "__version__",
    # write claims
    "Claim",
    "Condition",
    "load_claims",
    # run them
    "evaluate",
    "Findings",
    "ClaimResult",
    # read findings
    "read_findings",
    "FindingsDocument",
    # extend
    "register_metric",
    "register_mode",
    "register_intervention",
    "get_metric",
    # models and errors
    "load_model",
    "UserError",
]

if TYPE_CHECKING:
    from harness.analysis.evaluate import Findings, evaluate
    from harness.claims.result import ClaimResult
    from harness.claims.run_cache import RunCache as RunCache
    from harness.claims.session import ClaimSession as ClaimSession
    from harness.claims.shape_check import shape_problem as shape_problem
    from harness.claims.spec import Claim, Condition, load_claims
    from harness.claims.spec import load_claim_files as load_claim_files
    from harness.claims.spec import with_overrides as with_overrides
    from harness.core.errors import UserError
    from harness.distributed.ray_backend import RayBackend as RayBackend
    from harness.findings.schema import FindingsDocument, read_findings
    from harness.metrics import get_metric, register_metric
    from harness.model.loading import load_model
    from harness.model.loading import weights_absent as weights_absent
    from harness.patch.interventions import register_intervention
    from harness.patch.modes import register_mode


def __getattr__(name: str) -> object:
    module = _PUBLIC.get(name) or _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
