"""Claims as data: one frozen record per row of a TOML claims file.

A claims file holds ``[[claim]]`` tables. Fields (defaults in brackets):

``id``                 unique, lowercase letters, digits and ``_``
``model``              registered model name or HF id (see :mod:`harness.model.loading`)
``heads``              head spec, e.g. ``"1:10"``, ``"1:10,0:0"``, ``"1:*"``
``patch_mode``         z, pattern_v, v_only, pattern_only, zero, mean, or a registered mode
``source``             emotion whose prompts are the patch source
``intervention``       instead of ``patch_mode``/``source``: a registered intervention (a hook
                       function, :mod:`harness.patch.interventions`), applied to ``heads``
                       (``per_head``) or at ``hook_points``, e.g. ``["blocks.3.hook_resid_post"]``
``kind``               ``patch`` [default] or ``path``: a path-patching claim (:mod:`harness.patch.path`)
                       whose ``senders`` (head spec; they are the claim's heads) are patched
                       with ``patch_mode``/``source`` and reach the output only through
                       ``receivers``: later heads (``"22:*,25:3"``), ``later`` (every head above
                       the lowest sender layer), ``direct`` (the logits), or a mix. A ``versus``
                       table may change ``receivers`` (e.g. direct vs later). Random heads
                       replace the senders (a random-sender control), with the same receivers
``target``             target prompt set [neutral]
``metric``             a registered text metric, e.g. ``gratitude_keywords``
``direction``          ``increase`` | ``decrease`` | ``equivalent``
``margin``             equivalence margin in metric units (required for ``equivalent``)
``alpha``              [0.05]
``split``              which prompts of the target and source sets: ``all`` [default: the first
                       ``n_prompts`` of each set], ``confirmation`` or ``discovery`` (the first
                       ``n_prompts`` of that split; the sets must have one, see docs/data.md)
``n_prompts``          [70]; ``samples`` [1, at most 1000]; ``max_tokens`` [30, at most 4096]; ``alignment`` [end]
``seed``               [0]; ``do_sample`` [true]; ``temperature`` [1.0]; ``top_k`` [50]; ``top_p`` [1.0]
``random_heads``       K random heads (same layers, same count) as a control [0 = none, at most 1000]; in a
                       ``versus`` claim they go through the same contrast (see ClaimSession)
``statistic``          what a directional claim tests: ``mean`` (sign-flip permutation test of
                       the mean Δ, bootstrap CI) or ``sign`` (exact sign test: do more prompts
                       move the claimed way than the other, median Δ with its CI) [mean]. Both
                       are always reported; this field, set before the run, decides the verdict
``versus``             optional table overriding ``heads``/``patch_mode``/``source``: the claim is
                       then about the per-prompt difference between the two conditions
``ablations``          necessity under several ablations, e.g. ``["zero", "mean", "resample"]``: the
                       claim (its ``patch_mode`` one of them, ``source`` its target set) is tested
                       under each, and supported only if it is under every one (an intersection-
                       union test: its p is the largest of theirs). ``resample`` replaces each target
                       prompt's head output with the head's on another prompt of the target set,
                       drawn with the claim's seed (:mod:`harness.patch.resample`)
``kind = "circuit"``   a circuit claim (:mod:`harness.claims.circuit`): ``heads`` are the circuit,
                       ``patch_mode`` (or several ``ablations``) ablates every head outside it,
                       and the behaviour is the ``source`` prompts' metric minus the ``target``
                       prompts'. ``criterion``: ``faithful`` [default] (``direction = "increase"``:
                       the circuit reproduces at least ``fraction`` of the full model's effect;
                       ``"equivalent"``: it equals the full model's within ``margin``) or ``minimal``
                       (removing any one head lowers its faithfulness by more than ``delta`` [0])
                       or ``complete`` (``direction = "equivalent"``: for ``subsets`` [5] random
                       subsets K of the circuit, the circuit without K and the model without K
                       have the same effect within ``margin``).
                       ``random_heads``: K random circuits of the same size from the same layers
``tier``               ``fast`` (per-commit suite) | ``slow`` [slow]
``description``        free text
``selected_on``        the sweep document whose prompts selected this claim's heads
                       (``sweep --write-claims`` sets it); a claim evaluated on any of those
                       prompts is *exploratory*: labelled so, and corrected in a family of its own

The quantity tested per prompt is Δ = mean over samples of (patched − baseline), or, with
``versus``, Δ_claim − Δ_versus (the baseline is shared, so this is patched_A − patched_B).
Invalid rows fail when the file is loaded, naming the claim, the field and the value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, NoReturn, get_args, get_origin

from pydantic import ConfigDict, PrivateAttr, ValidationError, model_validator

from harness.claims.label import patch_label
from harness.core.errors import UserError, did_you_mean
from harness.core.limits import MAX_COUNT, MAX_ID_LENGTH, MAX_RANDOM_HEADS
from harness.metrics import get_metric
from harness.patch.heads import parse_head_spec
from harness.patch.interventions import HOOK_POINT, get_intervention
from harness.patch.modes import ABLATIONS, RESAMPLE, available_modes
from harness.patch.path import check_path_mode
from harness.run.profiles import read_toml
from harness.run.prompts import PromptSet, emotions, load_prompt_set
from harness.run.settings import MIN_TEMPERATURE, SamplingSettings

# the enumerated fields: typed, so pydantic refuses another value ("must be one of ..."), and the
# hand validation below keeps only the rules that need the registries or several fields
Direction = Literal["increase", "decrease", "equivalent"]
Kind = Literal["patch", "path", "circuit"]
Criterion = Literal["faithful", "minimal", "complete"]
Statistic = Literal["mean", "sign"]
Tier = Literal["fast", "slow"]
Alignment = Literal["end", "last", "mean_source"]
Split = Literal["all", "discovery", "confirmation"]
DIRECTIONS: tuple[str, ...] = get_args(Direction)
TIERS: tuple[str, ...] = get_args(Tier)
STATISTICS: tuple[str, ...] = get_args(Statistic)
# Upper bounds on a claim's sizes: each random head is a full patched generation, and a count a
# typo made huge (200000) must be refused at load, not found out hours into a run.
MAX_SAMPLES = 1000
MAX_TOKENS = 4096
REQUIRED = ("id", "model", "metric", "direction")
PATCH_REQUIRED = ("heads", "patch_mode", "source")  # a claim with no intervention patches heads
CONDITION_FIELDS = ("heads", "patch_mode", "source", "receivers")  # receivers: path claims only
KINDS: tuple[str, ...] = get_args(Kind)
_ID = re.compile(r"^[a-z0-9_]+$")
# what error messages name as the claim's origin: the file being loaded, or "FILE with --seed 3"
_WHERE: ContextVar[str] = ContextVar("claim_origin", default="")


@dataclass(frozen=True)
class Condition:
    """What a patch is: heads, mode and source prompts (the claim's own, or its ``versus``)."""

    heads: str
    patch_mode: str
    source: str
    receivers: str = ""  # a path claim's receivers ("" for a plain patch)

    @property
    def slug(self) -> str:
        return parse_head_spec(self.heads).slug

    def to_dict(self) -> dict:
        """The fields as a record (``receivers`` only for a path claim, so older records are unchanged)."""
        d = {"heads": self.heads, "patch_mode": self.patch_mode, "source": self.source}
        return {**d, "receivers": self.receivers} if self.receivers else d


class Claim(SamplingSettings):
    """One claim: exactly the fields of a ``[[claim]]`` row, validated however it is built.

    ``Claim(**row)`` in Python and a row of a claims file are the same object: types are strict
    (an int field refuses ``True`` and ``"3"``), unknown fields are refused with "did you mean",
    and every value is checked against what the harness supports (modes, emotions, metrics,
    prompt counts), each failure one :class:`UserError` naming the claim, field and value.
    ``versus`` takes a :class:`Condition` or a table with some of heads, patch_mode, source (the
    others are the claim's own). ``file`` (not a field) is the claims file it came from, if any.
    """

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid", arbitrary_types_allowed=True)

    id: str
    model: str
    kind: Kind = "patch"
    heads: str = ""
    senders: str = ""
    receivers: str = ""
    patch_mode: str = ""
    source: str = ""
    metric: str
    direction: Direction
    target: str = "neutral"
    margin: float | None = None
    alpha: float = 0.05
    split: Split = "all"
    n_prompts: int = 70
    alignment: Alignment = "end"
    # do_sample, temperature, top_k, top_p, samples, max_tokens, seed: from SamplingSettings
    random_heads: int = 0
    statistic: Statistic = "mean"
    versus: Condition | None = None
    intervention: str | None = None
    intervention_params: dict[str, bool | int | float | str] | None = None
    hook_points: tuple[str, ...] | None = None
    ablations: tuple[str, ...] | None = None
    criterion: Criterion = "faithful"
    fraction: float | None = None
    delta: float = 0.0
    subsets: int = 5
    tier: Tier = "slow"
    description: str = ""
    selected_on: str = ""  # the discovery document (a sweep) whose prompts selected the heads
    _file: str = PrivateAttr(default="")

    def __init__(self, **data: Any) -> None:
        where = f"{_WHERE.get()}: " if _WHERE.get() else ""
        cid = data.get("id", "?")
        data = _tables_read(data, cid)
        kind = data.get("kind", "patch")
        if kind not in KINDS:
            _fail(cid, "kind", kind, f"must be one of {', '.join(KINDS)}", _WHERE.get())
        if kind != "path" and (data.get("senders") or data.get("receivers")):
            _fail(
                cid,
                "senders/receivers",
                data.get("senders") or data.get("receivers"),
                'are for a path claim: set kind = "path"',
                _WHERE.get(),
            )
        if kind == "path" and isinstance(data.get("senders"), str) and not data.get("heads"):
            data = {**data, "heads": data["senders"]}  # a path claim's heads are its senders
        required = REQUIRED + (() if data.get("intervention") is not None else PATCH_REQUIRED)
        if data.get("kind") == "path":
            required = REQUIRED + ("senders", "receivers", "patch_mode", "source")
        missing = [f for f in required if f not in data]
        if missing:
            raise UserError(f"{where}claim {cid!r}: missing field(s) {', '.join(missing)}")
        unknown = [k for k in data if k not in type(self).model_fields]
        if unknown:
            raise UserError(f"{where}claim {cid!r}: " + did_you_mean("field", unknown[0], type(self).model_fields))
        try:
            super().__init__(**data)
        except ValidationError as exc:
            err = exc.errors()[0]
            name = str(err["loc"][0]) if err["loc"] else "?"
            expected: object = type(self).model_fields[name].annotation if name in type(self).model_fields else "?"
            if get_origin(expected) is Literal:
                _fail(cid, name, data.get(name), f"must be one of {', '.join(get_args(expected))}", _WHERE.get())
            typename = getattr(expected, "__name__", None) or str(expected).replace("typing.", "")
            _fail(cid, name, data.get(name), f"must be of type {typename}", _WHERE.get())

    @model_validator(mode="before")
    @classmethod
    def _versus_table(cls, data: Any) -> Any:
        versus = data.get("versus") if isinstance(data, dict) else None
        if versus is None or isinstance(versus, Condition):
            return data
        if (
            not isinstance(versus, dict)
            or not versus
            or set(versus) - set(CONDITION_FIELDS)
            or not all(isinstance(v, str) for v in versus.values())
        ):
            _fail(
                data.get("id", "?"),
                "versus",
                versus,
                "must be a table with some of heads, patch_mode, source, receivers (strings)",
                _WHERE.get() or "claim",
            )
        own = {k: data.get(k) for k in CONDITION_FIELDS[:3]}
        own["receivers"] = data.get("receivers") or ""
        if data.get("senders") and not own["heads"] and data.get("kind") == "path":
            own["heads"] = data["senders"]
        if versus.get("receivers") and data.get("kind") != "path":
            _fail(
                data.get("id", "?"),
                "versus.receivers",
                versus["receivers"],
                'is for a path claim (kind = "path")',
                _WHERE.get() or "claim",
            )
        return {**data, "versus": Condition(**{**own, **versus})}

    @model_validator(mode="after")
    def _supported_values(self) -> Claim:
        _validate_values(self, _WHERE.get())
        return self

    @property
    def file(self) -> str:
        return self._file

    def __eq__(self, other: object) -> bool:  # fields only: the same claim read from two files is equal
        return isinstance(other, Claim) and type(other) is type(self) and self.row() == other.row()

    def __hash__(self) -> int:
        return hash(tuple(self.row().values()))

    def replace(self, **changes: Any) -> Claim:
        """A copy with ``changes``, validated again (its ``file`` kept)."""
        new = type(self)(**{**self.row(), **changes})
        new._file = self._file
        return new

    def row(self) -> dict:
        """The claim's fields as keyword arguments (``versus`` as a :class:`Condition`), in row order."""
        return {name: getattr(self, name) for name in ROW_ORDER}

    @property
    def condition(self) -> Condition:
        return Condition(self.heads, self.patch_mode, self.source, self.receivers)

    @property
    def test_id(self) -> str:
        """``<id>-head_<slug>``: ``pytest -k head_1_10`` selects the claims about head 1:10; a claim
        whose intervention acts at hook points is ``<id>-intervention_<name>``."""
        if not self.heads:
            return f"{self.id}-intervention_{re.sub(r'[^A-Za-z0-9_]', '_', self.intervention or '')}"
        slugs = [self.condition.slug] + ([self.versus.slug] if self.versus else [])
        return f"{self.id}-" + "-".join(f"head_{s}" for s in dict.fromkeys(slugs))

    @property
    def patch_label(self) -> str:
        """What the claim patches, for reports: the mode, or ``intervention NAME``."""
        return patch_label(self.to_dict())

    def to_dict(self) -> dict:
        """The fields as JSON values; ``intervention``/``hook_points`` only when set (so a head
        patching claim's record is as before they existed)."""
        d = self.row()
        if self.versus is not None:
            d["versus"] = self.versus.to_dict()
        for name in ("intervention", "intervention_params", "hook_points", "ablations"):
            if d[name] is None:
                del d[name]
        if not d["selected_on"]:  # a claim without a discovery record: as before the field existed
            del d["selected_on"]
        if d["split"] == "all":  # every prompt of the sets: as before splits existed
            del d["split"]
        if self.kind == "patch":  # a patch claim's record is as before path claims existed
            for name in ("kind", "senders", "receivers"):
                del d[name]
        if self.kind == "circuit":
            del d["senders"], d["receivers"]
        else:  # as before circuit claims existed
            del d["criterion"], d["fraction"], d["delta"], d["subsets"]
        for name in ("hook_points", "ablations"):
            if getattr(self, name) is not None:
                d[name] = list(getattr(self, name))
        return d


# a row's fields in the order a claims file lists them (and findings record them)
ROW_ORDER = (
    "id",
    "model",
    "kind",
    "heads",
    "senders",
    "receivers",
    "patch_mode",
    "source",
    "metric",
    "direction",
    "target",
    "margin",
    "alpha",
    "split",
    "n_prompts",
    "samples",
    "max_tokens",
    "alignment",
    "seed",
    "do_sample",
    "temperature",
    "top_k",
    "top_p",
    "random_heads",
    "statistic",
    "versus",
    "intervention",
    "intervention_params",
    "hook_points",
    "ablations",
    "criterion",
    "fraction",
    "delta",
    "subsets",
    "tier",
    "description",
    "selected_on",
)
assert set(ROW_ORDER) == set(Claim.model_fields), "ROW_ORDER must list every Claim field"


def _tables_read(data: dict[str, Any], cid: str) -> dict[str, Any]:
    """A TOML row's arrays as tuples, and ``intervention = {name = "steer", scale = 4}`` as the
    intervention's name and its ``intervention_params``."""
    for name in ("hook_points", "ablations"):
        if isinstance(data.get(name), list):  # a TOML array
            data = {**data, name: tuple(data[name])}
    if isinstance(data.get("intervention"), dict):
        table = dict(data["intervention"])
        name = table.pop("name", None)
        if not isinstance(name, str) or "intervention_params" in data:
            _fail(
                cid,
                "intervention",
                data["intervention"],
                'a table names the intervention and its parameters: {name = "steer", scale = 4}',
                _WHERE.get(),
            )
        data = {**data, "intervention": name, "intervention_params": table or None}
    return data


def _fail(claim_id: str, field_name: str, value: object, problem: str, path: str) -> NoReturn:
    where = f"{path}: " if path else ""  # a claim built in Python has no file
    raise UserError(f"{where}claim {claim_id!r}: field {field_name!r} = {value!r}: {problem}")


def _split_size(c: Claim, prompt_set: PromptSet, path: str) -> int:
    """How many prompts the claim's split of a set has; a set without that split fails, named."""
    try:
        return len(prompt_set.split(c.split))
    except UserError as exc:
        _fail(c.id, "split", c.split, str(exc), path)


def _validate_values(c: Claim, path: str) -> None:

    def check(ok: object, name: str, value: object, problem: str) -> None:
        if not ok:
            _fail(c.id, name, value, problem, path)

    check(_ID.match(c.id), "id", c.id, "must be lowercase letters, digits and underscores")
    check(
        len(c.id) <= MAX_ID_LENGTH,
        "id",
        c.id,
        f"must be at most {MAX_ID_LENGTH} characters (plot files are named by it)",
    )
    if c.kind == "path" or c.senders or c.receivers:
        _validate_path(c, path)
    if c.kind == "circuit" or c.fraction is not None or c.delta or c.criterion != "faithful" or c.subsets != 5:
        _validate_circuit(c, path)
    if c.intervention is not None or c.hook_points is not None:
        _validate_intervention(c, path)
    if c.intervention is None:
        _validate_conditions(c, path, check)
    try:
        get_metric(c.metric)
        target = load_prompt_set(c.target)
    except UserError as exc:
        _fail(c.id, "metric/target", f"{c.metric}/{c.target}", str(exc), path)
    n_target = _split_size(c, target, path)
    check(
        c.direction != "equivalent" or (c.margin is not None and 0 < c.margin < math.inf),
        "margin",
        c.margin,
        "an 'equivalent' claim needs a finite margin > 0 in metric units (an infinite one cannot fail)",
    )
    check(0 < c.alpha < 0.5, "alpha", c.alpha, "must be in (0, 0.5)")
    check(2 <= c.n_prompts <= n_target, "n_prompts", c.n_prompts, f"must be in [2, {n_target}]")
    for cond, prefix in _conditions(c):
        if not cond.source:  # an intervention without source prompts
            continue
        n_source = _split_size(c, load_prompt_set(cond.source), path)  # the pair i is (source i, target i)
        check(
            c.n_prompts <= n_source,
            "n_prompts",
            c.n_prompts,
            f"{prefix}source {cond.source!r} has only {n_source} prompts",
        )
    check(
        c.samples >= 1 and (c.do_sample or c.samples == 1),
        "samples",
        c.samples,
        "must be >= 1, and 1 with greedy decoding",
    )
    check(c.max_tokens >= 1, "max_tokens", c.max_tokens, "must be >= 1")
    check(0 <= c.seed <= MAX_COUNT, "seed", c.seed, f"must be in [0, {MAX_COUNT}]")
    check(
        MIN_TEMPERATURE <= c.temperature < math.inf,
        "temperature",
        c.temperature,
        f"must be finite and >= {MIN_TEMPERATURE} (smaller ones overflow the logits; greedy is do_sample = false)",
    )
    check(0 < c.top_p <= 1, "top_p", c.top_p, "must be in (0, 1]")
    check(0 <= c.top_k <= MAX_COUNT, "top_k", c.top_k, f"must be in [0, {MAX_COUNT}] (0 = no top-k filter)")
    check(
        0 <= c.random_heads <= MAX_RANDOM_HEADS,
        "random_heads",
        c.random_heads,
        f"must be in [0, {MAX_RANDOM_HEADS}] (each is a full patched generation)",
    )
    check(c.samples <= MAX_SAMPLES, "samples", c.samples, f"must be <= {MAX_SAMPLES}")
    check(c.max_tokens <= MAX_TOKENS, "max_tokens", c.max_tokens, f"must be <= {MAX_TOKENS}")
    check(
        c.statistic == "mean" or c.direction != "equivalent",
        "statistic",
        c.statistic,
        "an 'equivalent' claim is a TOST on the mean; 'sign' is for increase/decrease claims",
    )


def _conditions(c: Claim) -> tuple[tuple[Condition, str], ...]:
    """The claim's condition and its versus condition, each with its fields' prefix in messages."""
    return ((c.condition, ""), *(((c.versus, "versus."),) if c.versus else ()))


def _validate_conditions(c: Claim, path: str, check: Callable[[object, str, object, str], None]) -> None:
    """Each patch condition's heads parse, its mode is registered and its source is an emotion (or the target)."""
    for cond, prefix in _conditions(c):
        try:
            parse_head_spec(cond.heads)
        except UserError as exc:
            _fail(c.id, prefix + "heads", cond.heads, str(exc), path)
        check(
            cond.patch_mode in available_modes(),
            prefix + "patch_mode",
            cond.patch_mode,
            did_you_mean("patch mode", cond.patch_mode, available_modes()),
        )
        check(
            cond.source in emotions() or cond.source == c.target,
            prefix + "source",
            cond.source,
            did_you_mean("emotion", cond.source, emotions()) + f" (or the target set {c.target!r})",
        )
        check(
            cond.patch_mode != RESAMPLE or cond.source == c.target or c.kind == "circuit",
            prefix + "source",
            cond.source,
            f"a resample ablation draws each target prompt's replacement from the target set: "
            f"set source = {c.target!r}",
        )
    if c.ablations is not None:
        _validate_ablations(c, path)


def _validate_circuit(c: Claim, path: str) -> None:
    """A circuit claim: heads (the circuit), an ablation mode for the heads outside it, an emotion
    source (the behaviour is source vs target prompts), and its criterion's numbers."""

    def fail(name: str, value: object, problem: str) -> NoReturn:
        _fail(c.id, name, value, problem, path)

    if c.kind != "circuit":
        fail("criterion/fraction/delta", c.criterion, 'are for a circuit claim: set kind = "circuit"')
    if c.intervention is not None or c.versus is not None:
        fail("kind", c.kind, "a circuit claim has no intervention and no versus (compare two circuit claims)")
    if c.patch_mode not in ABLATIONS:
        fail(
            "patch_mode",
            c.patch_mode,
            f"a circuit claim's patch_mode ablates the heads outside it: one of {', '.join(ABLATIONS)}",
        )
    if c.source == c.target:
        fail("source", c.source, "a circuit reproduces the model's source-vs-target effect: name an emotion source")
    if c.criterion == "faithful" and c.direction == "increase":
        if c.fraction is None or not 0 < c.fraction <= 1:
            fail(
                "fraction",
                c.fraction,
                "a faithful circuit claim needs the fraction of the full model's effect "
                "it reproduces at least, in (0, 1]",
            )
    elif c.criterion == "faithful" and c.direction != "equivalent":
        fail("direction", c.direction, "a faithful circuit claim is 'increase' (at least fraction) or 'equivalent'")
    if c.criterion == "minimal" and (c.direction != "increase" or not 0 <= c.delta < 1):
        fail(
            "delta",
            c.delta,
            "a minimal circuit claim is 'increase', with delta in [0, 1): each head lowers "
            "faithfulness by more than delta",
        )
    if c.criterion == "complete" and (c.direction != "equivalent" or not 1 <= c.subsets <= 100):
        fail("subsets", c.subsets, "a complete circuit claim is 'equivalent' (with a margin), over 1 to 100 subsets")
    items = parse_head_spec(c.heads).items
    if c.criterion == "minimal" and len(items) < 2 and all(h is not None for _, h in items):
        fail("heads", c.heads, "minimality is about removing one head of several")


def _validate_ablations(c: Claim, path: str) -> None:
    """Necessity under several ablations: known ablation modes, the claim's own among them, a
    directional patch claim (each ablation is one more patched run of the same heads)."""

    def fail(name: str, value: object, problem: str) -> NoReturn:
        _fail(c.id, name, value, problem, path)

    modes = c.ablations or ()
    if len(modes) < 2 or len(set(modes)) != len(modes) or not set(modes) <= set(ABLATIONS):
        fail("ablations", list(modes), f"must list at least two different ones of {', '.join(ABLATIONS)}")
    if c.patch_mode not in modes:
        fail("patch_mode", c.patch_mode, f"a claim with ablations uses one of them ({', '.join(modes)}) as its own")
    if c.kind == "circuit":  # they ablate the heads outside the circuit (harness.claims.circuit)
        return
    if c.versus is not None or c.kind != "patch" or c.direction == "equivalent":
        fail("ablations", list(modes), "are for a directional patch claim without versus")
    if c.source != c.target:
        fail(
            "source",
            c.source,
            f"an ablation claim's source is its target set {c.target!r} (zero, mean and "
            "resample replace the head's own output on those prompts)",
        )


def _validate_path(c: Claim, path: str) -> None:
    """A path claim: senders (its heads), receivers that parse, a z-valued patch mode, no intervention."""

    def fail(name: str, value: object, problem: str) -> NoReturn:
        _fail(c.id, name, value, problem, path)

    if c.kind != "path":
        fail("senders/receivers", c.senders or c.receivers, 'are for a path claim: set kind = "path"')
    if c.intervention is not None:
        fail("intervention", c.intervention, "a path claim patches its senders with a patch mode")
    if c.heads != c.senders:
        fail("heads", c.heads, f"a path claim's heads are its senders ({c.senders!r}): give senders only")
    for value, name in ((c.receivers, "receivers"), *(((c.versus.receivers, "versus.receivers"),) if c.versus else ())):
        parts = [p.strip() for p in value.split(",")] if isinstance(value, str) else []
        specs = [p for p in parts if p not in ("direct", "later")]
        if not value.strip() or any(not p for p in parts):
            fail(name, value, "name later heads (e.g. '22:*'), 'later', 'direct', or a comma-separated mix")
        if specs:
            try:
                parse_head_spec(",".join(specs))
            except UserError as exc:
                fail(name, value, str(exc))
    for mode, name in (
        (c.patch_mode, "patch_mode"),
        *(((c.versus.patch_mode, "versus.patch_mode"),) if c.versus else ()),
    ):
        if mode in available_modes():
            try:
                check_path_mode(mode)
            except UserError as exc:
                fail(name, mode, str(exc))


def _validate_intervention(c: Claim, path: str) -> None:
    """An intervention claim: a registered intervention, applied where it can apply, no patch mode."""

    def fail(name: str, value: object, problem: str) -> NoReturn:
        _fail(c.id, name, value, problem, path)

    if c.intervention is None:
        fail("hook_points", c.hook_points, "is for an intervention claim: set 'intervention' too")
    try:
        iv = get_intervention(c.intervention)
    except UserError as exc:
        fail("intervention", c.intervention, str(exc))
    if c.patch_mode:
        fail("patch_mode", c.patch_mode, "an intervention claim has no patch mode: the intervention is its patch")
    if c.versus is not None:
        fail("versus", c.versus, "an intervention claim cannot have a versus condition (compare two claims instead)")
    (_validate_per_head if iv.per_head else _validate_hook_points)(c, iv.name, fail)
    problem = iv.parameter_problem(c.intervention_params or {})
    if problem:
        fail("intervention", c.to_dict().get("intervention_params"), problem)
    if c.source and c.source not in emotions() and c.source != c.target:
        fail(
            "source",
            c.source,
            did_you_mean("emotion", c.source, emotions()) + " (an intervention's source only names keywords)",
        )


def _validate_per_head(c: Claim, name: str, fail: Callable[[str, object, str], NoReturn]) -> None:
    """A per-head intervention names the heads it acts on, and no hook points."""
    if not c.heads or c.hook_points is not None:
        fail("heads", c.heads, f"intervention {name!r} is per_head: name the heads it acts on, no hook_points")
    try:
        parse_head_spec(c.heads)
    except UserError as exc:
        fail("heads", c.heads, str(exc))


def _validate_hook_points(c: Claim, name: str, fail: Callable[[str, object, str], NoReturn]) -> None:
    """An intervention at hook points names valid ones, no heads, and has no random-head control."""
    if c.heads:
        fail(
            "heads",
            c.heads,
            f"intervention {name!r} acts at hook points, not on heads: give hook_points "
            "(or register it with per_head=True)",
        )
    if not c.hook_points:
        fail("hook_points", c.hook_points, f"intervention {name!r} needs hook_points, e.g. blocks.0.hook_resid_post")
    for point in c.hook_points or ():
        if not isinstance(point, str) or not HOOK_POINT.match(point):
            fail("hook_points", point, "is not a hook point name such as blocks.3.hook_resid_post")
    if c.random_heads:
        fail(
            "random_heads",
            c.random_heads,
            f"a random-head control needs a head-shaped intervention; {name!r} acts at hook points "
            f"{', '.join(c.hook_points or ())}, which are not heads (set random_heads = 0, or register "
            "a per_head intervention and name heads)",
        )


def load_claims(path: str) -> list[Claim]:
    """Read and validate every claim of a TOML claims file."""

    data = read_toml(path, "claims file")
    other = sorted(set(data) - {"claim"})
    if other:  # a misspelt [[claims]] table would otherwise drop its claims without a word
        raise UserError(
            f"claims file {path}: unknown top-level key(s) {', '.join(repr(k) for k in other)}: "
            f"every claim is a [[claim]] table"
        )
    rows = data.get("claim")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise UserError(f"claims file {path}: no [[claim]] tables")
    claims, seen = [], set()
    token = _WHERE.set(path)
    try:
        for k, row in enumerate(rows):
            if "id" not in row:  # named by its 1-based row
                missing = ", ".join(f for f in REQUIRED if f not in row)
                raise UserError(f"{path}: claim '#{k + 1}': missing field(s) {missing}")
            claim = Claim(**row)
            claim._file = path
            if claim.id in seen:
                _fail(claim.id, "id", claim.id, "is used by another claim", path)
            seen.add(claim.id)
            claims.append(claim)
    finally:
        _WHERE.reset(token)
    return claims


def with_overrides(claim: Claim, origin: str = "", **overrides: Any) -> Claim:
    """The claim with run-time overrides (``--profile``, ``--n-prompts``, ``--samples``, ``--seed``)
    applied and validated again; ``origin`` (e.g. ``"--n-prompts 500"``) is named in any error."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return claim
    label = origin or ", ".join(f"{k}={v!r}" for k, v in given.items())
    token = _WHERE.set(f"{claim.file or 'claim'} with {label}")
    try:
        new = claim.replace(**given)
    finally:
        _WHERE.reset(token)
    return new


def load_claim_files(paths: Iterable[str]) -> list[Claim]:
    """Claims of several files; ids must be unique across them."""
    claims: list[Claim] = []
    where: dict[str, str] = {}
    for path in paths:
        for c in load_claims(path):
            if c.id in where:
                _fail(c.id, "id", c.id, f"is also used in {where[c.id]}", path)
            where[c.id] = path
            claims.append(c)
    return claims


def _toml_value(v: object) -> str:
    import json

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")  # TOML's spelling, not JSON's Infinity
    if isinstance(v, (int, float, str)):
        return json.dumps(v, ensure_ascii=False)  # a JSON string or number is a valid TOML one
    raise TypeError(f"claim value {v!r} has no TOML form here")


def claims_toml(rows: list[dict], header: str = "") -> str:
    """``[[claim]]`` tables for ``rows`` (flat dicts; ``versus`` as an inline table), with a comment header."""
    out = [f"# {line}".rstrip() for line in header.splitlines()]
    for row in rows:
        out += ["", "[[claim]]"] + [f"{k} = {_toml_value(v)}" for k, v in row.items() if v is not None]
    return "\n".join(out).lstrip("\n") + "\n"
