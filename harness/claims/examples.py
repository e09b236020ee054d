"""A claim's generations: every prompt's texts, which ones the patch changed, which to show.

The seed's report gave identical Δ for two different heads and modes: most likely the patch
changed nothing. The first question about any patched run is therefore *did the text change
at all?* :func:`text_changes` counts, token for token, the prompts whose generation differs
between two runs (a prompt counts as changed when any of its samples differs), and
:func:`all_generations` keeps every prompt's texts so that nothing a reader may want to check
is lost. :func:`pick_examples` chooses the few shown in reports, by evidence rather than by
position: the prompts whose metric moved most the claimed way, the one that moved most the
other way, then prompts whose text changed while the metric did not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from harness.run.generation import GenerationResult


def changed_per_prompt(a: GenerationResult, b: GenerationResult) -> list[bool]:
    """Per prompt (in prompt order): does any sample's generated token sequence differ between the
    :class:`~harness.run.generation.GenerationResult` runs ``a`` and ``b`` of the same prompts?"""
    pa, pb = a.by_prompt(), b.by_prompt()
    if sorted(pa) != sorted(pb):
        raise ValueError(f"runs cover different prompts: {sorted(pa)[:5]}... vs {sorted(pb)[:5]}...")
    return [any(x.token_ids != y.token_ids for x, y in zip(pa[i], pb[i], strict=True)) for i in sorted(pa)]


def text_changes(base: GenerationResult, patched: GenerationResult, versus: GenerationResult | None = None) -> dict:
    """How many prompts' generations each contrast changed: ``patched_vs_baseline`` and, for a
    ``versus`` claim, ``versus_vs_baseline`` and ``patched_vs_versus``; ``n`` prompts."""
    pb = changed_per_prompt(base, patched)
    out = {"n": len(pb), "patched_vs_baseline": sum(pb), "versus_vs_baseline": None, "patched_vs_versus": None}
    if versus is not None:
        out["versus_vs_baseline"] = sum(changed_per_prompt(base, versus))
        out["patched_vs_versus"] = sum(changed_per_prompt(versus, patched))
    return out


def changes_text(ch: dict | None) -> str:
    """``k/n`` prompts whose text the claim's contrast changed (``—`` for documents without it)."""
    if not ch:
        return "—"
    if ch.get("patched_vs_versus") is None:
        return f"{ch['patched_vs_baseline']}/{ch['n']}"
    return (
        f"{ch['patched_vs_versus']}/{ch['n']} vs versus "
        f"({ch['patched_vs_baseline']} and {ch['versus_vs_baseline']} vs baseline)"
    )


def all_generations(
    base: GenerationResult, patched: GenerationResult, delta: np.ndarray, versus: GenerationResult | None = None
) -> list[dict]:
    """One record per prompt: index, target prompt, the texts of every sample for each run, its Δ
    and whether the tested contrast (patched vs baseline, or vs versus) changed its text."""
    runs = {"baseline": base.by_prompt(), "patched": patched.by_prompt()}
    if versus is not None:
        runs["versus"] = versus.by_prompt()
    compared = versus if versus is not None else base
    changed = changed_per_prompt(compared, patched)
    out: list[dict] = []
    for i in sorted(runs["baseline"]):
        rec = {"index": i, "target": runs["baseline"][i][0].prompt}
        rec.update({name: [g.text for g in r[i]] for name, r in runs.items()})
        rec.update({"delta": float(delta[len(out)]), "changed": changed[len(out)]})
        out.append(rec)
    return out


def pick_examples(generations: list[dict], alternative: str, k: int = 4) -> list[dict]:
    """Up to ``k`` prompts worth reading, each with ``why`` it was chosen (first sample's texts).

    ``alternative`` is the claim's: ``greater``/``less`` rank Δ in that direction, ``two-sided``
    ranks |Δ|. In order: up to ``k - 1`` prompts that moved most the claimed way, the one that
    moved most the other way, then prompts whose text changed with Δ = 0, then unchanged ones.
    """
    if not generations:
        return []
    d = np.array([g["delta"] for g in generations], dtype=float)
    sign = {"greater": 1.0, "less": -1.0}.get(alternative)
    score = np.abs(d) if sign is None else sign * d
    picked: list[tuple[int, str]] = []
    claimed = "moved most" if sign is None else "moved most the claimed way"
    for i in np.argsort(-score, kind="stable"):
        if score[i] > 0 and len(picked) < k - 1:
            picked.append((int(i), claimed))
    if sign is not None:
        worst = int(np.argmin(score))
        if score[worst] < 0:
            picked.append((worst, "moved most the other way"))
    taken = {i for i, _ in picked}
    for why, ok in (("text changed, metric did not", True), ("text unchanged", False)):
        for i, g in enumerate(generations):
            if len(picked) < k and i not in taken and d[i] == 0 and g["changed"] == ok:
                picked.append((i, why))
                taken.add(i)
    return [_example(generations[i], why) for i, why in picked[:k]]


def _example(g: dict, why: str) -> dict:
    ex = {
        "index": g["index"],
        "why": why,
        "delta": g["delta"],
        "changed": g["changed"],
        "target": g["target"],
        "baseline": g["baseline"][0],
        "patched": g["patched"][0],
    }
    if "versus" in g:
        ex["versus"] = g["versus"][0]
    return ex
