"""pytest-html columns and per-claim evidence for the claims suite (active with ``--html``).

Summary columns come through pytest-html's hooks: verdict, effect (mean Δ; median Δ, marked,
for claims decided by the sign test), 95% CI, p raw /
adjusted, Cohen's dz, n, random-head percentile, prompts up / down with the median Δ and
the sign test's p, the data warnings (``floor``, ``ceiling``, ``untestable``, ``inert``: see
:func:`harness.claim_runner.data_warnings`) and how many prompts' generations the patch changed
token for token. The same values head the page as a static table, one row per claim
(:func:`summary_table`; pytest-html draws its own results table with JavaScript). Each
claim's row expands to its settings, a forest plot of its effect and CI against the
random-head effects, side-by-side baseline vs patched generations of the prompts
picked by :func:`harness.examples.pick_examples` (with why), and every prompt's generations.
Everything shown is built from the claim result attached to the report (``user_properties``),
and every value is escaped with :func:`html.escape`: generated text and prompts are untrusted.

pytest-html writes its report with a plain ``open(path, "w")`` at session end;
:func:`atomic_report_writes` routes that write through :func:`harness.results.atomic_write_text`
so an interrupted run never leaves half an evidence file (it uses pytest-html's private
``_report_path``/``_write_report``, which is why pytest-html is pinned exactly).
"""

from __future__ import annotations

import math
from html import escape

import pytest

COLUMNS = ("Verdict", "Effect", "95% CI", "p raw / adj", "dz", "n", "Random-head pct", "Up / down", "Warnings",
           "Text changed")


# Added to the summary section (pytest-html renders it unescaped; it is ours, not data): the
# evidence is read in tables, so they get borders and wrap; verdicts and warnings stand out.
STYLE = """<style>
.claim-evidence { white-space: normal; font-family: Helvetica, Arial, sans-serif; font-size: 12px; }
.claim-evidence table { border-collapse: collapse; margin: 6px 0; }
.claim-evidence th, .claim-evidence td { border: 1px solid #bbb; padding: 2px 6px; vertical-align: top;
  text-align: left; white-space: pre-wrap; }
.claim-evidence p.warning { color: #9a6700; font-weight: bold; }
.claim-evidence details { margin: 6px 0; }
.logwrapper { max-height: 640px; }
.claims-summary-table { border-collapse: collapse; margin: 6px 0 12px; font-size: 12px; max-width: 100%; }
.claims-summary-table th, .claims-summary-table td { border: 1px solid #bbb; padding: 2px 6px; text-align: left; color: #222; }
td.verdict-supported { color: #1a7f37; font-weight: bold; }
td.verdict-refuted, td.verdict-error { color: #cf222e; font-weight: bold; }
</style>"""


def atomic_report_writes(config) -> int:
    """Make every pytest-html report object of this run write atomically; returns how many."""
    from pytest_html.basereport import BaseReport

    from harness.results import atomic_write_text

    n = 0
    for plugin in config.pluginmanager.get_plugins():
        if isinstance(plugin, BaseReport):
            path = str(plugin._report_path)
            plugin._write_report = lambda rendered, path=path: atomic_write_text(path, rendered)
            n += 1
    return n


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session) -> None:
    """After every plugin's ``pytest_configure``: pytest-html's report object exists by now.
    Before pytest-html's own ``pytest_sessionstart`` reads the metadata for its Environment
    table: the packages the findings record and the git commit go there too."""
    atomic_report_writes(session.config)
    try:
        from pytest_metadata.plugin import metadata_key
    except ImportError:  # pytest-html depends on pytest-metadata; nothing to add without it
        return
    from harness.results import git_info, package_versions

    meta = session.config.stash.get(metadata_key, None)
    if meta is not None:
        meta["Packages"] = {k: v for k, v in package_versions().items() if v}
        git = git_info()
        meta["Commit"] = f"{git['commit']}{' (dirty)' if git['dirty'] else ''}" if git["commit"] else "unknown"


def pytest_html_results_summary(prefix, summary, postfix, session) -> None:
    """The style above, one line counting the run's verdicts (claims that do not hold fail their
    test, so pytest's passed/failed counts are verdict counts only for directional claims) and
    :func:`summary_table`."""
    from harness.plugin import RESULTS_KEY
    from harness.report import verdict_tally

    prefix.append(STYLE)
    results = list(session.config.stash.get(RESULTS_KEY, {}).values())
    if results:
        tally = verdict_tally(results)
        prefix.append(f'<p class="claims-summary">{len(results)} claims evaluated: {escape(tally)}; p-values '
                      f"{escape(results[0].get('correction', '?'))}-adjusted across them.</p>")
        prefix.append(summary_table(results))


def _result(report) -> dict | None:
    return dict(getattr(report, "user_properties", ()) or ()).get("claim_result")


def _fmt(x, spec=".4f") -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def pytest_html_results_table_header(cells) -> None:
    for i, name in enumerate(COLUMNS):
        cells.insert(2 + i, f"<th>{escape(name)}</th>")


def summary_values(r: dict | None) -> list[str]:
    """One claim's values for :data:`COLUMNS` (plain text; callers escape), from its result."""
    if r is None:
        return [""] * len(COLUMNS)
    from harness.examples import changes_text
    from harness.report import decisive_text, updown, warning_codes

    e = r.get("effect") or {}
    rc = r.get("random_control")
    return [r["verdict"], *decisive_text(r),
            f"{_fmt(r.get('p_raw'), '.4g')} / {_fmt(r.get('p_adjusted'), '.4g')}",
            _fmt(e.get("cohens_dz"), ".3f"), str(e.get("n", "—")),
            _fmt(rc["percentile"], ".0f") if rc else "—", updown(r.get("sign")), warning_codes(r),
            changes_text(r.get("text_changed"))]


def _cells(values: list[str]) -> list[str]:
    """``<td>`` cells for :func:`summary_values`; the verdict cell carries a ``verdict-…`` class."""
    cls = [f' class="verdict-{escape(v.replace(" ", "-"))}"' if i == 0 and v else "" for i, v in enumerate(values)]
    return [f"<td{c}>{escape(v)}</td>" for c, v in zip(cls, values)]


def _breakable(text: str) -> str:
    """Escaped ``text`` that may wrap after ``_`` and ``,`` (claim ids and head lists have no
    spaces; unbroken, the zero control's 15 layers widen the table past the window)."""
    return escape(text).replace("_", "_<wbr>").replace(",", ",<wbr>")


def summary_table(results: list[dict]) -> str:
    """The static summary table at the top of the report: one row per claim, in run order.

    It is plain HTML (the results table below is drawn by pytest-html's JavaScript), so the
    verdicts are on the page, and in a screenshot of it, however the rows below are folded."""
    head = "".join(f"<th>{escape(h)}</th>" for h in ("Claim", "Heads", *COLUMNS))
    body = "".join(f'<tr><td>{_breakable(r["claim"]["id"])}</td><td>{_breakable(str(r["claim"].get("heads", "")))}</td>'
                   + "".join(_cells(summary_values(r))) + "</tr>" for r in results)
    return f'<table class="claims-summary-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def pytest_html_results_table_row(report, cells) -> None:
    for i, cell in enumerate(_cells(summary_values(_result(report)))):
        cells.insert(2 + i, cell)


def pytest_html_results_table_html(report, data) -> None:
    r = _result(report)
    if r is None:
        return
    from harness.examples import changes_text

    c = r["claim"]
    settings = ", ".join(f"{k}={c[k]}" for k in ("model", "heads", "patch_mode", "source", "target", "metric",
                                                  "direction", "statistic", "margin", "n_prompts", "samples", "max_tokens",
                                                  "alignment", "seed") if c.get(k) is not None)
    examples = _generations_table(r.get("examples", []), bool(c.get("versus")))
    everything = ""
    if r.get("generations"):
        everything = (f"<details><summary>all {len(r['generations'])} prompts' generations</summary>"
                      f"{_generations_table(r['generations'], bool(c.get('versus')))}</details>")
    plot = ""
    if r.get("effect"):
        import base64

        from harness.plots import forest_png

        png = base64.b64encode(forest_png(r)).decode()
        plot = f'<img class="forest" alt="forest plot" src="data:image/png;base64,{png}"/>'
    data.append(f'<div class="claim-evidence">{plot}<p><b>{escape(c["id"])}</b>: {escape(c.get("description", ""))}</p>'
                f"<p>settings: {escape(settings)}</p>"
                + (f"<p>model: {escape(str(r['model'].get('source')))}, weights sha256 "
                   f"{escape(str(r['model'].get('weights_sha256')))}</p>" if r.get("model") else "")
                + (f"<p>error: {escape(r['error'])}</p>" if r.get("error") else "")
                + "".join(f'<p class="warning">warning ({escape(w["code"])}): {escape(w["message"])}</p>'
                          for w in r.get("warnings") or [])
                + f"<p>rerun: <code>{escape(r['rerun'])}</code></p>"
                + (f"<p>generations changed (token for token): {escape(changes_text(r['text_changed']))} prompts</p>"
                   if r.get("text_changed") else "")
                + f"{examples}{everything}</div>")


def _texts(x) -> str:
    """One run's text(s) for a prompt: a string (an example) or every sample's (a generations record)."""
    return "<br/>".join(escape(t) for t in x) if isinstance(x, list) else escape(x)


def _generations_table(rows: list[dict], versus: bool) -> str:
    """Prompts with their baseline, (versus) and patched texts; examples also say why they were picked.
    Every cell is escaped: generated text and prompts are untrusted."""
    picked = any("why" in x for x in rows)
    head = (["#"] + (["why shown"] if picked else []) + ["Δ", "target prompt", "baseline"]
            + (["versus"] if versus else []) + ["patched"])
    body = ""
    for x in rows:
        cells = [str(x.get("index", "—"))] + ([x.get("why", "")] if picked else [])
        cells = [escape(v) for v in cells] + [escape(_fmt(x.get("delta"), "+.4f")), escape(x["target"]),
                                              _texts(x["baseline"])]
        cells += ([_texts(x.get("versus", "—"))] if versus else []) + [_texts(x["patched"])]
        body += "<tr>" + "".join(f"<td>{v}</td>" for v in cells) + "</tr>"
    return "<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + f"</tr>{body}</table>"
