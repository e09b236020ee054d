"""How far to trust the verdicts: the release's ground-truth figures, as a report section.

Every evidence report (``summary.md``, the markdown report, the HTML report) carries the record
``causal-heads validate`` wrote for this release (:data:`harness.model.groundtruth.RECORD`): on
models whose mechanism is known, how often the workflow found the causal heads, supported true
claims and supported false ones. A missing record leaves the section out.
"""

from __future__ import annotations

from html import escape
from typing import Any


def rate_text(d: dict[str, Any]) -> str:
    """A rate record (``rate``, ``ci_low``, ``ci_high``, ``k``, ``n``) as "0.950 [0.83, 0.99] (19/20)"."""
    if not d.get("n"):
        return "n/a (0 claims)"
    return f"{d['rate']:.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}] ({d['k']}/{d['n']})"


def trust_sentences(record: dict[str, Any]) -> list[str]:
    """One sentence per ground-truth model, then where the method is described."""
    s = record.get("settings", {})
    commit = (record.get("git") or {}).get("commit") or "unknown"
    when = record.get("created", "")[:10]
    head = (
        f"Ground truth (`causal-heads validate`{', ' + when if when else ''}, commit {commit[:12]}): the whole "
        f"workflow (screens, sweep, written and hand claims) on models whose mechanism is known, "
        f"{s.get('runs', '?')} independent prompt draws each."
    )
    out = [head]
    for model, m in record["models"].items():
        out.append(
            f"{model}: causal heads in the sweep's top 3 in {m['recall_at_3']:.0%} of draws; power "
            f"{rate_text(m['power_detail'])}; false-positive rate {rate_text(m['false_positive_detail'])}."
        )
    out.append("Method and limits: docs/validation.md.")
    return out


def trust_markdown(record: dict[str, Any] | None) -> list[str]:
    """Markdown lines (a heading and a list), or none without a record."""
    if record is None:
        return []
    first, *rest = trust_sentences(record)
    return ["## How far to trust these verdicts", "", first, "", *[f"- {line}" for line in rest], ""]


def trust_html(record: dict[str, Any] | None) -> str:
    """An HTML paragraph and list (escaped), or "" without a record."""
    if record is None:
        return ""
    first, *rest = (line.replace("`", "") for line in trust_sentences(record))  # markdown code marks
    items = "".join(f"<li>{escape(line)}</li>" for line in rest)
    return (
        f'<div class="ground-truth"><h2>How far to trust these verdicts</h2><p>{escape(first)}</p>'
        f"<ul>{items}</ul></div>"
    )
