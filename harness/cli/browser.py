"""Open an evidence report in headless Chromium and check that its summary is really on screen.

    causal-heads browser reports/evidence.html --screenshot reports/evidence.png

Exit 0 when every claim's summary row is visible and the tables fit the window (both at 1,280 px,
the summary at 800 px), 1 when not, 2 without Chromium or report;
see :mod:`harness.report.browser`.
"""

from __future__ import annotations

import argparse

from harness.core.errors import UserError, run_cli
from harness.core.results import check_writable
from harness.report.browser import WIDTHS, check_report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="causal-heads browser", description=__doc__.split("\n\n")[0])
    ap.add_argument("report", help="an evidence report (reports/evidence.html)")
    ap.add_argument("--screenshot", help="write the screenshot (PNG) here")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each browser answer")
    args = ap.parse_args(argv)
    if not 0 < args.timeout < float("inf"):  # also NaN
        raise UserError(f"--timeout {args.timeout} is invalid: must be a number of seconds > 0")
    if args.screenshot:
        check_writable("--screenshot", args.screenshot, extensions=(".png",))
    view = check_report(args.report, timeout=args.timeout)
    if args.screenshot:
        view.save_screenshot(args.screenshot)
    print(f"{view.browser}: {args.report} at {view.viewport[0]}x{view.viewport[1]}")
    narrow = check_report(args.report, timeout=args.timeout, width=WIDTHS[1])
    fits = view.tables_fit and narrow.summary_fits
    print(
        f"  widths: summary {view.summary_right:.0f} px and results table {view.results_right:.0f} px at "
        f"{WIDTHS[0]} px; summary {narrow.summary_right:.0f} px at {WIDTHS[1]} px: "
        + ("both fit" if fits else "NOT fitting")
    )
    for r in view.rows:
        state = (
            "visible"
            if r.visible
            else (
                f"NOT visible (in viewport {r.in_viewport}, shown {r.shown}, "
                f"on top {r.on_top}, ink {r.ink_pixels}, green {r.green_pixels})"
            )
        )
        print(
            f"  {r.cells.get('Claim', '?')}: {r.cells.get('Verdict', '?')}, effect {r.cells.get('Effect', '?')} "
            f"{r.cells.get('95% CI', '')}: {state}"
        )
    print(f"  results table drawn by pytest-html's script: {len(view.results_rows)} rows")
    if not view.rows:
        print("no summary table rows on the page")
    return 0 if view.all_visible and narrow.all_visible and fits else 1


if __name__ == "__main__":
    run_cli(main)
