"""Resample ablation: each prompt's head output replaced by the same head's on another prompt.

Zero and mean ablation put a head into states it never takes on real text; resample ablation
(Chan et al. 2022 "causal scrubbing"; preferred by Zhang & Nanda 2023) gives it a value it does
take, only on the wrong prompt. :func:`resample_draw` draws, for each target prompt, a
different prompt of the same set (uniformly among the set's others, with the claim's seed);
the patch is then exactly a ``z`` patch from the drawn prompts (the ``resample`` mode's value
is the ``z`` mode's), so every invariant of ``z`` patching carries over: drawing each prompt
itself would change nothing, the same seed draws the same prompts, and the run equals
``z`` patching from the drawn prompts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harness.core.errors import UserError

SEED_OFFSET = 104_729  # its own random stream: the random-head control draws with seed + 7919


def resample_draw(prompts: Sequence[str], pool: Sequence[str], seed: int) -> tuple[str, ...]:
    """For each of ``prompts``, a prompt of ``pool`` other than itself, uniformly, drawn with ``seed``
    (the same seed draws the same prompts). A pool with no other prompt is an error."""
    rng = np.random.default_rng(seed + SEED_OFFSET)
    pool = list(dict.fromkeys(pool))
    out = []
    for p in prompts:
        others = [q for q in pool if q != p]
        if not others:
            raise UserError(f"resample ablation: the prompt set has no prompt other than {p!r} to draw from")
        out.append(others[int(rng.integers(len(others)))])
    return tuple(out)
