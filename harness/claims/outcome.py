"""Verdicts and data warnings, one spelling each (the findings document stores the values), and
the minimum detectable effect as text: what every reader of results shares, without torch."""

from __future__ import annotations

import math
from enum import StrEnum


class Verdict(StrEnum):
    SUPPORTED = "supported"
    NOT_SUPPORTED = "not supported"
    REFUTED = "refuted"
    ERROR = "error"  # the claim could not be evaluated; its result carries the error


VERDICTS = tuple(v.value for v in Verdict)


class DataWarning(StrEnum):
    """Why a claim's data may not be able to support it (see :func:`harness.claims.data_warnings.data_warnings`)."""

    FLOOR = "floor"  # the metric sits at its lower bound in both compared conditions
    CEILING = "ceiling"  # ... at its upper bound
    INERT = "inert"  # the patch left every generation token for token unchanged
    UNTESTABLE = "untestable"  # no outcome of these data could support the claim at this n
    EXPLORATORY = "exploratory"  # evaluated on prompts that selected it: not a confirmation
    DEGENERATE = "degenerate"  # most paired differences are exactly 0: the printed p is not meaningful


def mde_text(effect: dict) -> str:
    """The minimum detectable effect, or why there is none (NaN in memory, null in JSON)."""
    m = effect.get("mde")
    return "undefined (the differences have no variance)" if m is None or math.isnan(m) else f"{m:.4f}"
