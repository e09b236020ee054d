"""The findings document: schema, version and the one validating loader every reader uses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.claims.verdict import VERDICTS
from harness.errors import UserError
from harness.results import load_versioned

FINDINGS_SCHEMA, FINDINGS_VERSION = "causal-heads/findings", 1  # the one definition


# The structure the renderers and the regression read, as pydantic models (strict types; other
# fields are kept as they are). Statistics may be null: NaN is stored as null (harness.results).
Number = Annotated[float | None, Field(strict=True)]
_OPEN = ConfigDict(extra="allow", strict=True)


class _Section(BaseModel):
    model_config = _OPEN


class EffectRecord(_Section):
    mean: Number = None
    ci_low: Number = None
    ci_high: Number = None
    n: Number = None


class EquivalenceRecord(_Section):
    ci_low: Number = None
    ci_high: Number = None


class RandomControlRecord(_Section):
    null: list[Number] = []
    percentile: Number = None
    empirical_p: Number = None
    beats_all: bool | None = None


class SignRecord(_Section):
    median: Number = None
    ci_low: Number = None
    ci_high: Number = None
    n_up: Number = None
    n_down: Number = None
    n_zero: Number = None
    p_value: Number = None


class WarningRecord(_Section):
    code: str


class ClaimFields(_Section):
    """The claim as run: the fields every reader needs (all of a claim's fields are kept)."""

    id: Annotated[str, Field(min_length=1)]
    model: str = ""
    heads: str = ""
    patch_mode: str = ""
    source: str = ""
    target: str = ""
    metric: str = ""
    direction: str = ""


class ClaimRecord(_Section):
    claim: ClaimFields
    verdict: Literal[VERDICTS]  # type: ignore[valid-type]
    effect: EffectRecord | None = None
    equivalence: EquivalenceRecord | None = None
    random_control: RandomControlRecord | None = None
    sign: SignRecord | None = None
    warnings: list[WarningRecord] = []


class FindingsDocument(_Section):
    """A findings document (``causal-heads/findings`` version 1); its JSON Schema is
    ``FindingsDocument.model_json_schema()`` (``docs/findings.schema.json``)."""

    claims: list[ClaimRecord]


_SECTIONS: dict[str, type[_Section]] = {
    "effect": EffectRecord,
    "equivalence": EquivalenceRecord,
    "random_control": RandomControlRecord,
    "sign": SignRecord,
}
_KINDS = {
    "null": "a list of numbers",
    "beats_all": "true, false or null",
    "warnings": "a list of objects with a 'code'",
}


def _problem(doc: dict, err: Mapping[str, Any], where_of) -> str:
    """One line for pydantic's first error, in the words of the old hand-written checker."""
    loc = err["loc"]
    if not loc or loc[0] != "claims" or len(loc) == 1:
        claims = doc.get("claims")
        got = "it is missing" if claims is None else f"got {type(claims).__name__}"
        return f"findings document has no 'claims' list ({got})"
    i, rest = loc[1], loc[2:]
    rec = doc["claims"][i]
    where = where_of(i, rec)
    if (
        not isinstance(rec, dict)
        or not rest
        or rest[0] == "claim"
        and (len(rest) == 1 or not isinstance(rec.get("claim"), dict))
    ):
        return f"{where}: must be an object with a 'claim' object"
    if rest[0] == "claim":
        name, value = rest[1], rec["claim"].get(rest[1])
        kind = "non-empty string" if name == "id" else "string"
        return f"{where}: field 'claim.{name}' = {value!r}: must be a {kind}"
    if rest[0] == "verdict":
        return f"{where}: field 'verdict' = {rec.get('verdict')!r}: must be one of {', '.join(VERDICTS)}"
    if rest[0] == "warnings":
        return f"{where}: field 'warnings' = {rec.get('warnings')!r}: must be {_KINDS['warnings']}"
    section = rest[0]
    value = rec.get(section)
    if len(rest) == 1 or not isinstance(value, dict):
        return f"{where}: field {section!r} = {value!r}: must be an object or null"
    key = rest[1]
    return f"{where}: field '{section}.{key}' is {value.get(key)!r}: must be {_KINDS.get(key, 'a number or null')}"


def check_findings(doc: dict, path: str, *, complete: bool = False) -> dict:
    """Validate ``doc`` against :class:`FindingsDocument` (the structure the regression reads: claim
    ids, verdicts, the types of the statistics present) and, when ``complete``, require every field
    the reports and plots read; a :class:`UserError` names the file, the claim (index and id) and
    the field. Returns ``doc``."""

    def where_of(i: int, rec) -> str:
        cid = rec.get("claim", {}).get("id") if isinstance(rec, dict) and isinstance(rec.get("claim"), dict) else None
        return f"{path}: claims[{i}]" + (f" ({cid!r})" if isinstance(cid, str) else "")

    try:
        parsed = FindingsDocument.model_validate(doc)
    except ValidationError as exc:
        raise UserError(f"{path}: " + _problem(doc, exc.errors()[0], where_of).removeprefix(f"{path}: ")) from None
    seen: set[str] = set()
    for i, rec in enumerate(parsed.claims):
        where = where_of(i, doc["claims"][i])
        if rec.claim.id in seen:
            raise UserError(f"{where}: claim id {rec.claim.id!r} appears more than once")
        seen.add(rec.claim.id)
        if complete:
            missing = [f"claim.{k}" for k in ClaimFields.model_fields if k not in rec.claim.model_fields_set]
            for section, model in _SECTIONS.items():
                present = getattr(rec, section)
                if present is not None:
                    missing += [f"{section}.{k}" for k in model.model_fields if k not in present.model_fields_set]
            if missing:
                raise UserError(f"{where}: field {missing[0]!r} is missing")
    return doc


def load_document(path: str, *, complete: bool = False) -> dict:
    """A findings document, validated for schema, version and the structure its readers use
    (``complete``: everything the reports read, see :func:`check_findings`)."""

    return check_findings(load_versioned(path, FINDINGS_SCHEMA, FINDINGS_VERSION, "findings"), path, complete=complete)


def claims_by_id(doc: dict) -> dict[str, dict]:
    return {c["claim"]["id"]: c for c in doc.get("claims", [])}


def load_findings(path: str) -> dict[str, dict]:
    return claims_by_id(load_document(path))
