"""The random-head control: head sets drawn like the claimed heads, which no claim names.

A claim with ``random_heads = K`` is compared with the same patch on up to K random head sets:
the same layers, the same count per layer, none of the claimed heads and none of the heads the
claim otherwise names (a ``versus`` condition's heads, a path claim's receivers), drawn with the
claim's seed. The claimed effect must beat every one of them to be supported.
"""

from __future__ import annotations

import numpy as np

from harness.claims.plan import Head
from harness.claims.spec import Claim
from harness.patch.heads import parse_head_spec

DRAWS_PER_SET = 50  # attempts per wanted set before settling for fewer distinct sets


def avoided_heads(c: Claim, n_layers: int, n_heads: int) -> tuple[Head, ...]:
    """Heads a random set must not take: a versus condition's heads, and a path claim's named
    receiver heads (a random sender cannot also receive)."""
    avoid = set(parse_head_spec(c.versus.heads).resolve(n_layers, n_heads, c.model)) if c.versus else set()
    for cond in (c.condition, *((c.versus,) if c.versus else ())):
        named = [p.strip() for p in cond.receivers.split(",") if p.strip() not in ("", "direct", "later")]
        if named:
            avoid |= set(parse_head_spec(",".join(named)).resolve(n_layers, n_heads, c.model))
    return tuple(sorted(avoid))


def random_head_sets(
    c: Claim, heads: tuple[Head, ...], n_heads: int, avoid: tuple[Head, ...] = ()
) -> list[tuple[Head, ...]]:
    """Up to ``c.random_heads`` distinct random head sets: same layers, same count per layer, no
    claimed head and none of ``avoid``.

    Fewer than K when the layers hold fewer distinct sets (e.g. 8 other heads for K = 10); the
    control then reports the K it really used.
    """
    rng = np.random.default_rng(c.seed + 7919)
    per_layer: dict[int, list[int]] = {}
    for layer, h in heads:
        per_layer.setdefault(layer, []).append(h)
    pool = {
        layer: [x for x in range(n_heads) if x not in hs and (layer, x) not in avoid] for layer, hs in per_layer.items()
    }
    for layer, hs in per_layer.items():
        if len(pool[layer]) < len(hs):
            raise ValueError(
                f"random-head control impossible for heads {c.heads}: layer {layer} has no {len(hs)} other heads"
            )
    sets: list[tuple[Head, ...]] = []
    for _ in range(DRAWS_PER_SET * c.random_heads):
        if len(sets) == c.random_heads:
            break
        chosen = tuple(
            sorted(
                (layer, int(h))
                for layer, hs in per_layer.items()
                for h in rng.choice(pool[layer], size=len(hs), replace=False)
            )
        )
        if chosen not in sets:
            sets.append(chosen)
    return sets


def head_spec(heads: tuple[Head, ...]) -> str:
    """Resolved heads as a head spec (``"1:3,2:7"``)."""
    return ",".join(f"{layer}:{h}" for layer, h in heads)
