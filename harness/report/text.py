"""Text formatting every renderer shares: cells, numbers, CIs, verdict tallies, up/down and warnings."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

from harness.claims.outcome import Verdict


def cell(text: object) -> str:
    """A value safe inside a markdown table cell (no markup, no pipes, one line)."""
    return html.escape(str(text), quote=False).replace("|", "\\|").replace("\n", " ").replace("`", "&#96;")


def _missing(x: object) -> bool:
    """None (JSON null) or NaN (a result still in memory)."""
    return x is None or (isinstance(x, float) and math.isnan(x))


def ci_text(d: dict | None, key_low: str = "ci_low", key_high: str = "ci_high") -> str:
    if not d or _missing(d.get(key_low)) or _missing(d.get(key_high)):
        return "—"
    return f"[{d[key_low]:+.4f}, {d[key_high]:+.4f}]"


def num_text(x: Any, spec: str = "+.4f") -> str:
    return "—" if _missing(x) else format(x, spec)


def mean_or_none(xs: Iterable[float | None] | None) -> float | None:
    present = [x for x in xs or [] if x is not None]
    return sum(present) / len(present) if present else None


def decisive_effect(r: dict) -> dict:
    """The estimate and the interval of the statistic that decides the claim: the mean Δ with its
    95% CI, for ``statistic = "sign"`` claims the median Δ (``label`` says which), and for an
    equivalence claim the mean with TOST's (1 − 2α) interval (90% at α = 0.05: what the verdict
    compares with the margin; ``level`` and ``margin`` say so). ``{}`` when none."""
    c, e, st, q = r.get("claim") or {}, r.get("effect") or {}, r.get("sign"), r.get("equivalence") or {}
    if c.get("statistic") == "sign" and st:
        return {"label": "median", "estimate": st["median"], "ci_low": st["ci_low"], "ci_high": st["ci_high"]}
    if not e:
        return {}
    if c.get("direction") == "equivalent" and not _missing(q.get("ci_low")) and not _missing(q.get("ci_high")):
        level = q.get("confidence") or 1 - 2 * float(c.get("alpha") or 0.05)
        return {"label": "mean", "estimate": e.get("mean"), "ci_low": q["ci_low"], "ci_high": q["ci_high"],
                "level": level, "margin": c.get("margin")}  # fmt: skip
    return {"label": "mean", "estimate": e.get("mean"), "ci_low": e.get("ci_low"), "ci_high": e.get("ci_high")}


def decisive_text(r: dict) -> tuple[str, str]:
    """The decisive estimate (``+0.0989 (median)`` for sign claims) and its interval, as text: the
    95% CI, or for equivalence claims ``[lo, hi] 90% TOST, margin ±m``."""
    d = decisive_effect(r)
    ci = ci_text(d)
    if "level" in d and ci != "—":
        ci += f" {d['level']:.0%} TOST, margin ±{num_text(d.get('margin'), '.4g')}"
    return num_text(d.get("estimate")) + (" (median)" if d.get("label") == "median" else ""), ci


VERDICT_ORDER = tuple(v.value for v in Verdict)


def verdict_tally(results: Iterable[dict]) -> str:
    """``7 supported, 7 not supported``: claim results (dicts) counted by verdict, errored ones
    (those with an ``error``) as ``error``, in the order supported, not supported, refuted, error."""
    counts: dict[str, int] = {}
    for r in results:
        key = Verdict.ERROR.value if r.get("error") else r["verdict"]
        counts[key] = counts.get(key, 0) + 1
    unknown = sorted(set(counts) - set(VERDICT_ORDER))
    return ", ".join(f"{counts[v]} {v}" for v in (*VERDICT_ORDER, *unknown) if v in counts)


def updown(sign: dict | None) -> str:
    """Prompts that moved up / down, the median Δ and the sign test's p (directional claims)."""
    if not sign:
        return "—"
    return (
        f"{sign['n_up']} / {sign['n_down']}, median {num_text(sign['median'])} (p {num_text(sign['p_value'], '.3g')})"
    )


def warning_codes(r: dict) -> str:
    """A claim result's data warning codes (floor, ceiling, untestable), comma-separated, or "—"."""
    return ", ".join(w["code"] for w in r.get("warnings") or []) or "—"


def section_markdown(heading: str, intro: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A report section: ``## heading``, an introductory paragraph and a table of plain-text cells
    (each made safe with :func:`cell`); no lines without rows."""
    if not rows:
        return []
    out = [f"## {heading}", "", intro, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows] + [""]


def section_html(css_class: str, heading: str, intro: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The same section as HTML, every text escaped; "" without rows."""
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in rows)
    return (
        f'<div class="{css_class}"><h2>{html.escape(heading)}</h2><p>{html.escape(intro)}</p>'
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )
