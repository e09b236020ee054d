"""Regression of findings: what changed between two findings documents.

    python -m harness.regress OLD.json NEW.json

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

import argparse
import math

from harness.errors import run_cli

SCHEMA, VERSION = "causal-heads/findings", 1


# what the renderers and the regression read from each claim record; a value may be null (NaN)
_CLAIM_FIELDS = ("id", "model", "heads", "patch_mode", "source", "target", "metric", "direction")  # strings
_SECTION_FIELDS = {
    "effect": ("mean", "ci_low", "ci_high", "n"),
    "equivalence": ("ci_low", "ci_high"),
    "random_control": ("null", "percentile", "empirical_p", "beats_all"),
    "sign": ("median", "ci_low", "ci_high", "n_up", "n_down", "n_zero", "p_value"),
}
_NUMBER = (int, float, type(None))


def check_findings(doc: dict, path: str, *, complete: bool = False) -> dict:
    """Check the structure the regression reads (claim ids, verdicts, the types of the statistics
    present) and, when ``complete``, every field the reports and plots read; a :class:`UserError`
    names the file, the claim (index and id) and the field. Returns ``doc``."""
    from harness.claim_runner import VERDICTS
    from harness.errors import UserError

    claims = doc.get("claims")
    if not isinstance(claims, list):
        got = "it is missing" if claims is None else f"got {type(claims).__name__}"
        raise UserError(f"{path}: findings document has no 'claims' list ({got})")
    seen = set()
    for i, rec in enumerate(claims):
        where = f"{path}: claims[{i}]"
        if not isinstance(rec, dict) or not isinstance(rec.get("claim"), dict):
            raise UserError(f"{where}: must be an object with a 'claim' object")
        cid = rec["claim"].get("id")
        where += f" ({cid!r})" if isinstance(cid, str) else ""
        for key in _CLAIM_FIELDS:
            value = rec["claim"].get(key, ...)
            if value is ... and key != "id" and not complete:
                continue
            if not isinstance(value, str) or (key == "id" and not value):
                shown = "is missing" if value is ... else f"= {value!r}"
                raise UserError(f"{where}: field 'claim.{key}' {shown}: must be a "
                                + ("non-empty string" if key == "id" else "string"))
        if cid in seen:
            raise UserError(f"{where}: claim id {cid!r} appears more than once")
        seen.add(cid)
        if rec.get("verdict") not in VERDICTS:
            raise UserError(f"{where}: field 'verdict' = {rec.get('verdict')!r}: must be one of "
                            f"{', '.join(VERDICTS)}")
        for section, keys in _SECTION_FIELDS.items():
            value = rec.get(section)
            if value is None:
                continue
            if not isinstance(value, dict):
                raise UserError(f"{where}: field {section!r} = {value!r}: must be an object or null")
            for key in keys:
                v = value.get(key, ...)
                if v is ... and not complete:
                    continue
                ok = (isinstance(v, list) and all(isinstance(x, _NUMBER) for x in v) if key == "null"
                      else isinstance(v, (bool, type(None))) if key == "beats_all"
                      else isinstance(v, _NUMBER) and not isinstance(v, bool))
                if not ok:
                    shown = "missing" if v is ... else repr(v)
                    kind = ("a list of numbers" if key == "null" else "true, false or null" if key == "beats_all"
                            else "a number or null")
                    raise UserError(f"{where}: field '{section}.{key}' is {shown}: must be {kind}")
        warnings = rec.get("warnings", [])
        if not isinstance(warnings, list) or not all(isinstance(w, dict) and "code" in w for w in warnings):
            raise UserError(f"{where}: field 'warnings' = {warnings!r}: must be a list of objects with a 'code'")
    return doc


def load_document(path: str, *, complete: bool = False) -> dict:
    """A findings document, validated for schema, version and the structure its readers use
    (``complete``: everything the reports read, see :func:`check_findings`)."""
    from harness.results import load_versioned

    return check_findings(load_versioned(path, SCHEMA, VERSION, "findings"), path, complete=complete)


def claims_by_id(doc: dict) -> dict[str, dict]:
    return {c["claim"]["id"]: c for c in doc.get("claims", [])}


def load_findings(path: str) -> dict[str, dict]:
    return claims_by_id(load_document(path))


def _short(x) -> str:
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
    for section, field in (("packages", None), ("models", "weights_sha256"), ("data_files", "sha256")):
        o, n = old.get(section) or {}, new.get(section) or {}
        for key in sorted(set(o) | set(n)):
            a, b = o.get(key), n.get(key)
            if field:
                a, b = (a or {}).get(field), (b or {}).get(field)
                if a is None or b is None:
                    continue  # not used in one of the runs: its claims show as new or missing
            if a != b:
                out.append(f"{section} {key}: {_short(a)} -> {_short(b)}")
    return out


def settings_diff(old: dict, new: dict) -> str:
    """Claim fields (not the description) and model weights that differ between two results."""
    oc, nc = old.get("claim") or {}, new.get("claim") or {}
    # a field only one run recorded (added to the schema since) is not a change of the claim
    parts = [f"{k} {oc[k]!r}->{nc[k]!r}" for k in sorted(set(oc) & set(nc))
             if k != "description" and oc[k] != nc[k]]
    ow, nw = (old.get("model") or {}).get("weights_sha256"), (new.get("model") or {}).get("weights_sha256")
    if ow and nw and ow != nw:
        parts.append(f"weights {_short(ow)}->{_short(nw)}")
    return ", ".join(parts)


def warnings_diff(old: dict, new: dict) -> str:
    """Data warning codes (floor, ceiling, untestable) that differ, when both runs recorded them."""
    if "warnings" not in old or "warnings" not in new:
        return ""  # a run from before warnings were recorded: nothing to compare
    a, b = ({w["code"] for w in r["warnings"] or []} for r in (old, new))
    return "" if a == b else f"{','.join(sorted(a)) or 'none'} -> {','.join(sorted(b)) or 'none'}"


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
        changed = settings_diff(o, n)
        if changed:
            detail = f"{detail}; settings: {changed}" if detail else f"settings: {changed}"
        warned = warnings_diff(o, n)
        if warned:
            detail = f"{detail}; warnings: {warned}" if detail else f"warnings: {warned}"
        if o["verdict"] != n["verdict"]:
            rows.append({"claim": cid, "change": "verdict", "old": o["verdict"], "new": n["verdict"],
                         "lost": o["verdict"] == "supported", "detail": detail})
        elif moved:
            rows.append({"claim": cid, "change": "effect moved outside old CI", "old": o["verdict"],
                         "new": n["verdict"], "lost": False, "detail": detail})
        elif changed:
            rows.append({"claim": cid, "change": "settings changed", "old": o["verdict"], "new": n["verdict"],
                         "lost": False, "detail": detail})
        elif warned:
            rows.append({"claim": cid, "change": "data warnings changed", "old": o["verdict"], "new": n["verdict"],
                         "lost": False, "detail": detail})
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
    return text


def regression(old: dict, new: dict) -> tuple[list[str], list[dict]]:
    """``(context changes, claim rows)`` between two findings documents."""
    return context_changes(old, new), compare(claims_by_id(old), claims_by_id(new))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.regress", description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    args = ap.parse_args(argv)
    context, rows = regression(load_document(args.old), load_document(args.new))
    print(format_report(context, rows))
    return 1 if lost_claims(rows) else 0


if __name__ == "__main__":
    run_cli(main)
