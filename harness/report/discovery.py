"""Discovery beside confirmation: what selected a claim's heads and what the claim then showed.

For every claim that names its discovery record (``selected_on``, written by ``sweep
--write-claims``), a row with: its label (``confirmatory``: evaluated on prompts the discovery
never saw; ``exploratory``: on some of them), the discovery's effect (the sweep's next-token
keyword log-prob Δ with its CI, on the discovery prompts), how often the sweep's prompt
resamples selected the head (``--bootstrap``), the same next-token Δ on the claim's own prompts
(its ``one_token`` view), and the claim's effect on its metric with its verdict. The two
next-token columns measure one quantity on two prompt sets: their difference is the
generalisation gap. Shown in ``summary.md``, the markdown report and the HTML report; claims
without a discovery record have no row (and no section when none has one).
"""

from __future__ import annotations

from typing import Any

from harness.report.text import decisive_text, section_html, section_markdown

HEADER = (
    "claim",
    "label",
    "discovery Δ (sweep, next token)",
    "selected in",
    "confirmation Δ (next token)",
    "claim effect",
    "verdict",
)
EXPLAINED = (
    "Discovery: the sweep that selected the heads, on its own prompts; confirmation: the claim's "
    "prompts (its split). The two next-token columns measure the same quantity (Δ keyword "
    "log-prob at the next token, nats) on the two prompt sets: their difference is the "
    "generalisation gap. Selected in: the share of the sweep's prompt resamples whose top heads "
    "included the head (with its rank interval). An exploratory claim was evaluated on prompts that "
    "selected it and is corrected in a family of its own."
)


def _interval(d: dict[str, Any] | None) -> str:
    if not d or d.get("mean") is None:
        return "—"
    if d.get("ci_low") is None or d.get("ci_high") is None:
        return f"{d['mean']:+.3f}"
    return f"{d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"


def _share(d: dict[str, Any] | None) -> str:
    if not d or d.get("selected_share") is None:
        return "—"
    lo, hi = d.get("rank_interval") or (None, None)
    ranks = f" (rank {lo}-{hi})" if lo is not None else ""
    return f"{100 * d['selected_share']:.0f}%{ranks}"


def discovery_rows(claims: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """One row of :data:`HEADER` cells (plain text) per claim with a discovery record."""
    rows: list[tuple[str, ...]] = []
    for r in claims:
        sel = r.get("selection")
        if not sel:
            continue
        found = sel.get("discovery")
        label = sel["label"] + (f" ({sel['overlap']}/{sel['prompts']} prompts shared)" if sel.get("overlap") else "")
        estimate, ci = decisive_text(r)
        effect = "—" if r.get("error") else f"{estimate} {ci}"
        verdict = "error" if r.get("error") else r["verdict"]
        # the next-token view is of the claim's own patch; a versus claim's discovery figure is a gain
        confirmed = "— (versus)" if r["claim"].get("versus") else _interval(r.get("one_token"))
        rows.append((r["claim"]["id"], label, _interval(found), _share(found), confirmed, effect, verdict))
    return rows


def discovery_markdown(claims: list[dict[str, Any]]) -> list[str]:
    """A markdown section (heading, explanation, table), or no lines when no claim has a discovery record."""
    return section_markdown("Discovery and confirmation", EXPLAINED, HEADER, discovery_rows(claims))


def discovery_html(claims: list[dict[str, Any]]) -> str:
    """The same section as an escaped HTML table, or "" when no claim has a discovery record."""
    return section_html("discovery", "Discovery and confirmation", EXPLAINED, HEADER, discovery_rows(claims))
