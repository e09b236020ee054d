"""A claim record described in words, for reports (no torch: the light commands import it)."""

from __future__ import annotations


def patch_label(claim: dict) -> str:
    """A claim record's patch in words: its mode, or ``intervention NAME at POINTS``."""
    if claim.get("intervention") is None:
        return str(claim.get("patch_mode", ""))
    at = ", ".join(map(str, claim.get("hook_points") or ()))
    return f"intervention {claim['intervention']}" + (f" at {at}" if at else "")
