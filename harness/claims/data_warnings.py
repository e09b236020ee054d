"""Data warnings: why an evaluated claim's data may not be able to support it, whatever the truth."""

from __future__ import annotations

import numpy as np

from harness.claims.outcome import DataWarning
from harness.claims.spec import Claim
from harness.metrics import Metric
from harness.stats import share_at_bound, smallest_p, tost

AT_BOUND = 0.9  # share of prompts at a metric's floor or ceiling, in both compared conditions, that warns


def data_warnings(
    c: Claim,
    metric: Metric,
    compared: np.ndarray,
    patched: np.ndarray,
    delta: np.ndarray,
    alternative: str,
    text_changed: dict | None = None,
) -> list[dict]:
    """Why this claim's data may not be able to support it, whatever the true effect.

    - ``floor`` / ``ceiling``: the metric sits at its bound for at least 90% of prompts in both
      compared conditions (e.g. no gratitude word in most 30-token replies), so it can barely
      register a change in either direction;
    - ``untestable``: so few prompts changed at all that even if every one moved the claimed
      way, the smallest attainable p (``harness.stats.smallest_p``) is not below alpha — the
      claim cannot be supported at this n, before any correction for many claims; for an
      equivalence claim: its TOST interval (the (1 − 2·alpha) t interval of the mean Δ) is at
      least twice the margin wide, so no mean Δ, not even exactly 0, could be declared
      equivalent (A/A on SmolLM2: sentiment within ±0.05 at 70 prompts × 1 sample was
      declared in 2.8% of null datasets);
    - ``inert``: the patch left every generation token-for-token unchanged (for a ``versus``
      claim: neither condition changed any), so the claim is about a patch that did nothing at
      these settings (the seed's identical deltas). Not raised for an equivalence claim without
      ``versus`` (e.g. the identity sanity claim), where no change is the expected outcome;
    - ``degenerate``: more than half of the paired differences are exactly 0 (ties; all of them
      warns only for an equivalence claim: a directional one is then ``untestable``). The t and
      TOST tests then see a few values in a sea of zeros (19 zeros and one 0.001 give a TOST p of
      1e-17, a variance of nearly 0 read as certainty); the sign test drops the ties and rests on
      the few prompts left. The p is computed as specified, but it is not a measure of evidence
      as printed: read the counts and the effect.

    Verdicts are not changed: a warning says how to read "not supported" (uninformative data,
    not evidence of no effect) and that an equivalence found here may only show that both
    conditions leave the metric at its bound.
    """

    return (
        _bound_warnings(c, metric, compared, patched)
        + _inert_warning(c, len(delta), text_changed or {})
        + _untestable_warning(c, delta, alternative)
        + _degenerate_warning(c, delta)
    )


DEGENERATE_SHARE = 0.5  # share of exactly-zero paired differences above which the p is flagged


def _degenerate_warning(c: Claim, delta: np.ndarray) -> list[dict]:
    """``degenerate``: most paired differences are exactly 0 (all of them: only for an equivalence
    claim, whose TOST p is then 0; a directional claim is then ``untestable`` already)."""
    n = len(delta)
    zeros = int(np.sum(delta == 0))
    if n == 0 or zeros / n <= DEGENERATE_SHARE or (zeros == n and c.direction != "equivalent"):
        return []
    rest = f"the test rests on the {n - zeros} that are not, and its" if zeros < n else "the test's"
    message = (
        f"{zeros}/{n} paired differences are exactly 0: {rest} p is not meaningful as printed (no spread "
        f"reads as certainty); read the effect and the up/down counts"
    )
    return [_warning(DataWarning.DEGENERATE, message)]


def exploratory_warning(record: dict | None) -> list[dict]:
    """``exploratory``: the claim was evaluated on prompts its discovery record ranked heads on."""
    if record is None or record["label"] != "exploratory":
        return []
    return [
        _warning(
            DataWarning.EXPLORATORY,
            f"evaluated on {record['overlap']} of the {record['prompts']} prompts that selected it "
            f"({record['document']}): exploratory, not a confirmation; corrected apart from the confirmatory "
            f"claims. Confirm it on prompts the discovery did not use",
        )
    ]


def _warning(code: DataWarning, message: str) -> dict:
    return {"code": code.value, "message": message}


def _bound_warnings(c: Claim, metric: Metric, compared: np.ndarray, patched: np.ndarray) -> list[dict]:
    """``floor`` / ``ceiling``: the metric at its bound for most prompts in both compared conditions."""
    out = []
    n = len(patched)
    for code, bound in ((DataWarning.FLOOR, metric.lower), (DataWarning.CEILING, metric.upper)):
        a, b = share_at_bound(compared, bound), share_at_bound(patched, bound)
        if a >= AT_BOUND and b >= AT_BOUND:
            what = "the versus condition" if c.versus else "baseline"
            message = (
                f"{c.metric} is at its {code} ({bound:g}) for {round(a * n)}/{n} prompts in {what} and "
                f"{round(b * n)}/{n} patched: too rare at {c.max_tokens} tokens to show a change; consider more "
                f"max_tokens or samples, or a continuous metric"
            )
            out.append(_warning(code, message))
    return out


def _inert_warning(c: Claim, n: int, ch: dict) -> list[dict]:
    """``inert``: the patch (or, with versus, neither condition) changed no generation."""
    if not (
        ch.get("patched_vs_baseline") == 0
        and (c.versus or c.direction != "equivalent")
        and (not c.versus or ch.get("versus_vs_baseline") == 0)
    ):
        return []
    who = "neither condition changed any" if c.versus else "the patch changed none"
    check = (
        f"heads {c.heads}, mode {c.patch_mode} and alignment {c.alignment}"
        if c.intervention is None
        else f"{c.patch_label} and what it returns"
    )
    message = (
        f"{who} of the {n} generations (token for token): at these settings it did nothing the text "
        f"shows; check {check}"
    )
    return [_warning(DataWarning.INERT, message)]


def _untestable_warning(c: Claim, delta: np.ndarray, alternative: str) -> list[dict]:
    """``untestable``: no outcome of these data could support the claim at this n."""
    if c.direction == "equivalent" and c.margin is not None:  # validation requires the margin
        eq = tost(delta, margin=c.margin, alpha=c.alpha)
        width = eq.ci_high - eq.ci_low
        if not width >= 2 * c.margin:  # (a NaN width warns no more than before)
            return []
        message = (
            f"the {eq.confidence:.0%} interval of the mean Δ is {width:.3g} wide, at least twice the margin "
            f"{c.margin:g}: no mean Δ, not even 0, could be declared equivalent at this n; widen the margin "
            f"or add prompts or samples"
        )
        return [_warning(DataWarning.UNTESTABLE, message)]
    p_min = smallest_p(delta, alternative)
    if not p_min >= c.alpha:
        return []
    moved = int(np.count_nonzero(delta))
    message = (
        f"only {moved}/{len(delta)} prompts changed at all: even if all moved the claimed way, the smallest "
        f"attainable p is {p_min:.3g} >= alpha {c.alpha}, so this claim cannot be supported by these data"
    )
    return [_warning(DataWarning.UNTESTABLE, message)]
