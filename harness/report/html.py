"""HTML pieces of the evidence report: the static summary table and per-claim generations (escaped)."""

from __future__ import annotations

import math
from html import escape
from typing import Any

from harness.claims.examples import changes_text
from harness.report.text import decisive_text, updown, warning_codes

COLUMNS = (
    "Verdict",
    "Effect",
    "CI (95%; TOST where marked)",
    "p raw / adj",
    "dz",
    "n",
    "Random-head pct",
    "Up / down",
    "Warnings",
    "Text changed",
)


# Added to the summary section (pytest-html renders it unescaped; it is ours, not data): the
# evidence is read in tables, so they get borders and wrap; verdicts and warnings stand out.
STYLE = """<style>
.claim-evidence { white-space: normal; font-family: Helvetica, Arial, sans-serif; font-size: 12px; }
.claim-evidence table { border-collapse: collapse; margin: 6px 0; }
.claim-evidence th, .claim-evidence td { border: 1px solid #bbb; padding: 2px 6px; vertical-align: top;
  text-align: left; white-space: pre-wrap; }
.claim-evidence p.warning { color: #9a6700; font-weight: bold; }
.claim-evidence details { margin: 6px 0; }
.logwrapper { max-height: 640px; }
.claims-summary-table { border-collapse: collapse; margin: 6px 0 12px; font-size: 12px; max-width: 100%; }
.claims-summary-table th, .claims-summary-table td { border: 1px solid #bbb; padding: 2px 6px; text-align: left; color: #222; }
td.verdict-supported { color: #1a7f37; font-weight: bold; }
td.verdict-refuted, td.verdict-error { color: #cf222e; font-weight: bold; }
td.verdict-not-supported { color: #6e5200; font-style: italic; }
</style>"""


def _fmt(x: Any, spec: str = ".4f") -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def what_is_patched(c: dict) -> str:
    """The Heads cell: the claim's heads, or ``intervention NAME`` for a claim at hook points."""
    heads = str(c.get("heads") or c.get("senders") or "")
    if heads:
        return heads
    return f"intervention {c['intervention']}" if c.get("intervention") else "—"


def summary_values(r: dict | None) -> list[str]:
    """One claim's values for :data:`COLUMNS` (plain text; callers escape), from its result."""
    if r is None:
        return [""] * len(COLUMNS)

    e = r.get("effect") or {}
    rc = r.get("random_control")
    return [
        r["verdict"],
        *decisive_text(r),
        f"{_fmt(r.get('p_raw'), '.4g')} / {_fmt(r.get('p_adjusted'), '.4g')}",
        _fmt(e.get("cohens_dz"), ".3f"),
        str(e.get("n", "—")),
        _fmt(rc["percentile"], ".0f") if rc else "—",
        updown(r.get("sign")),
        warning_codes(r),
        changes_text(r.get("text_changed")),
    ]


def cells_html(values: list[str]) -> list[str]:
    """``<td>`` cells for :func:`summary_values`; the verdict cell carries a ``verdict-…`` class."""
    cls = [f' class="verdict-{escape(v.replace(" ", "-"))}"' if i == 0 and v else "" for i, v in enumerate(values)]
    return [f"<td{c}>{escape(v)}</td>" for c, v in zip(cls, values)]


def _breakable(text: str) -> str:
    """Escaped ``text`` that may wrap after ``_`` and ``,`` (claim ids and head lists have no
    spaces; unbroken, the zero control's 15 layers widen the table past the window)."""
    return escape(text).replace("_", "_<wbr>").replace(",", ",<wbr>")


def summary_table(results: list[dict]) -> str:
    """The static summary table at the top of the report: one row per claim, in run order.

    It is plain HTML (the results table below is drawn by pytest-html's JavaScript), so the
    verdicts are on the page, and in a screenshot of it, however the rows below are folded."""
    head = "".join(f"<th>{escape(h)}</th>" for h in ("Claim", "Heads", *COLUMNS))
    body = "".join(
        f"<tr><td>{_breakable(r['claim']['id'])}</td><td>{_breakable(what_is_patched(r['claim']))}</td>"
        + "".join(cells_html(summary_values(r)))
        + "</tr>"
        for r in results
    )
    return f'<table class="claims-summary-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _texts(x: Any) -> str:
    """One run's text(s) for a prompt: a string (an example) or every sample's (a generations record)."""
    return "<br/>".join(escape(t) for t in x) if isinstance(x, list) else escape(x)


def generations_table(rows: list[dict], versus: bool) -> str:
    """Prompts with their baseline, (versus) and patched texts; examples also say why they were picked.
    Every cell is escaped: generated text and prompts are untrusted."""
    picked = any("why" in x for x in rows)
    head = (
        ["#"]
        + (["why shown"] if picked else [])
        + ["Δ", "target prompt", "baseline"]
        + (["versus"] if versus else [])
        + ["patched"]
    )
    body = ""
    for x in rows:
        cells = [str(x.get("index", "—"))] + ([x.get("why", "")] if picked else [])
        cells = [escape(v) for v in cells] + [
            escape(_fmt(x.get("delta"), "+.4f")),
            escape(x["target"]),
            _texts(x["baseline"]),
        ]
        cells += ([_texts(x.get("versus", "—"))] if versus else []) + [_texts(x["patched"])]
        body += "<tr>" + "".join(f"<td>{v}</td>" for v in cells) + "</tr>"
    return "<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + f"</tr>{body}</table>"
