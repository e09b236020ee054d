"""HTML pieces of the evidence report: the static summary table and per-claim generations (escaped)."""

from __future__ import annotations

import math
from html import escape
from typing import Any

from harness.claims.examples import changes_text
from harness.claims.label import intervention_text
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

CLAIM_COLUMNS = ("Metric", "Direction", "Compared")  # the summary table's: what the claim asserts


# Added to the summary section (pytest-html renders it unescaped; it is ours, not data): the
# evidence is read in tables, so they get borders and wrap (both tables fit a 1,280 px window,
# the summary an 800 px one: the browser check measures them); verdicts and warnings stand out;
# a script moves the Environment block below the summary.
STYLE = """<style>
.claim-evidence { white-space: normal; font-family: Helvetica, Arial, sans-serif; font-size: 12px; }
.claim-evidence table { border-collapse: collapse; margin: 6px 0; }
.claim-evidence th, .claim-evidence td { border: 1px solid #bbb; padding: 2px 6px; vertical-align: top;
  text-align: left; white-space: pre-wrap; }
.claim-evidence p.warning { color: #9a6700; font-weight: bold; }
.claim-evidence details { margin: 6px 0; }
.logwrapper { max-height: 640px; }
.claims-summary-table { border-collapse: collapse; margin: 6px 0 12px; font-size: 12px; max-width: 100%; }
.claims-summary-table th, .claims-summary-table td { border: 1px solid #bbb; padding: 2px 4px; text-align: left; color: #222;
  overflow-wrap: anywhere; }
td.verdict-supported { color: #1a7f37; font-weight: bold; }
td.verdict-refuted, td.verdict-error { color: #cf222e; font-weight: bold; }
td.verdict-not-supported { color: #6e5200; font-style: italic; }
body { min-width: 0; }  /* pytest-html's 800 px minimum and the body's margin overflow an 800 px window */
#results-table td, #results-table th { overflow-wrap: anywhere; }
.claim-evidence td { overflow-wrap: anywhere; }
.claim-evidence table, img.forest { max-width: 100%; }
</style>
<script>
/* the Environment block (pytest-html puts it first) after the summary: verdicts before versions */
document.addEventListener("DOMContentLoaded", () => {
  const summary = document.querySelector("div.summary");
  const env = ["environment", "environment-header"].map(id => document.getElementById(id));
  if (summary && env.every(Boolean)) { summary.after(env[0]); summary.after(env[1]); }
});
</script>"""


def _fmt(x: Any, spec: str = ".4f") -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def what_is_patched(c: dict) -> str:
    """The Heads cell: the claim's heads, or ``intervention NAME`` for a claim at hook points."""
    heads = str(c.get("heads") or c.get("senders") or "")
    if heads:
        return heads
    return f"intervention {intervention_text(c)}" if c.get("intervention") else "—"


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


def direction_text(c: dict) -> str:
    """What the claim asserts of its metric: ``increase``, ``decrease`` or ``equivalent ±margin``
    (a sign-test claim says so)."""
    d = str(c.get("direction") or "—")
    if d == "equivalent" and c.get("margin") is not None:
        d += f" ±{c['margin']:g}"
    return d + (" (median)" if c.get("statistic") == "sign" else "")


_CONDITION = ("heads", "patch_mode", "source", "receivers")


def compared_text(c: dict) -> str:
    """What the claim compares: ``mode source → target`` against the baseline, a path's receivers,
    a circuit, an intervention; a ``versus`` claim names what its other condition changes."""
    if c.get("kind") == "circuit":
        return f"circuit ({c.get('patch_mode') or 'mean'} ablation): {c.get('source')} vs {c.get('target')}"
    if c.get("intervention"):
        return f"intervention {intervention_text(c)} on {c.get('target')} vs baseline"
    text = f"{c.get('patch_mode') or ''} {c.get('source')} → {c.get('target')}".strip()
    if c.get("receivers"):
        text += f" via {c['receivers']}"
    versus = c.get("versus")
    if not versus:
        return text + " vs baseline"
    own = {"heads": c.get("heads") or c.get("senders")} | {k: c.get(k) for k in _CONDITION[1:]}
    changed = [f"{k.replace('_', ' ')} {v}" for k in _CONDITION if (v := versus.get(k)) and v != own.get(k)]
    return f"{text} vs {', '.join(changed) or 'the same condition'}"


def summary_table(results: list[dict]) -> str:
    """The static summary table at the top of the report: one row per claim, in run order, with
    what it claims (metric, direction, what is compared) beside its evidence.

    It is plain HTML (the results table below is drawn by pytest-html's JavaScript), so the
    verdicts are on the page, and in a screenshot of it, however the rows below are folded."""
    head = "".join(f"<th>{escape(h)}</th>" for h in ("Claim", "Heads", *CLAIM_COLUMNS, *COLUMNS))
    body = "".join(
        f"<tr><td>{_breakable(r['claim']['id'])}</td><td>{_breakable(what_is_patched(r['claim']))}</td>"
        + "".join(
            f"<td>{_breakable(v)}</td>"
            for v in (str(r["claim"].get("metric")), direction_text(r["claim"]), compared_text(r["claim"]))
        )
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
