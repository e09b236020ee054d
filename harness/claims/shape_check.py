"""A claim's heads and hook points against its model's layer and head counts, read from the
model's config before anything loads (:func:`harness.model.config_shape.config_heads`)."""

from __future__ import annotations

import re

from harness.claims.spec import Claim
from harness.core.errors import UserError
from harness.model.config_shape import config_heads
from harness.patch.heads import parse_head_spec

_LAYER = re.compile(r"^blocks\.(\d+)\.")


def head_fields(c: Claim) -> list[tuple[str, str]]:
    """Every head spec a claim names: ``(field, spec)``."""
    out = [(f, getattr(c, f)) for f in ("heads", "senders", "receivers") if getattr(c, f)]
    if c.versus is not None:
        out += [(f"versus.{f}", getattr(c.versus, f)) for f in ("heads", "receivers") if getattr(c.versus, f, "")]
    return out


def shape_problem(c: Claim, path: str | None = None) -> tuple[str, str, str] | None:
    """``(field, value, problem)`` for the first head or hook point outside the model, or None
    (also when the model's config cannot be read without loading it)."""
    counts = config_heads(c.model, path)
    if counts is None:
        return None
    n_layers, n_heads = counts
    for field, spec in head_fields(c):
        # receivers may mix head specs with the words "direct" and "later" (harness.patch.path)
        heads = ",".join(p for p in spec.split(",") if ":" in p) if "receivers" in field else spec
        if not heads:
            continue
        try:
            parse_head_spec(heads).resolve(n_layers, n_heads, c.model)
        except UserError as exc:
            return field, spec, str(exc)
    for point in c.hook_points or ():
        m = _LAYER.match(point)
        if m and int(m.group(1)) >= n_layers:
            return "hook_points", point, f"layer {m.group(1)} is out of range for {c.model} ({n_layers} layers)"
    return None
