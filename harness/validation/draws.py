"""Independent prompt draws from a ground-truth model's pools.

Each draw takes ``2n`` prompt pairs at random (without replacement, seeded) from the model's
shipped pools of 400: ``n`` for discovery (the screens and the sweep that selects heads) and ``n``
others for confirmation (the claims are evaluated on them, so the sweep's claims are tested on
prompts that did not select them). Each part is written, with the keyword list, to a folder of
its own, which the pipeline reads as its prompt folder (``$CAUSAL_HEADS_PROMPTS``). Source prompt
``i`` and target prompt ``i`` are drawn together: on the induction model a target is its source
with one token changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

from harness.core.errors import UserError
from harness.model import groundtruth
from harness.run.prompts import KEYWORD_SUFFIX, PROMPT_SUFFIX


@dataclass(frozen=True)
class Draw:
    """One draw: its index, seed, and the prompt pools' indices of its two parts."""

    model: str
    index: int
    seed: int
    discovery: tuple[int, ...]
    confirmation: tuple[int, ...]


def make_draws(model: str, emotion: str, target: str, runs: int, n_prompts: int, base_seed: int) -> list[Draw]:
    """``runs`` draws of ``n_prompts`` discovery and ``n_prompts`` confirmation pairs each from
    ``model``'s pools (seeded by ``base_seed``)."""
    pool = _pool_size(model, emotion, target)
    if 2 * n_prompts > pool:
        raise UserError(f"--n-prompts {n_prompts}: the {model} model's pools hold {pool} prompt pairs (2 x n needed)")
    draws = []
    for r in range(runs):
        seed = base_seed + 1000 * r
        indices = tuple(random.Random(f"{model}:{seed}").sample(range(pool), 2 * n_prompts))
        draws.append(Draw(model, r, seed, indices[:n_prompts], indices[n_prompts:]))
    return draws


def _read(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _pool_size(model: str, emotion: str, target: str) -> int:
    folder = groundtruth.prompts_dir(model)
    sizes = {len(_read(os.path.join(folder, name + PROMPT_SUFFIX))["prompts"]) for name in (emotion, target)}
    if len(sizes) != 1:
        raise UserError(f"{folder}: the {emotion} and {target} pools differ in size; prompts are drawn in pairs")
    return sizes.pop()


def write_draw(draw: Draw, emotion: str, target: str, folder: str, part: str = "discovery") -> None:
    """One part of the draw (``discovery`` or ``confirmation``): the pools cut to its indices, and
    the keyword list, in ``folder``."""
    indices = draw.discovery if part == "discovery" else draw.confirmation
    source = groundtruth.prompts_dir(draw.model)
    os.makedirs(folder, exist_ok=True)
    for name in (emotion, target):
        doc = _read(os.path.join(source, name + PROMPT_SUFFIX))
        doc["prompts"] = [doc["prompts"][i] for i in indices]
        doc["description"] += f" Draw {draw.index} (seed {draw.seed}, {part}) of causal-heads validate."
        with open(os.path.join(folder, name + PROMPT_SUFFIX), "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1)
    shutil.copyfile(os.path.join(source, emotion + KEYWORD_SUFFIX), os.path.join(folder, emotion + KEYWORD_SUFFIX))


@contextlib.contextmanager
def prompts_from(folder: str) -> Iterator[None]:
    """Run the enclosed code with ``folder`` as the prompt folder (``$CAUSAL_HEADS_PROMPTS``)."""
    before = os.environ.get("CAUSAL_HEADS_PROMPTS")
    os.environ["CAUSAL_HEADS_PROMPTS"] = folder
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("CAUSAL_HEADS_PROMPTS", None)
        else:
            os.environ["CAUSAL_HEADS_PROMPTS"] = before
