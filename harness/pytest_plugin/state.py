"""The plugin's state for one pytest run: one typed object, registered with pytest as a plugin.

:class:`ClaimsRun` is made in ``pytest_configure`` (placement options checked, outputs pending)
and registered under :data:`NAME`, as pytest-html registers its report object; every part of the
plugin reaches it with :func:`claims_run`. It holds the run's :class:`ClaimSession` (made on first
use), the result records in evaluation order, the models the collected claim files are about,
the outputs to put in place together at the end (findings, and the ``--html`` report that
pytest-html writes to a staged path), and whether the session selected claims.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from harness.core.outputs import PendingFiles
from harness.pytest_plugin.guards import XDIST_REFUSAL

if TYPE_CHECKING:  # the plugin starts without torch: the session is imported when claims are collected
    from harness.claims.session import ClaimSession

NAME = "causal_heads_run"


@dataclass(eq=False)  # a plugin with hooks: pluggy keeps plugins in sets (identity hash)
class ClaimsRun:
    """What the plugin knows about the current run (see the module docstring)."""

    placement: dict[str, Any]  # device, dtype, batch size, planned and backend (checked at configure)
    pending: PendingFiles = field(default_factory=PendingFiles)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # claim id -> result record
    models_seen: set[str] = field(default_factory=set)  # before --model filtering
    family: list[str] = field(default_factory=list)  # every collected runnable claim's id, before -k/-m/--lf
    session: ClaimSession | None = None
    selected_claims: bool = False  # set at session finish
    html_path: str | None = None  # where the --html report goes once the run commits
    findings_path: str | None = None  # where the findings went (--findings, or its .partial beside it)
    write_failed: str | None = None  # why the findings could not be written
    pytest_session: pytest.Session | None = None  # set at session finish: a failed commit sets its exit status
    xdist_refused: bool = False  # a worker refused a claim test (harness.pytest_plugin.guards.XDIST_REFUSAL)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """On the xdist controller, every worker's reports arrive here: note a refused claim test."""
        self.xdist_refused |= bool(report.failed and XDIST_REFUSAL in (report.longreprtext or ""))

    pytest_collectreport = pytest_runtest_logreport  # ... and a claim file the workers refused to collect


def claims_run(config: pytest.Config) -> ClaimsRun:
    """The run's state (registered by the plugin's ``pytest_configure``)."""
    run = config.pluginmanager.get_plugin(NAME)
    if not isinstance(run, ClaimsRun):
        raise RuntimeError("the causal-heads plugin was not configured for this run")
    return run
