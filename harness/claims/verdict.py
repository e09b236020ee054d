"""The verdict of a claim, one spelling each (the findings document stores the value)."""

from __future__ import annotations

from enum import StrEnum


class Verdict(StrEnum):
    SUPPORTED = "supported"
    NOT_SUPPORTED = "not supported"
    REFUTED = "refuted"
    ERROR = "error"  # the claim could not be evaluated; its result carries the error


VERDICTS = tuple(v.value for v in Verdict)
