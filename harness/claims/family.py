"""The claims of one run as a family: p-values corrected across them, then verdicts.

Every evaluated claim's primary p-value is adjusted across the family (Holm by default, BH as
an option), and so, as their own family, are the refuting p-values. Verdicts:

- directional claims (``increase``/``decrease``): *supported* when the adjusted one-sided
  p < alpha and, with a random-head control, the claimed effect beats every random head;
  *refuted* when the adjusted opposite one-sided p < alpha and the 95% CI of the deciding
  statistic excludes 0 on the wrong side; otherwise *not supported*, reported with the minimum
  detectable effect at this n so that it is not read as "no effect".
- ``equivalent`` claims: *supported* when the adjusted TOST p < alpha (the 90% CI lies inside
  ±margin); *refuted* when the adjusted non-equivalence p (:func:`harness.stats.nonequivalence_p`:
  raw p < alpha exactly when that CI lies entirely outside ±margin) < alpha; else *not supported*.

"Refuted" says the claim is wrong, so it is held to the same family-wise standard as
"supported". A claim that errored keeps the ``error`` verdict and is left out of the family.
Exploratory claims (evaluated on the prompts that selected them, :mod:`harness.claims.selection`)
are corrected as a family of their own, apart from the confirmatory ones.

The family is every claim the run collected, not the ones a ``-k``/``-m``/``--lf`` selection
evaluated. A run that evaluated a subset of its family (``subset_of``: the family's size) cannot
know the other claims' p-values, so it adjusts each p-value by Bonferroni over the whole family,
``min(1, m p)``: an upper bound of the Holm and the BH adjusted p whatever the others are, and
the same for a claim in every selection (the 0.74 -> 0.50 -> 1 of three ``-k`` runs of one file).
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.claims.outcome import Verdict
from harness.claims.result import ClaimResult
from harness.claims.selection import is_exploratory
from harness.stats import adjust_pvalues

CORRECTIONS = ("holm", "bh")


SUBSET_CORRECTION = "bonferroni-family"  # what a subset's claims record as their correction


def correct_family(results: Sequence[ClaimResult], correction: str = "holm", subset_of: int | None = None) -> None:
    """Adjust the p-values of ``results`` across them with ``correction`` and set each verdict;
    ``subset_of``: the family's size when ``results`` are a strict subset of it (module docstring).
    Exploratory claims (evaluated on the prompts that selected them) are a family of their own."""
    exploratory = [r for r in results if is_exploratory(r.selection)]
    if exploratory and len(exploratory) < len(results):
        _correct(exploratory, correction, subset_of)
        _correct([r for r in results if not is_exploratory(r.selection)], correction, subset_of)
        return
    _correct(results, correction, subset_of)


def _correct(results: Sequence[ClaimResult], correction: str, subset_of: int | None) -> None:
    ok = [r for r in results if r.error is None]
    if subset_of is not None:
        for r in results:
            r.correction = SUBSET_CORRECTION
        for r in ok:
            r.p_adjusted = min(1.0, r.p_raw * subset_of)
            r.p_refute_adjusted = min(1.0, r.p_refute_raw * subset_of)
            r.verdict = decide_verdict(r)
        return
    for r in results:
        r.correction = correction
    for r, p in zip(ok, adjust_pvalues([r.p_raw for r in ok], correction), strict=True):
        r.p_adjusted = p
    for r, p in zip(ok, adjust_pvalues([r.p_refute_raw for r in ok], correction), strict=True):
        r.p_refute_adjusted = p
    for r in ok:
        r.verdict = decide_verdict(r)


def decide_verdict(r: ClaimResult) -> Verdict:
    """The verdict of an evaluated claim from its adjusted p-values (see the module docstring)."""
    c, e = r.claim, r.effect
    if c.direction == "equivalent":
        if r.p_adjusted < c.alpha:
            return Verdict.SUPPORTED
        return Verdict.REFUTED if r.p_refute_adjusted < c.alpha else Verdict.NOT_SUPPORTED
    est = r.sign if c.statistic == "sign" else e  # the CI of the statistic that decides
    assert est is not None  # every evaluated directional claim has both
    wrong_side = est["ci_high"] < 0 if c.direction == "increase" else est["ci_low"] > 0
    if r.p_refute_adjusted < c.alpha and wrong_side:
        return Verdict.REFUTED
    beats = r.random_control is None or r.random_control["beats_all"]
    return Verdict.SUPPORTED if r.p_adjusted < c.alpha and beats else Verdict.NOT_SUPPORTED
