"""pytest-html columns and per-claim evidence for the claims suite (active with ``--html``).

Summary columns come through pytest-html's hooks: verdict, effect (mean Δ; median Δ, marked,
for claims decided by the sign test), 95% CI, p raw /
adjusted, Cohen's dz, n, random-head percentile, prompts up / down with the median Δ and
the sign test's p, the data warnings (``floor``, ``ceiling``, ``untestable``, ``inert``: see
:func:`harness.claims.data_warnings.data_warnings`) and how many prompts' generations the patch changed
token for token. The same values head the page as a static table, one row per claim
(:func:`summary_table`; pytest-html draws its own results table with JavaScript). Each
claim's row expands to its settings, a forest plot of its effect and CI against the
random-head effects, side-by-side baseline vs patched generations of the prompts
picked by :func:`harness.claims.examples.pick_examples` (with why), and every prompt's generations.
Everything shown is built from the claim result attached to the report (``user_properties``),
and every value is escaped with :func:`html.escape`: generated text and prompts are untrusted.

pytest-html writes its report with a plain ``open(path, "w")`` at session end; :func:`stage_report`
gives it a staged path instead (through its public ``htmlpath`` option, before its
``pytest_configure``), a temporary of the run's pending outputs
(:class:`harness.core.outputs.PendingFiles`) put in place together with the findings when the run
ends, so an interrupted run never leaves half an evidence file, nor an HTML report that
disagrees with the findings. Only pytest-html's hooks are used (``pytest_html_report_title``
keeps the page titled by its real name).
"""

from __future__ import annotations

import os
from html import escape
from typing import Any

import pytest

from harness.claims.examples import changes_text
from harness.core.results import git_info, package_versions
from harness.model import groundtruth
from harness.pytest_plugin.guards import under_xdist
from harness.pytest_plugin.state import ClaimsRun, claims_run
from harness.report.circuit_block import circuit_html
from harness.report.discovery import discovery_html
from harness.report.html import (
    COLUMNS,
    STYLE,
    cells_html,
    generations_table,
    summary_table,
    summary_values,
)
from harness.report.plots import forest_png
from harness.report.text import verdict_tally
from harness.report.trust import trust_html


class ReportTitle:
    """Registered beside a staged report: pytest-html titles the page by its real name."""

    def __init__(self, name: str) -> None:
        self.name = name

    def pytest_html_report_title(self, report: Any) -> None:
        report.title = self.name


def stage_report(config: pytest.Config, run: ClaimsRun) -> str | None:
    """Point pytest-html at a staged copy of ``--html PATH`` (through its public option, before its
    ``pytest_configure`` reads it), so that its plain write lands in the run's pending outputs and
    goes in place with the findings, or not at all. Returns the staged path (None: no report, or
    an xdist worker, which writes none)."""
    path = config.getoption("htmlpath", None)
    if not path or under_xdist(config):
        return None
    run.html_path = os.path.abspath(os.path.expanduser(os.path.expandvars(path)))
    staged = run.pending.stage(run.html_path)
    config.option.htmlpath = staged
    config.pluginmanager.register(ReportTitle(os.path.basename(run.html_path)), "causal_heads_report_title")
    return staged


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Before pytest-html's own ``pytest_sessionstart`` reads the metadata for its Environment
    table: the packages the findings record and the git commit go there too."""
    try:
        from pytest_metadata.plugin import metadata_key
    except ImportError:  # pytest-html depends on pytest-metadata; nothing to add without it
        return

    meta = session.config.stash.get(metadata_key, None)
    if meta is not None:
        meta["Packages"] = {k: v for k, v in package_versions().items() if v}
        git = git_info()
        meta["Commit"] = f"{git['commit']}{' (dirty)' if git['dirty'] else ''}" if git["commit"] else "unknown"


def pytest_html_results_summary(
    prefix: list[str], summary: list[str], postfix: list[str], session: pytest.Session
) -> None:
    """The style above, one line counting the run's verdicts (claims that do not hold fail their
    test, so pytest's passed/failed counts are verdict counts only for directional claims) and
    :func:`summary_table`."""

    prefix.append(STYLE)
    results = list(claims_run(session.config).results.values())
    if results:
        tally = verdict_tally(results)
        prefix.append(
            f'<p class="claims-summary">{len(results)} claims evaluated: {escape(tally)}; p-values '
            f"{escape(results[0].get('correction', '?'))}-adjusted across them.</p>"
        )
        prefix.append(summary_table(results))
        prefix.append(discovery_html(results))  # discovery beside confirmation, for claims a sweep selected
        prefix.append(circuit_html(results))  # circuit claims: faithfulness per ablation, random circuits
        prefix.append(trust_html(groundtruth.shipped_record()))  # the release's ground-truth figures


def _result(report: pytest.TestReport) -> dict | None:
    return dict(getattr(report, "user_properties", ()) or ()).get("claim_result")


def pytest_html_results_table_header(cells: list[str]) -> None:
    for i, name in enumerate(COLUMNS):
        cells.insert(2 + i, f"<th>{escape(name)}</th>")


def pytest_html_results_table_row(report: pytest.TestReport, cells: list[str]) -> None:
    for i, cell in enumerate(cells_html(summary_values(_result(report)))):
        cells.insert(2 + i, cell)


def pytest_html_results_table_html(report: pytest.TestReport, data: list[str]) -> None:
    r = _result(report)
    if r is None:
        return

    c = r["claim"]
    settings = ", ".join(
        f"{k}={c[k]}"
        for k in (
            "model",
            "heads",
            "patch_mode",
            "source",
            "target",
            "metric",
            "direction",
            "statistic",
            "margin",
            "n_prompts",
            "samples",
            "max_tokens",
            "alignment",
            "seed",
            "intervention",
            "hook_points",
        )
        if c.get(k) not in (None, "")  # an intervention claim has no heads= or patch_mode=
    )
    examples = generations_table(r.get("examples", []), bool(c.get("versus")))
    everything = ""
    if r.get("generations"):
        everything = (
            f"<details><summary>all {len(r['generations'])} prompts' generations</summary>"
            f"{generations_table(r['generations'], bool(c.get('versus')))}</details>"
        )
    plot = ""
    if r.get("effect"):
        import base64

        png = base64.b64encode(forest_png(r)).decode()
        plot = f'<img class="forest" alt="forest plot" src="data:image/png;base64,{png}"/>'
    data.append(
        f'<div class="claim-evidence">{plot}<p><b>{escape(c["id"])}</b>: {escape(c.get("description", ""))}</p>'
        f"<p>settings: {escape(settings)}</p>"
        + (
            f"<p>model: {escape(str(r['model'].get('source')))}, weights sha256 "
            f"{escape(str(r['model'].get('weights_sha256')))}</p>"
            if r.get("model")
            else ""
        )
        + (f"<p>error: {escape(r['error'])}</p>" if r.get("error") else "")
        + "".join(
            f'<p class="warning">warning ({escape(w["code"])}): {escape(w["message"])}</p>'
            for w in r.get("warnings") or []
        )
        + f"<p>rerun: <code>{escape(r['rerun'])}</code></p>"
        + (
            f"<p>generations changed (token for token): {escape(changes_text(r['text_changed']))} prompts</p>"
            if r.get("text_changed")
            else ""
        )
        + f"{examples}{everything}</div>"
    )
