"""A claim record described in words, for reports (no torch: the light commands import it)."""

from __future__ import annotations


def patch_label(claim: dict) -> str:
    """A claim record's patch in words: its mode, ``path MODE → RECEIVERS`` for a path claim, or
    ``intervention NAME at POINTS``."""
    if claim.get("kind") == "path":
        return f"path {claim.get('patch_mode', '')} → {claim.get('receivers', '')}"
    if claim.get("intervention") is None:
        return str(claim.get("patch_mode", ""))
    at = ", ".join(map(str, claim.get("hook_points") or ()))
    return f"intervention {intervention_text(claim)}" + (f" at {at}" if at else "")


def intervention_text(claim: dict) -> str:
    """``NAME`` or ``NAME(scale=4, ...)``: the intervention with the parameters the claim gives it."""
    params = claim.get("intervention_params") or {}
    inner = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in sorted(params.items()))
    return f"{claim['intervention']}({inner})" if params else str(claim["intervention"])
