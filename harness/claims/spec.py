"""Claims as data: one frozen record per row of a TOML claims file.

A claims file holds ``[[claim]]`` tables. Fields (defaults in brackets):

``id``                 unique, lowercase letters, digits and ``_``
``model``              registered model name or HF id (see :mod:`harness.models`)
``heads``              head spec, e.g. ``"1:10"``, ``"1:10,0:0"``, ``"1:*"``
``patch_mode``         z, pattern_v, v_only, pattern_only, zero, mean
``source``             emotion whose prompts are the patch source
``target``             target prompt set [neutral]
``metric``             a registered text metric, e.g. ``gratitude_keywords``
``direction``          ``increase`` | ``decrease`` | ``equivalent``
``margin``             equivalence margin in metric units (required for ``equivalent``)
``alpha``              [0.05]
``n_prompts``          [70]; ``samples`` [1]; ``max_tokens`` [30]; ``alignment`` [end]
``seed``               [0]; ``do_sample`` [true]; ``temperature`` [1.0]; ``top_k`` [50]; ``top_p`` [1.0]
``random_heads``       K random heads (same layers, same count) as a control [0 = none]; in a
                       ``versus`` claim they go through the same contrast (see ClaimSession)
``statistic``          what a directional claim tests: ``mean`` (sign-flip permutation test of
                       the mean Δ, bootstrap CI) or ``sign`` (exact sign test: do more prompts
                       move the claimed way than the other, median Δ with its CI) [mean]. Both
                       are always reported; this field, set before the run, decides the verdict
``versus``             optional table overriding ``heads``/``patch_mode``/``source``: the claim is
                       then about the per-prompt difference between the two conditions
``tier``               ``fast`` (per-commit suite) | ``slow`` [slow]
``description``        free text

The quantity tested per prompt is Δ = mean over samples of (patched − baseline), or, with
``versus``, Δ_claim − Δ_versus (the baseline is shared, so this is patched_A − patched_B).
Invalid rows fail when the file is loaded, naming the claim, the field and the value.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields, replace

from harness.errors import UserError, did_you_mean
from harness.metrics import get_metric
from harness.patch.heads import parse_head_spec
from harness.patch.modes import ALIGNMENTS, MODES
from harness.run.profiles import read_toml
from harness.run.prompts import emotions, load_prompt_set

DIRECTIONS = ("increase", "decrease", "equivalent")
TIERS = ("fast", "slow")
STATISTICS = ("mean", "sign")
_ID = re.compile(r"^[a-z0-9_]+$")


@dataclass(frozen=True)
class Condition:
    heads: str
    patch_mode: str
    source: str

    @property
    def slug(self) -> str:
        return parse_head_spec(self.heads).slug


@dataclass(frozen=True)
class Claim:
    id: str
    model: str
    heads: str
    patch_mode: str
    source: str
    metric: str
    direction: str
    target: str = "neutral"
    margin: float | None = None
    alpha: float = 0.05
    n_prompts: int = 70
    samples: int = 1
    max_tokens: int = 30
    alignment: str = "end"
    seed: int = 0
    do_sample: bool = True
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    random_heads: int = 0
    statistic: str = "mean"
    versus: Condition | None = None
    tier: str = "slow"
    description: str = ""
    file: str = field(default="", compare=False)

    @property
    def condition(self) -> Condition:
        return Condition(self.heads, self.patch_mode, self.source)

    @property
    def test_id(self) -> str:
        """``<id>-head_<slug>``: ``pytest -k head_1_10`` selects the claims about head 1:10."""
        slugs = [self.condition.slug] + ([self.versus.slug] if self.versus else [])
        return f"{self.id}-" + "-".join(f"head_{s}" for s in dict.fromkeys(slugs))

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("file")
        return d


_FIELD_TYPES = {f.name: f.type for f in fields(Claim) if f.name not in ("file",)}
_SIMPLE = {"str": str, "int": int, "float": (int, float), "bool": bool, "float | None": (int, float)}


def _fail(claim_id: str, field_name: str, value, problem: str, path: str):
    raise UserError(f"{path}: claim {claim_id!r}: field {field_name!r} = {value!r}: {problem}")


def _validate_types(row: dict, cid: str, path: str) -> None:
    for key, value in row.items():
        if key not in _FIELD_TYPES:
            raise UserError(f"{path}: claim {cid!r}: " + did_you_mean("field", key, _FIELD_TYPES))
        if key == "versus":
            continue
        expected = _SIMPLE[_FIELD_TYPES[key]]
        if isinstance(value, bool) and _FIELD_TYPES[key] != "bool" or not isinstance(value, expected):
            _fail(cid, key, value, f"must be of type {_FIELD_TYPES[key]}", path)


def _validate_values(c: Claim, path: str) -> None:

    def check(ok, name, value, problem):
        if not ok:
            _fail(c.id, name, value, problem, path)

    check(_ID.match(c.id), "id", c.id, "must be lowercase letters, digits and underscores")
    for cond, prefix in ((c.condition, ""), *(((c.versus, "versus."),) if c.versus else ())):
        try:
            parse_head_spec(cond.heads)
        except UserError as exc:
            _fail(c.id, prefix + "heads", cond.heads, str(exc), path)
        check(
            cond.patch_mode in MODES,
            prefix + "patch_mode",
            cond.patch_mode,
            did_you_mean("patch mode", cond.patch_mode, MODES),
        )
        check(
            cond.source in emotions() or cond.source == c.target,
            prefix + "source",
            cond.source,
            did_you_mean("emotion", cond.source, emotions()) + f" (or the target set {c.target!r})",
        )
    try:
        get_metric(c.metric)
        n_target = len(load_prompt_set(c.target).prompts)
    except UserError as exc:
        _fail(c.id, "metric/target", f"{c.metric}/{c.target}", str(exc), path)
    check(c.direction in DIRECTIONS, "direction", c.direction, f"must be one of {', '.join(DIRECTIONS)}")
    check(
        c.direction != "equivalent" or (c.margin is not None and 0 < c.margin < math.inf),
        "margin",
        c.margin,
        "an 'equivalent' claim needs a finite margin > 0 in metric units (an infinite one cannot fail)",
    )
    check(0 < c.alpha < 0.5, "alpha", c.alpha, "must be in (0, 0.5)")
    check(2 <= c.n_prompts <= n_target, "n_prompts", c.n_prompts, f"must be in [2, {n_target}]")
    for cond, prefix in ((c.condition, ""), *(((c.versus, "versus."),) if c.versus else ())):
        n_source = len(load_prompt_set(cond.source).prompts)  # the pair i is (source i, target i)
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
    check(c.seed >= 0, "seed", c.seed, "must be >= 0")
    check(0 < c.temperature < math.inf, "temperature", c.temperature, "must be finite and > 0")
    check(0 < c.top_p <= 1, "top_p", c.top_p, "must be in (0, 1]")
    check(c.top_k >= 0, "top_k", c.top_k, "must be >= 0 (0 = no top-k filter)")
    check(c.alignment in ALIGNMENTS, "alignment", c.alignment, f"must be one of {', '.join(ALIGNMENTS)}")
    check(c.random_heads >= 0, "random_heads", c.random_heads, "must be >= 0")
    check(c.statistic in STATISTICS, "statistic", c.statistic, f"must be one of {', '.join(STATISTICS)}")
    check(
        c.statistic == "mean" or c.direction != "equivalent",
        "statistic",
        c.statistic,
        "an 'equivalent' claim is a TOST on the mean; 'sign' is for increase/decrease claims",
    )
    check(c.tier in TIERS, "tier", c.tier, f"must be one of {', '.join(TIERS)}")


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
    for k, row in enumerate(rows):
        cid = row.get("id", f"#{k + 1}")
        missing = [f for f in ("id", "model", "heads", "patch_mode", "source", "metric", "direction") if f not in row]
        if missing:
            raise UserError(f"{path}: claim {cid!r}: missing field(s) {', '.join(missing)}")
        _validate_types(row, cid, path)
        versus = row.get("versus")
        if versus is not None:
            if not isinstance(versus, dict) or set(versus) - {"heads", "patch_mode", "source"} or not versus:
                _fail(cid, "versus", versus, "must be a table with some of heads, patch_mode, source", path)
            versus = Condition(
                **{"heads": row["heads"], "patch_mode": row["patch_mode"], "source": row["source"], **versus}
            )
        claim = Claim(**{**row, "versus": versus}, file=path)
        if claim.id in seen:
            _fail(cid, "id", claim.id, "is used by another claim", path)
        seen.add(claim.id)
        _validate_values(claim, path)
        claims.append(claim)
    return claims


def with_overrides(claim: Claim, origin: str = "", **overrides) -> Claim:
    """The claim with run-time overrides (``--profile``, ``--n-prompts``, ``--samples``, ``--seed``)
    applied and validated again; ``origin`` (e.g. ``"--n-prompts 500"``) is named in any error."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return claim
    new = replace(claim, **given)
    _validate_values(new, f"{claim.file or 'claim'} with {origin or ', '.join(f'{k}={v!r}' for k, v in given.items())}")
    return new


def load_claim_files(paths) -> list[Claim]:
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


def _toml_value(v) -> str:
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
