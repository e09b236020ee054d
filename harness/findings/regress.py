"""Regression of findings: what changed between two findings documents.

    python -m harness regress OLD.json NEW.json

Matches claims by id and prints one row per claim whose verdict changed, whose effect moved
outside the old 95% CI, whose settings or model weights changed, or that appeared or
disappeared; above the table, what changed around the claims (git commit, package versions,
model weights, prompt and keyword files), so a moved effect can be told from a changed input.
Exit status: 1 when a finding was
lost (a claim *supported* in OLD is not supported, refuted, errored or missing in NEW),
2 on unusable input, else 0. Inputs are JSON findings documents (``causal-heads/findings``
version 1, written by the claims suite); nothing is ever unpickled.
"""

from __future__ import annotations

import math

from harness.core.errors import terminal_safe
from harness.findings.schema import claims_by_id

# what decides a model's runs (harness.model.provenance): a change in any is named
MODEL_DIGESTS = ("weights_sha256", "config_sha256", "tokenizer_sha256", "chat_template_sha256")


def _short(x: object) -> str:
    """Commits and sha256 digests to their first 12 hex digits."""
    hexdigits = set("0123456789abcdef")
    return x[:12] if isinstance(x, str) and len(x) >= 40 and set(x) <= hexdigits else str(x)


def context_changes(old: dict, new: dict) -> list[str]:
    """What differs around the claims: commit, packages, model weights, data files."""
    out = []
    og, ng = old.get("git") or {}, new.get("git") or {}
    if og.get("commit") != ng.get("commit"):
        out.append(f"git commit {_short(og.get('commit'))} -> {_short(ng.get('commit'))}")
    for key in ("correction", "profile"):  # run options that change p-values or every claim's settings
        if key in old and key in new and old[key] != new[key]:
            out.append(f"{key} {old[key]} -> {new[key]}")
    sections = [("packages", None)] + [("models", f) for f in MODEL_DIGESTS] + [("data_files", "sha256")]
    for section, field in sections:
        o, n = old.get(section) or {}, new.get(section) or {}
        for key in sorted(set(o) | set(n)):
            a, b = o.get(key), n.get(key)
            if field:
                if not (isinstance(a, dict) and isinstance(b, dict) and field in a and field in b):
                    continue  # not used (or not recorded) in one of the runs: its claims show as new or missing
                a, b = a[field], b[field]
            if a != b:
                label = f"{section} {key}" + ("" if field in (None, "sha256", "weights_sha256") else f" {field}")
                out.append(f"{label}: {_short(a)} -> {_short(b)}")
    return out


def settings_diff(old: dict, new: dict) -> str:
    """Claim fields (not the description) and model weights that differ between two results."""
    oc, nc = old.get("claim") or {}, new.get("claim") or {}
    # a field only one run recorded (added to the schema since) is not a change of the claim
    parts = [f"{k} {oc[k]!r}->{nc[k]!r}" for k in sorted(set(oc) & set(nc)) if k != "description" and oc[k] != nc[k]]
    om, nm = old.get("model") or {}, new.get("model") or {}
    for field in MODEL_DIGESTS:  # a digest only one run recorded (older findings) is not a change
        if field in om and field in nm and om[field] != nm[field]:
            parts.append(f"{field.removesuffix('_sha256')} {_short(om[field])}->{_short(nm[field])}")
    return ", ".join(parts)


def warnings_diff(old: dict, new: dict) -> str:
    """Data warning codes (floor, ceiling, untestable) that differ, when both runs recorded them."""
    if "warnings" not in old or "warnings" not in new:
        return ""  # a run from before warnings were recorded: nothing to compare
    a, b = ({w["code"] for w in r["warnings"] or []} for r in (old, new))
    return "" if a == b else f"{','.join(sorted(a)) or 'none'} -> {','.join(sorted(b)) or 'none'}"


def _num(x: float | None) -> float:
    return float("nan") if x is None else float(x)


def circuit_diff(old: dict, new: dict) -> str:
    """A circuit claim's faithfulness that left its old CI, per ablation ("" when none did)."""
    o, n = (old.get("circuit") or {}).get("ablations", {}), (new.get("circuit") or {}).get("ablations", {})
    moved = []
    for mode in sorted(set(o) & set(n)):
        f, low, high = _num(n[mode].get("faithfulness")), _num(o[mode].get("ci_low")), _num(o[mode].get("ci_high"))
        if all(map(math.isfinite, (f, low, high))) and not low <= f <= high:
            moved.append(f"{mode} {_num(o[mode].get('faithfulness')):.3f} [{low:.3f}, {high:.3f}] -> {f:.3f}")
    return "faithfulness " + ", ".join(moved) if moved else ""


def _detail(o: dict, n: dict, effect: tuple[float, float, float], changed: str, warned: str, faithful: str) -> str:
    """The row's detail: the effect's move (or the error), then what else changed."""
    mean, low, high = effect
    oe, ne = o.get("effect") or {}, n.get("effect") or {}
    parts = [
        f"effect {_num(oe.get('mean')):+.4f} [{low:+.4f}, {high:+.4f}] -> {mean:+.4f}"
        if oe and ne
        else (n.get("error") or o.get("error") or ""),
        f"settings: {changed}" if changed else "",
        f"warnings: {warned}" if warned else "",
        faithful,
    ]
    return "; ".join(p for p in parts if p)


def compare(old: dict[str, dict], new: dict[str, dict]) -> list[dict]:
    """Rows of changes; ``lost`` marks a finding that no longer holds."""
    rows = []
    for cid in sorted(set(old) | set(new)):
        o, n = old.get(cid), new.get(cid)
        if n is None:
            assert o is not None  # every id is in OLD or NEW
            rows.append(
                {
                    "claim": cid,
                    "change": "missing",
                    "old": o["verdict"],
                    "new": "-",
                    "lost": o["verdict"] == "supported",
                    "detail": "claim absent from NEW",
                }
            )
            continue
        if o is None:
            rows.append({"claim": cid, "change": "new", "old": "-", "new": n["verdict"], "lost": False, "detail": ""})
            continue
        oe, ne = o.get("effect") or {}, n.get("effect") or {}
        mean, low, high = _num(ne.get("mean")), _num(oe.get("ci_low")), _num(oe.get("ci_high"))
        moved = all(map(math.isfinite, (mean, low, high))) and not low <= mean <= high
        changed, warned, faithful = settings_diff(o, n), warnings_diff(o, n), circuit_diff(o, n)
        detail = _detail(o, n, (mean, low, high), changed, warned, faithful)
        if o["verdict"] != n["verdict"]:
            rows.append(
                {
                    "claim": cid,
                    "change": "verdict",
                    "old": o["verdict"],
                    "new": n["verdict"],
                    "lost": o["verdict"] == "supported",
                    "detail": detail,
                }
            )
        elif moved or faithful:
            rows.append(
                {
                    "claim": cid,
                    "change": "effect moved outside old CI" if moved else "faithfulness moved outside old CI",
                    "old": o["verdict"],
                    "new": n["verdict"],
                    "lost": False,
                    "detail": detail,
                }
            )
        elif changed:
            rows.append(
                {
                    "claim": cid,
                    "change": "settings changed",
                    "old": o["verdict"],
                    "new": n["verdict"],
                    "lost": False,
                    "detail": detail,
                }
            )
        elif warned:
            rows.append(
                {
                    "claim": cid,
                    "change": "data warnings changed",
                    "old": o["verdict"],
                    "new": n["verdict"],
                    "lost": False,
                    "detail": detail,
                }
            )
    return rows


def format_rows(rows: list[dict]) -> str:
    if not rows:
        return "no changes: every verdict and effect is as before"
    width = max(len("claim"), *(len(r["claim"]) for r in rows))
    lines = [f"{'claim':{width}} {'change':33} {'old':>14} -> {'new':14} detail"]
    for r in rows:
        flag = "LOST " if r["lost"] else ""
        lines.append(f"{r['claim']:{width}} {flag + r['change']:33} {r['old']:>14} -> {r['new']:14} {r['detail']}")
    return "\n".join(lines)


def lost_claims(rows: list[dict]) -> list[str]:
    return [r["claim"] for r in rows if r["lost"]]


def format_report(context: list[str], rows: list[dict]) -> str:
    """What changed around the claims, the table of changed claims, and the lost findings."""
    text = ("changed between the runs:\n" + "\n".join(f"  {line}" for line in context) + "\n\n") if context else ""
    text += format_rows(rows)
    lost = lost_claims(rows)
    if lost:
        text += f"\n\n{len(lost)} finding(s) lost: {', '.join(lost)}"
    return terminal_safe(text)  # claim ids and details come from the documents: untrusted


def regression(old: dict, new: dict) -> tuple[list[str], list[dict]]:
    """``(context changes, claim rows)`` between two findings documents."""
    return context_changes(old, new), compare(claims_by_id(old), claims_by_id(new))
