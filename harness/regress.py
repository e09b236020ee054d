"""Regression of findings: what changed between two findings documents.

    python -m harness.regress OLD.json NEW.json

Matches claims by id and prints one row per claim whose verdict changed, whose effect moved
outside the old 95% CI, or that appeared or disappeared. Exit status: 1 when a finding was
lost (a claim *supported* in OLD is not supported, refuted, errored or missing in NEW),
2 on unusable input, else 0. Inputs are JSON findings documents (``causal-heads/findings``
version 1, written by the claims suite); nothing is ever unpickled.
"""

from __future__ import annotations

import argparse
import json
import math

from harness.errors import UserError, run_cli

SCHEMA, VERSION = "causal-heads/findings", 1


def load_findings(path: str) -> dict[str, dict]:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise UserError(f"{path}: not a findings document (schema must be {SCHEMA!r})")
    if doc.get("schema_version") != VERSION:
        raise UserError(f"{path}: findings schema_version {doc.get('schema_version')!r} is not supported "
                        f"(this code reads {VERSION})")
    return {c["claim"]["id"]: c for c in doc.get("claims", [])}


def _num(x) -> float:
    return float("nan") if x is None else float(x)


def compare(old: dict[str, dict], new: dict[str, dict]) -> list[dict]:
    """Rows of changes; ``lost`` marks a finding that no longer holds."""
    rows = []
    for cid in sorted(set(old) | set(new)):
        o, n = old.get(cid), new.get(cid)
        if n is None:
            rows.append({"claim": cid, "change": "missing", "old": o["verdict"], "new": "-",
                         "lost": o["verdict"] == "supported", "detail": "claim absent from NEW"})
            continue
        if o is None:
            rows.append({"claim": cid, "change": "new", "old": "-", "new": n["verdict"], "lost": False,
                         "detail": ""})
            continue
        oe, ne = o.get("effect") or {}, n.get("effect") or {}
        mean, low, high = _num(ne.get("mean")), _num(oe.get("ci_low")), _num(oe.get("ci_high"))
        moved = all(map(math.isfinite, (mean, low, high))) and not low <= mean <= high
        detail = (f"effect {_num(oe.get('mean')):+.4f} [{low:+.4f}, {high:+.4f}] -> {mean:+.4f}"
                  if oe and ne else (n.get("error") or o.get("error") or ""))
        if o["verdict"] != n["verdict"]:
            rows.append({"claim": cid, "change": "verdict", "old": o["verdict"], "new": n["verdict"],
                         "lost": o["verdict"] == "supported", "detail": detail})
        elif moved:
            rows.append({"claim": cid, "change": "effect moved outside old CI", "old": o["verdict"],
                         "new": n["verdict"], "lost": False, "detail": detail})
    return rows


def format_rows(rows: list[dict]) -> str:
    if not rows:
        return "no changes: every verdict and effect is as before"
    lines = [f"{'claim':50} {'change':28} {'old':>14} -> {'new':14} detail"]
    for r in rows:
        flag = "LOST " if r["lost"] else ""
        lines.append(f"{r['claim']:50} {flag + r['change']:28} {r['old']:>14} -> {r['new']:14} {r['detail']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.regress", description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    args = ap.parse_args(argv)
    rows = compare(load_findings(args.old), load_findings(args.new))
    print(format_rows(rows))
    lost = [r["claim"] for r in rows if r["lost"]]
    if lost:
        print(f"\n{len(lost)} finding(s) lost: {', '.join(lost)}")
    return 1 if lost else 0


if __name__ == "__main__":
    run_cli(main)
