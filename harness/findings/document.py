"""Build a findings document from evaluated claims: the one place its top-level fields are set."""

from __future__ import annotations

import datetime as dt

from harness.core.results import environment
from harness.findings.schema import FINDINGS_SCHEMA, FINDINGS_VERSION


def findings_document(
    claims: list[dict],
    *,
    correction: str,
    profile: str | None = None,
    models: dict | None = None,
    data_files: dict | None = None,
    not_run: list[str] = (),  # type: ignore[assignment]
    interrupted: bool = False,
    not_selected: list[str] = (),  # type: ignore[assignment]
    selection: dict | None = None,
    partial: bool = False,
) -> dict:
    """The versioned findings document of one run: provenance (git, packages, models, data files),
    the run's correction and profile, one record per claim (:meth:`ClaimResult.to_dict`), and
    whether the run was ``complete``: false, with the ids of the selected claims it did ``not_run``,
    when it was cut short (``-x``, Ctrl-C), or with the ids of the family's claims it did not
    select (``not_selected``: ``-k``, ``-m``, ``--deselect``), or when its ``selection`` (the options
    that chose its claims) was ``partial``: ``--lf``, ``--sw`` or node ids, which leave claims out
    before they are collected; the regression refuses such a side."""
    doc = {
        "schema": FINDINGS_SCHEMA,
        "schema_version": FINDINGS_VERSION,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "correction": correction,
        "profile": profile,
        **environment(),
        "complete": not not_run and not interrupted and not not_selected and not partial,
        "not_run": list(not_run),
        **({"not_selected": list(not_selected)} if not_selected else {}),
        **({"selection": dict(selection)} if selection else {}),
        "claims": list(claims),
    }
    if models is not None:
        doc["models"] = models
    if data_files is not None:
        doc["data_files"] = dict(sorted(data_files.items()))
    return doc
