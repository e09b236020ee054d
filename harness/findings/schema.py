"""The findings document: schema, version and the one validating loader every reader uses.

Every field a reader uses (the regression, the markdown report and its plots, the evidence
page) is declared here with its type, so a document is checked whole before anything reads it:
a wrong type, a missing field, a non-finite number or a value out of range is one
:class:`~harness.core.errors.UserError` naming the file, the claim and the field, never a traceback
in a renderer. Fields nobody reads are kept as they are (``extra="allow"``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.claims.outcome import VERDICTS
from harness.core.errors import UserError
from harness.core.limits import MAX_COUNT, MAX_ID_LENGTH
from harness.core.results import load_versioned

FINDINGS_SCHEMA, FINDINGS_VERSION = "causal-heads/findings", 1  # the one definition


# Strict types (no "0.1" for 0.1, no true for 1); statistics may be null, since NaN is stored as
# null (harness.core.results), but never infinite or NaN; counts are bounded integers.
Number = Annotated[float | None, Field(strict=True, allow_inf_nan=False)]
Count = Annotated[int, Field(strict=True, ge=0, le=MAX_COUNT)]
_OPEN = ConfigDict(extra="allow", strict=True)
MAX_LAYERS_OR_HEADS = 4096  # a model shape a heatmap may draw (the largest models have ~128 layers)


class _Section(BaseModel):
    model_config = _OPEN


class EffectRecord(_Section):
    mean: Number = None
    ci_low: Number = None
    ci_high: Number = None
    n: Number = None
    p_value: Number = None
    mde: Number = None


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


class OneTokenRecord(_Section):
    emotion: str = ""
    mean: Number = None
    ci_low: Number = None
    ci_high: Number = None


class TextChangedRecord(_Section):
    n: Count = 0
    patched_vs_baseline: Count = 0
    versus_vs_baseline: Count | None = None
    patched_vs_versus: Count | None = None


class WarningRecord(_Section):
    code: str
    message: str = ""


class ExampleRecord(_Section):
    index: Count | None = None
    why: str = ""
    delta: Number = None
    target: str = ""
    baseline: str = ""
    patched: str = ""
    versus: str = ""


class VersusRecord(_Section):
    heads: str = ""
    patch_mode: str = ""
    source: str = ""
    receivers: str = ""  # a path claim's versus receivers


class ModelRecord(_Section):
    source: str | None = None
    weights_sha256: str | None = None
    config_sha256: str | None = None
    tokenizer_sha256: str | None = None
    chat_template_sha256: str | None = None
    prompt_format: str | None = None
    shape_tuple: (
        Annotated[list[Annotated[int, Field(strict=True, ge=1, le=MAX_LAYERS_OR_HEADS)]], Field(min_length=2)] | None
    ) = None


class DataFileRecord(_Section):
    path: str | None = None
    sha256: str | None = None


class GitRecord(_Section):
    commit: str | None = None
    dirty: bool | None = None


class DiscoveryRecord(_Section):
    """What the discovery (a sweep) measured for a claim's heads: the next-token metric's mean Δ,
    its CI and, where the sweep ran with ``--bootstrap``, the share of resamples that selected it."""

    heads: str
    metric: str | None = None
    mean: Number = None
    ci_low: Number = None
    ci_high: Number = None
    selected_share: Number = None
    rank_interval: list[Count] | None = None
    rank: Count | None = None


class SelectionRecord(_Section):
    """A claim against the prompts that selected it (:mod:`harness.claims.selection`)."""

    document: str
    overlap: Count
    prompts: Count
    label: Literal["exploratory", "confirmatory"]
    discovery: DiscoveryRecord | None = None


class AblationRecord(_Section):
    """One ablation of a claim with ``ablations``: its mean Δ, CI on the deciding statistic, raw p."""

    mean: Number = None
    ci_low: Number = None
    ci_high: Number = None
    p_raw: Number = None


class PreregistrationRecord(_Section):
    """A claim against its file's registry (:mod:`harness.claims.registry`)."""

    registry: str
    registered: str | None = None
    first_evaluated: str | None = None
    before_first_evaluation: bool


class PromptsRecord(_Section):
    """The prompts a claim was evaluated on: its split and the sha256 of each (targets; sources by set)."""

    split: Literal["all", "discovery", "confirmation"] = "all"
    target: list[str] = []
    sources: dict[str, list[str]] = {}


class ClaimFields(_Section):
    """The claim as run: the fields readers use (all of a claim's fields are kept)."""

    id: Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]
    model: str = ""
    kind: Literal["patch", "path", "circuit"] = "patch"  # recorded for path and circuit claims only
    senders: str = ""
    receivers: str = ""
    heads: str = ""
    patch_mode: str = ""
    source: str = ""
    target: str = ""
    metric: str = ""
    direction: str = ""
    alignment: str = ""
    n_prompts: Count = 0
    samples: Count = 0
    max_tokens: Count = 0
    seed: Count = 0
    do_sample: bool = False
    temperature: Number = None
    top_k: Count | None = None
    top_p: Number = None
    alpha: Number = None
    margin: Number = None
    statistic: str = "mean"
    split: Literal["all", "discovery", "confirmation"] = "all"  # recorded when not all
    versus: VersusRecord | None = None
    intervention: str | None = None
    intervention_params: dict[str, bool | int | float | str] | None = None
    hook_points: list[str] | None = None
    ablations: list[str] | None = None
    criterion: Literal["faithful", "minimal", "complete"] | None = None  # circuit claims
    fraction: Number = None
    delta: Number = None
    subsets: Count | None = None


class ClaimRecord(_Section):
    claim: ClaimFields
    verdict: Literal[VERDICTS]  # type: ignore[valid-type]
    p_raw: Number = None
    p_adjusted: Number = None
    p_refute_adjusted: Number = None
    effect: EffectRecord | None = None
    equivalence: EquivalenceRecord | None = None
    random_control: RandomControlRecord | None = None
    sign: SignRecord | None = None
    one_token: OneTokenRecord | None = None
    text_changed: TextChangedRecord | None = None
    per_prompt: dict[str, list[Number]] = {}
    examples: list[ExampleRecord] = []
    model: ModelRecord | None = None
    error: str | None = None
    warnings: list[WarningRecord] = []
    selection: SelectionRecord | None = None  # claims with selected_on
    prompts: PromptsRecord | None = None  # documents since 2026-12-04
    ablations: dict[str, AblationRecord] | None = None  # claims with ablations
    preregistration: PreregistrationRecord | None = None  # claims from a file with a registry
    circuit: dict[str, Any] | None = None  # circuit claims: faithfulness per ablation (harness.claims.circuit)


class RunSelectionRecord(_Section):
    """How a pytest run chose its claims (harness.pytest_plugin.guards.selection)."""

    keyword: str | None = None
    markers: str | None = None
    last_failed: bool | None = None
    stepwise: bool | None = None
    deselect: list[str] | None = None
    node_ids: list[str] | None = None


class FindingsDocument(_Section):
    """A findings document (``causal-heads/findings`` version 1); its JSON Schema is
    ``FindingsDocument.model_json_schema()`` (``docs/findings.schema.json``)."""

    claims: list[ClaimRecord]
    complete: bool = True  # documents from before it was recorded: as they were read then
    not_run: list[str] = []
    not_selected: list[str] = []  # a subset run (-k, -m, --lf): the family's claims it did not select
    selection: RunSelectionRecord | None = None  # the options that chose the run's claims
    created: str | None = None
    correction: str | None = None
    profile: str | None = None
    git: GitRecord | None = None
    packages: dict[str, str | None] | None = None
    models: dict[str, ModelRecord] | None = None
    data_files: dict[str, DataFileRecord] | None = None


# What the reports read beyond what the regression needs (``complete=True``): these fields of a
# claim, every field of each statistics section present, and for a claim that ran (no error)
# its effect, p-values and per-prompt values.
# fields a claim record holds only for some kinds of claim (interventions; path claims; a split)
_OPTIONAL_CLAIM_FIELDS = (
    "intervention",
    "intervention_params",
    "hook_points",
    "kind",
    "senders",
    "receivers",
    "split",
    "ablations",
    "criterion",
    "fraction",
    "delta",
    "subsets",
)
_REPORT_CLAIM_FIELDS = tuple(k for k in ClaimFields.model_fields if k not in _OPTIONAL_CLAIM_FIELDS)
_REPORT_SECTIONS = ("effect", "equivalence", "random_control", "sign", "one_token", "text_changed")
_REPORT_RAN = ("effect", "p_raw", "p_adjusted", "per_prompt")
_EXPECTED = {
    "float_type": "a number or null",
    "finite_number": "a finite number or null",
    "string_type": "a string",
    "string_too_short": "a non-empty string",
    "int_type": "an integer",
    "bool_type": "true or false",
    "dict_type": "an object",
    "model_type": "an object",
    "list_type": "a list",
    "too_short": "a list of at least 2 numbers",
}


_NULLABLE_OBJECTS = (*_REPORT_SECTIONS, "versus", "model", "git")
_UNION_TAGS = (
    "list[...]",
    "int",
    "float",
    "none",
    "str",
    "bool",
    "dict[str,...]",
)  # pydantic's names of a union's arms


def _dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out


def _value(doc, loc):
    for part in loc:
        try:
            doc = doc[part]
        except (KeyError, IndexError, TypeError):
            return None
    return doc


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _problem(doc: dict, err: Mapping[str, Any], where_of: Callable[[int, object], str]) -> str:
    """One line for pydantic's first error: the claim (index and id), the field, its value and
    what it must be."""
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
    if not loc or loc == ("claims",) and err["type"] != "missing" or loc[0] == "claims" and len(loc) == 1:
        claims = doc.get("claims")
        got = "it is missing" if claims is None else f"got {type(claims).__name__}"
        return f"findings document has no 'claims' list ({got})"
    if loc[0] != "claims":
        where, rest, base = "", loc, doc
    else:
        i, rest = loc[1], loc[2:]
        base = doc["claims"][i]
        where = where_of(i, base) + ": "
        if not isinstance(base, dict) or not rest or rest == ("claim",) and not isinstance(base.get("claim"), dict):
            return f"{where}must be an object with a 'claim' object"
    name = _dotted(rest)
    if err["type"] == "missing":
        return f"{where}field {name!r} is missing"
    value = _value(base, rest)
    if err["type"] == "literal_error" and rest == ("verdict",):
        return f"{where}field 'verdict' = {_shown(value)}: must be one of {', '.join(VERDICTS)}"
    expected = _EXPECTED.get(err["type"], err["msg"].lower().removeprefix("input should be "))
    if rest[-1] in _NULLABLE_OBJECTS and err["type"] in ("model_type", "dict_type"):
        expected = "an object or null"
    return f"{where}field {name!r} = {_shown(value)}: must be {expected}"


def check_findings(doc: dict, path: str, *, complete: bool = False) -> dict:
    """Validate ``doc`` against :class:`FindingsDocument` (every field the regression and the
    reports read, typed) and, when ``complete``, require the fields the reports and plots read;
    a :class:`UserError` names the file, the claim (index and id) and the field. Returns ``doc``."""

    def where_of(i: int, rec: object) -> str:
        cid = rec.get("claim", {}).get("id") if isinstance(rec, dict) and isinstance(rec.get("claim"), dict) else None
        return f"claims[{i}]" + (f" ({cid!r})" if isinstance(cid, str) else "")

    try:
        parsed = FindingsDocument.model_validate(doc)
    except ValidationError as exc:
        raise UserError(f"{path}: " + _problem(doc, exc.errors()[0], where_of)) from None
    seen: set[str] = set()
    for i, rec in enumerate(parsed.claims):
        where = f"{path}: " + where_of(i, doc["claims"][i])
        if rec.claim.id in seen:
            raise UserError(f"{where}: claim id {rec.claim.id!r} appears more than once")
        seen.add(rec.claim.id)
        missing = _missing_report_fields(rec) if complete else []
        if missing:
            raise UserError(f"{where}: field {missing[0]!r} is missing")
    return doc


def _missing_report_fields(rec: ClaimRecord) -> list[str]:
    """The fields the reports and plots read that a claim record lacks (in reading order)."""
    missing = [f"claim.{k}" for k in _REPORT_CLAIM_FIELDS if k not in rec.claim.model_fields_set]
    for section in _REPORT_SECTIONS:
        present = getattr(rec, section)
        if present is not None:
            missing += [f"{section}.{k}" for k in type(present).model_fields if k not in present.model_fields_set]
    if rec.claim.versus is not None:
        versus = rec.claim.versus
        missing += [
            f"claim.versus.{k}"
            for k in type(versus).model_fields
            if k not in versus.model_fields_set and k != "receivers"  # a path claim's only
        ]
    if rec.error is None:
        missing += [k for k in _REPORT_RAN if k not in rec.model_fields_set or getattr(rec, k) is None]
    for j, w in enumerate(rec.warnings):
        missing += [f"warnings[{j}].message"] if "message" not in w.model_fields_set else []
    for j, x in enumerate(rec.examples):
        missing += [f"examples[{j}].{k}" for k in ("target", "baseline", "patched") if k not in x.model_fields_set]
    return missing


def load_document(path: str, *, complete: bool = False) -> dict:
    """A findings document, validated for schema, version and the structure its readers use
    (``complete``: everything the reports read, see :func:`check_findings`)."""

    return check_findings(load_versioned(path, FINDINGS_SCHEMA, FINDINGS_VERSION, "findings"), path, complete=complete)


def _listed(ids: list[str], most: int = 5) -> str:
    """The first ``most`` ids, and how many more."""
    return ", ".join(ids[:most]) + (f" and {len(ids) - most} more" if len(ids) > most else "")


def require_complete(doc: dict, path: str) -> dict:
    """``doc`` when its run was complete; a :class:`UserError` naming the claims it did not run
    otherwise (a run cut short by ``-x`` or Ctrl-C: comparing it would report lost findings that
    were never tested), or that its selection left out (a subset run: ``-k``, ``-m``, ``--lf``)."""
    if doc.get("complete", True) is not False:
        return doc
    if doc.get("not_selected") and not doc.get("not_run"):
        raise UserError(
            f"{path}: the run that wrote it evaluated a subset of its claims (-k, -m or --lf; complete: false; "
            f"not selected: {_listed(doc['not_selected'])}); compare complete runs"
        )
    chosen = doc.get("selection") or {}
    if chosen and not doc.get("not_run") and not doc.get("interrupted"):
        options = ", ".join(f"{k.replace('_', '-')}={v}" for k, v in chosen.items())
        raise UserError(
            f"{path}: the run that wrote it chose part of its claims ({options}; complete: false); compare complete runs"
        )
    shown = _listed(doc.get("not_run") or [])
    raise UserError(
        f"{path}: the run that wrote it was cut short (complete: false"
        + (f"; not run: {shown}" if shown else "")
        + "); compare complete runs"
    )


def claims_by_id(doc: dict) -> dict[str, dict]:
    return {c["claim"]["id"]: c for c in doc.get("claims", [])}


def load_findings(path: str) -> dict[str, dict]:
    return claims_by_id(load_document(path))


def json_schema_text() -> str:
    """The JSON Schema of a findings document as ``docs/findings.schema.json`` holds it."""
    return json.dumps(FindingsDocument.model_json_schema(), indent=1, ensure_ascii=False) + "\n"


def read_findings(path: str) -> FindingsDocument:
    """A findings document (any version this package reads; JSON only, nothing unpickled) as its
    typed model: ``doc.claims[0].verdict``, ``doc.claims[0].effect.ci_low``, ``doc.models``."""
    return FindingsDocument.model_validate(load_document(path))
