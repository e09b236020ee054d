"""What the plugin checks before a claims run does any work, and what it records about its selection.

- :data:`XDIST_REFUSAL`: claims never run under pytest-xdist (``-n``). One correction family needs
  every claim's p-value in one process; each worker would evaluate the whole family again and
  the controller gathers no findings. A claim file is a collection error on the workers (pytest
  then stops before any test: exit 2), a test function marked with a claim fails before any
  generation, and the controller's exit status is 2.
- :func:`check_outputs`: the same output rules as the commands, applied once the run is known to
  evaluate claims (a suite without claims is never refused for its ``reports`` folder): every
  location writable, ``--findings`` and ``--html`` distinct, neither one of the run's inputs (a
  claims file, its registry, a prompt set or keyword list), and an existing file of another kind
  (not a findings document; not an HTML page) refused without ``--force-outputs``.
- :func:`selection`: how the run chose its claims (``-k``, ``-m``, ``--lf``, ``--sw``,
  ``--deselect``, node ids) for the findings' ``selection`` record; a run that could have left
  claims out without them being known (``--lf`` and ``--sw`` skip whole files, node ids collect
  part of one) is not complete.
- :func:`skipped`: whether a ``skip`` or a true ``skipif`` leaves an item's claim out of the family.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from harness.core.errors import UserError
from harness.core.results import check_replaceable, check_writable, refuse_inputs_as_outputs
from harness.run.prompts import prompts_dir

XDIST_REFUSAL = (
    "causal-heads: claims cannot run under pytest-xdist (-n): one correction family needs every claim's "
    "p-value in one process; run them without -n (their runs are already planned and batched; "
    "--backend ray spreads them over processes)"
)
FINDINGS_SCHEMA = "causal-heads/findings"


def under_xdist(config: pytest.Config) -> bool:
    """A worker process of pytest-xdist."""
    return hasattr(config, "workerinput")


def check_outputs(config: pytest.Config, findings: str, html: str | None, claim_files: list[str]) -> None:
    """Raise :class:`UserError` when the run could not write, or would destroy, what it does not own."""
    force = bool(config.getoption("--force-outputs"))
    check_writable("--findings", findings, extensions=(".json",))
    if html:
        check_writable("--html", html, extensions=(".html", ".htm"))
        if os.path.realpath(html) == os.path.realpath(findings):
            raise UserError(f"--html {html!r} is the --findings file; give the report another name")
    inputs = list(claim_files) + [os.path.splitext(p)[0] + ".registry.json" for p in claim_files]
    folder = prompts_dir()
    if os.path.isdir(folder):
        inputs += [os.path.join(folder, name) for name in os.listdir(folder)]
    refuse_inputs_as_outputs({"--findings": findings, "--html": html}, inputs)
    check_replaceable("--findings", findings, FINDINGS_SCHEMA, force, "--force-outputs")
    if html and not force and os.path.isfile(html):
        with open(html, "rb") as fh:
            head = fh.read(512).lstrip().lower()
        if not head.startswith((b"<!doctype html", b"<html")):
            raise UserError(
                f"--html {html!r} holds a file that is not an HTML page; pass --force-outputs to replace it"
            )


def selection(config: pytest.Config) -> dict[str, Any]:
    """The options that chose this run's claims, as the findings record them (empty: none)."""
    out: dict[str, Any] = {}
    keyword, markers = config.getoption("keyword", ""), config.getoption("markexpr", "")
    if keyword:
        out["keyword"] = keyword
    if markers:
        out["markers"] = markers
    lf = config.pluginmanager.get_plugin("lfplugin")
    if lf is not None and getattr(lf, "active", False) and getattr(lf, "lastfailed", None):
        out["last_failed"] = True  # files without a failure are not even collected
    if config.getoption("stepwise", False):
        out["stepwise"] = True
    deselect = config.getoption("deselect", None) or []
    if deselect:
        out["deselect"] = list(deselect)
    node_ids = [a for a in config.args if "::" in a]
    if node_ids:
        out["node_ids"] = node_ids
    return out


def selection_is_partial(chosen: dict[str, Any]) -> bool:
    """Whether the selection could have left claims out that the run cannot name."""
    return bool(chosen.get("last_failed") or chosen.get("stepwise") or chosen.get("node_ids"))


def skipped(item: pytest.Item) -> bool:
    """A ``skip`` mark, or a ``skipif`` whose condition holds (pytest's own evaluation)."""
    from _pytest.skipping import evaluate_skip_marks  # pytest's evaluation of skip/skipif marks

    try:
        return evaluate_skip_marks(item) is not None
    except Exception:  # a condition that cannot be evaluated: pytest reports it when the test runs
        return False
