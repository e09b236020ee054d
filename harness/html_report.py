"""pytest-html columns and per-claim evidence for the claims suite (active with ``--html``).

Summary columns come through pytest-html's hooks: verdict, effect (mean Δ; median Δ, marked,
for claims decided by the sign test), 95% CI, p raw /
adjusted, Cohen's dz, n, random-head percentile, prompts up / down with the median Δ and
the sign test's p, and the data warnings (``floor``, ``ceiling``, ``untestable``: see
:func:`harness.claim_runner.data_warnings`). Each claim's row expands to its settings
a forest plot of its effect and CI against the random-head effects, and side-by-side
baseline vs patched generations. Everything shown is built from the claim
result attached to the report (``user_properties``), and every value is escaped with
:func:`html.escape`: generated text and prompts are untrusted.
"""

from __future__ import annotations

import math
from html import escape

COLUMNS = ("Verdict", "Effect", "95% CI", "p raw / adj", "dz", "n", "Random-head pct", "Up / down", "Warnings")


def _result(report) -> dict | None:
    return dict(getattr(report, "user_properties", ()) or ()).get("claim_result")


def _fmt(x, spec=".4f") -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def pytest_html_results_table_header(cells) -> None:
    for i, name in enumerate(COLUMNS):
        cells.insert(2 + i, f"<th>{escape(name)}</th>")


def pytest_html_results_table_row(report, cells) -> None:
    r = _result(report)
    if r is None:
        values = [""] * len(COLUMNS)
    else:
        from harness.report import decisive_effect, updown, warning_codes

        e, d = r.get("effect") or {}, decisive_effect(r)
        rc = r.get("random_control")
        values = [r["verdict"], _fmt(d.get("estimate"), "+.4f") + (" (median)" if d.get("label") == "median" else ""),
                  f"[{_fmt(d.get('ci_low'), '+.4f')}, {_fmt(d.get('ci_high'), '+.4f')}]" if d else "—",
                  f"{_fmt(r.get('p_raw'), '.4g')} / {_fmt(r.get('p_adjusted'), '.4g')}",
                  _fmt(e.get("cohens_dz"), ".3f"), str(e.get("n", "—")),
                  _fmt(rc["percentile"], ".0f") if rc else "—", updown(r.get("sign")), warning_codes(r)]
    for i, v in enumerate(values):
        cls = f' class="verdict-{escape(v.replace(" ", "-"))}"' if i == 0 and v else ""
        cells.insert(2 + i, f"<td{cls}>{escape(v)}</td>")


def pytest_html_results_table_html(report, data) -> None:
    r = _result(report)
    if r is None:
        return
    c = r["claim"]
    settings = ", ".join(f"{k}={c[k]}" for k in ("model", "heads", "patch_mode", "source", "target", "metric",
                                                  "direction", "statistic", "margin", "n_prompts", "samples", "max_tokens",
                                                  "alignment", "seed") if c.get(k) is not None)
    rows = "".join(f"<tr><td>{escape(x['target'])}</td><td>{escape(x['baseline'])}</td>"
                   f"<td>{escape(x['patched'])}</td></tr>" for x in r.get("examples", []))
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
                f"<table><tr><th>target prompt</th><th>baseline</th><th>patched</th></tr>{rows}</table></div>")
