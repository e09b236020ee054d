"""Pre-registration: a claims file's claims recorded, with a time, before they are evaluated.

``causal-heads preregister claims.toml`` writes (or extends) ``claims.registry.json`` beside the
file, to be committed with it: each registration holds its time, the file's sha256 and each
claim's digest (the sha256 of its fields as recorded in findings, its free-text ``description``
aside, so any change to what is tested is a new claim). The same registry keeps a ledger of
first evaluations: every evaluation of a claim from a file that has a registry records, once,
when that claim (that digest) was first evaluated; ``preregister`` also reads them from a
findings document (``--findings``, default ``reports/findings.json``), so a claim evaluated
before the registry existed is not taken for pre-registered. Findings then say per claim
(``preregistration``) when it was registered, when first evaluated, and whether the
registration came first. A file without a registry has no ``preregistration`` record.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from typing import Any

from harness.claims.spec import Claim, load_claims
from harness.core.errors import UserError
from harness.core.results import atomic_write_text, load_versioned

SCHEMA, VERSION = "causal-heads/registry", 1
SUFFIX = ".registry.json"


def now() -> str:
    """UTC to the microsecond (an evaluation in the second of a registration still orders after it)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def registry_path(claims_file: str) -> str:
    """``claims.toml`` -> ``claims.registry.json`` beside it."""
    return os.path.splitext(claims_file)[0] + SUFFIX


def claim_digest(record: dict[str, Any]) -> str:
    """The sha256 of a claim's fields (``Claim.to_dict()``, or a findings record's ``claim``): its
    description aside, and fields at their default left out, so a field added to claims later
    (with a default) does not change the digest of a claim registered before it existed."""
    defaults = {name: f.default for name, f in Claim.model_fields.items()}
    fields = {k: v for k, v in record.items() if k != "description" and not (k in defaults and _same(v, defaults[k]))}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _same(value: Any, default: Any) -> bool:
    """A recorded value equal to a field's default (JSON lists for tuples)."""
    return value == (list(default) if isinstance(default, tuple) else default)


def read_registry(path: str) -> dict[str, Any]:
    """A registry document (empty when ``path`` does not exist), checked; errors name the file."""
    if not os.path.exists(path):
        return {"schema": SCHEMA, "schema_version": VERSION, "registrations": [], "first_evaluated": {}}
    doc = load_versioned(path, SCHEMA, VERSION, "registry")
    regs, firsts = doc.get("registrations"), doc.get("first_evaluated")
    ok = isinstance(regs, list) and all(
        isinstance(r, dict) and isinstance(r.get("time"), str) and isinstance(r.get("claims"), dict) for r in regs
    )
    if not ok or not isinstance(firsts, dict) or not all(isinstance(v, str) for v in firsts.values()):
        raise UserError(f"{path}: not a valid registry (registrations with time and claims, first_evaluated times)")
    return doc


def _write(path: str, doc: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


def _at(stamp: str) -> datetime:
    """A recorded time (ISO 8601; findings' ``created`` has seconds, the registry microseconds)."""
    return datetime.fromisoformat(stamp)


def registered_at(doc: dict[str, Any], claim_id: str, digest: str) -> str | None:
    """When this claim (id and digest) was first registered, or None."""
    times = [r["time"] for r in doc["registrations"] if r["claims"].get(claim_id) == digest]
    return min(times, key=_at) if times else None


def register(
    claims_file: str,
    claims: list[Claim],
    findings: dict[str, Any] | None = None,
    *,
    already_evaluated: bool = False,
) -> list[dict[str, Any]]:
    """Register ``claims`` (loaded from ``claims_file``) now; evaluations found in ``findings`` (a
    findings document) enter the ledger first, and with ``already_evaluated`` every claim not in
    it is entered as evaluated at this registration (claims known to have been run before, with
    no record of when). Per claim: id, digest, when registered (now, or earlier for an unchanged
    claim), when first evaluated (or None) and whether it was registered before that."""
    path = registry_path(claims_file)
    doc = read_registry(path)
    if findings is not None:
        when = str(findings.get("created") or now())
        for r in findings.get("claims", []):
            doc["first_evaluated"].setdefault(claim_digest(r["claim"]), when)
    with open(claims_file, "rb") as fh:
        file_sha = hashlib.sha256(fh.read()).hexdigest()
    stamp = now()
    digests = {c.id: claim_digest(c.to_dict()) for c in claims}
    if already_evaluated:
        for d in digests.values():
            doc["first_evaluated"].setdefault(d, stamp)
    doc["registrations"].append({"time": stamp, "file": os.path.basename(claims_file), "file_sha256": file_sha,
                                 "claims": digests})  # fmt: skip
    _write(path, doc)
    return [_status(doc, cid, d) for cid, d in digests.items()]


def _status(doc: dict[str, Any], claim_id: str, digest: str) -> dict[str, Any]:
    registered = registered_at(doc, claim_id, digest)
    first = doc["first_evaluated"].get(digest)
    return {
        "id": claim_id,
        "registered": registered,
        "first_evaluated": first,
        "before_first_evaluation": registered is not None and (first is None or _at(registered) < _at(first)),
    }


def preregistration(claims: list[Claim], when: str | None = None) -> dict[str, dict[str, Any]]:
    """Per claim id, for claims whose file has a registry and that run as the file writes them
    (not changed by run options): its pre-registration record, this evaluation (at ``when``)
    entered in the ledger if it is the claim's first."""
    when = when or now()
    out: dict[str, dict[str, Any]] = {}
    by_registry: dict[str, list[Claim]] = {}
    for c in claims:
        if c.file and os.path.exists(registry_path(c.file)):
            by_registry.setdefault(registry_path(c.file), []).append(c)
    for path, group in by_registry.items():
        doc = read_registry(path)
        digests = {c.id: claim_digest(c.to_dict()) for c in group}
        # a claim run with overrides (--seed, --n-prompts, a profile) is not the file's claim: no record
        as_written = {c.id: claim_digest(c.to_dict()) for c in load_claims(group[0].file)}
        digests = {cid: d for cid, d in digests.items() if as_written.get(cid) == d}
        new = {d: when for d in digests.values() if d not in doc["first_evaluated"]}
        if new:
            doc["first_evaluated"].update(new)
            _write(path, doc)
        for cid, d in digests.items():
            out[cid] = {"registry": os.path.basename(path), **_status(doc, cid, d)}
            del out[cid]["id"]
    return out
