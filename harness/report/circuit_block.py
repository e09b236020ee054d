"""Circuit claims in the reports: each one's faithfulness per ablation, with the random circuits.

One row per circuit claim and ablation: the circuit's size, its faithfulness (circuit effect /
full model's effect) with the 95% CI, the raw p of its criterion's test, the random circuits'
faithfulness (min, median, max of K) and the verdict; for a minimality claim the heads not shown
necessary. Shown in ``summary.md``, the markdown report and the HTML report when a run has
circuit claims (:mod:`harness.claims.circuit`).
"""

from __future__ import annotations

import statistics
from typing import Any

from harness.report.text import section_html, section_markdown

HEADER = (
    "claim",
    "criterion",
    "ablation",
    "size",
    "faithfulness [95% CI]",
    "empty circuit",
    "p raw",
    "random circuits",
    "verdict",
)


def _random(rec: dict[str, Any]) -> str:
    values = [r["faithfulness"] for r in rec.get("random", []) if r.get("faithfulness") is not None]
    if not values:
        return "—"
    return (
        f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f} (min / median / max of {len(values)})"
    )


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def circuit_rows(claims: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for r in claims:
        rec = r.get("circuit")
        if not rec:
            continue
        own = r["claim"].get("patch_mode")
        criterion = rec["criterion"]
        if r["claim"].get("fraction") is not None and criterion == "faithful":
            criterion += f" (>= {r['claim']['fraction']:g})"
        for mode, a in rec["ablations"].items():
            weak = [h["head"] for h in a.get("heads", []) if not h["necessary"]]
            shown = f"{a['faithfulness']:.3f} [{a['ci_low']:.3f}, {a['ci_high']:.3f}]"
            if weak:
                shown += f"; not shown necessary: {', '.join(weak)}"
            rows.append(
                (
                    r["claim"]["id"],
                    criterion,
                    mode,
                    str(rec["size"]),
                    shown,
                    _num(a.get("empty_faithfulness")),
                    f"{a['p_raw']:.3g}",
                    _random(rec) if mode == own else "—",
                    r["verdict"],
                )  # fmt: skip
            )
    return rows


EXPLAINED = (
    "Faithfulness = the circuit model's effect (every other head ablated) / the full model's effect "
    "(source − target prompts); the claim's p is the largest over its ablations."
)


def circuit_markdown(claims: list[dict[str, Any]]) -> list[str]:
    """A markdown section, or no lines when the run has no circuit claim."""
    return section_markdown("Circuit claims", EXPLAINED, HEADER, circuit_rows(claims))


def circuit_html(claims: list[dict[str, Any]]) -> str:
    """The same section as an escaped HTML table, or "" when the run has no circuit claim."""
    return section_html("circuits", "Circuit claims", EXPLAINED, HEADER, circuit_rows(claims))
