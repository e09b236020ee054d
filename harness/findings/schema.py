"""The findings document: schema, version and the one validating loader every reader uses."""

from __future__ import annotations

from harness.claims.verdict import VERDICTS
from harness.errors import UserError
from harness.results import load_versioned

FINDINGS_SCHEMA, FINDINGS_VERSION = "causal-heads/findings", 1  # the one definition


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
                raise UserError(
                    f"{where}: field 'claim.{key}' {shown}: must be a "
                    + ("non-empty string" if key == "id" else "string")
                )
        if cid in seen:
            raise UserError(f"{where}: claim id {cid!r} appears more than once")
        seen.add(cid)
        if rec.get("verdict") not in VERDICTS:
            raise UserError(f"{where}: field 'verdict' = {rec.get('verdict')!r}: must be one of {', '.join(VERDICTS)}")
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
                ok = (
                    isinstance(v, list) and all(isinstance(x, _NUMBER) for x in v)
                    if key == "null"
                    else isinstance(v, (bool, type(None)))
                    if key == "beats_all"
                    else isinstance(v, _NUMBER) and not isinstance(v, bool)
                )
                if not ok:
                    shown = "missing" if v is ... else repr(v)
                    kind = (
                        "a list of numbers"
                        if key == "null"
                        else "true, false or null"
                        if key == "beats_all"
                        else "a number or null"
                    )
                    raise UserError(f"{where}: field '{section}.{key}' is {shown}: must be {kind}")
        warnings = rec.get("warnings", [])
        if not isinstance(warnings, list) or not all(isinstance(w, dict) and "code" in w for w in warnings):
            raise UserError(f"{where}: field 'warnings' = {warnings!r}: must be a list of objects with a 'code'")
    return doc


def load_document(path: str, *, complete: bool = False) -> dict:
    """A findings document, validated for schema, version and the structure its readers use
    (``complete``: everything the reports read, see :func:`check_findings`)."""

    return check_findings(load_versioned(path, FINDINGS_SCHEMA, FINDINGS_VERSION, "findings"), path, complete=complete)


def claims_by_id(doc: dict) -> dict[str, dict]:
    return {c["claim"]["id"]: c for c in doc.get("claims", [])}


def load_findings(path: str) -> dict[str, dict]:
    return claims_by_id(load_document(path))
