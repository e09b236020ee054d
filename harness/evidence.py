"""The main job: run every claim about one model and turn the results into evidence.

    python -m harness.evidence [--model smollm2-135m] [--out reports] [-- PYTEST ARGS...]

1. Runs the claims about MODEL, slow ones included: ``pytest causal_tests -m claim --model MODEL
   --html OUT/evidence.html --self-contained-html --findings OUT/findings.json`` plus PYTEST
   ARGS (e.g. ``-k head_21_1``, ``--profile greedy``), printing one line per claim as it is
   evaluated. Claims that do not hold are results, not a failed job: pytest's exit 0 or 1 go
   on; any other exit (usage error, internal error, no claim collected) or no new findings
   document stops with exit 3.
2. Renders the seed-style markdown report and plots from the findings (``harness.report``):
   OUT/phase7_head_patching_report.md, OUT/plots/.
   Opens OUT/evidence.html in headless Chromium when it is installed: OUT/evidence.png and a
   line saying whether every claim's summary row is visible (``harness.browser``).
3. Prints the verdict table and writes it to OUT/summary.md.

``harness.nightly`` is this job plus the regression against the last night's findings.
Exit status: 0 when the run completed, 2 on unusable input (e.g. ``--model gpt2`` without its
weights on this machine), 3 when the claims run broke.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from harness.errors import run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BROKEN = 3
DEFAULT_MODEL = "smollm2-135m"


def _identity(path: str) -> tuple | None:
    """(inode, mtime) of a file, or None: findings are replaced atomically, so a new run changes it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def pytest_command(out: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", os.path.join(ROOT, "causal_tests"), "-m", "claim", "-p", "no:cacheprovider",
            "--html", os.path.join(out, "evidence.html"), "--self-contained-html",
            "--findings", os.path.join(out, "findings.json"), *extra]


def run_claims(out: str, pytest_args: list[str], job: str) -> dict | None:
    """Steps 1-2: the claims run, then the report and plots. The findings document, or None
    when the run broke (the reason printed to stderr, prefixed by ``job``)."""
    from harness import regress, report

    findings = os.path.join(out, "findings.json")
    before = _identity(findings)  # a stale document must not pass for this run's (nor be deleted)
    cmd = pytest_command(out, pytest_args)
    print("$ " + " ".join(cmd), flush=True)
    code = subprocess.run(cmd, check=False).returncode  # in the caller's folder: relative PYTEST ARGS work
    if code not in (0, 1):
        print(f"{job}: the claims run broke (pytest exit {code}); nothing rendered", file=sys.stderr)
        return None
    if _identity(findings) in (None, before):
        print(f"{job}: pytest wrote no new {findings} (were any claims collected?)", file=sys.stderr)
        return None
    report.main([findings, "--markdown", os.path.join(out, "phase7_head_patching_report.md"),
                 "--plots-dir", os.path.join(out, "plots")])
    screenshot(out, job)
    return regress.load_document(findings)


def screenshot(out: str, job: str) -> bool | None:
    """Open OUT/evidence.html in headless Chromium (:mod:`harness.browser`), write OUT/evidence.png
    and say whether every claim's summary row is visible. Auxiliary: without Chromium, or when
    the browser fails, it says so and the job goes on (None); a summary not seen is printed
    (False) and the job goes on too: the findings are what the run produced."""
    from harness import browser
    from harness.errors import UserError

    html, png = os.path.join(out, "evidence.html"), os.path.join(out, "evidence.png")
    try:
        view = browser.check_report(html)
    except UserError as exc:
        print(f"{job}: no screenshot: {exc}", flush=True)
        return None
    except (RuntimeError, OSError) as exc:
        print(f"{job}: no screenshot: the browser failed: {exc}", file=sys.stderr, flush=True)
        return None
    view.save_screenshot(png)
    seen = sum(r.visible for r in view.rows)
    line = f"{view.browser}: {seen} of {len(view.rows)} claims' summary rows visible; screenshot {png}"
    print(line if view.all_visible else f"{job}: NOT all visible: {line}", flush=True)
    return view.all_visible


def verdict_table(doc: dict) -> list[str]:
    """Markdown lines: claim counts by verdict, then claim, verdict, effect, CI, p adj, up/down,
    warnings and how many prompts' generations the patch changed."""
    from harness.examples import changes_text
    from harness.report import cell, decisive_text, verdict_tally, warning_codes

    claims = doc.get("claims", [])
    out = [f"{len(claims)} claims: {verdict_tally(claims)}",
           "", "| claim | verdict | effect | 95% CI | p adj | up / down | warnings | text changed |",
           "|---|---|---|---|---|---|---|---|"]
    for c in claims:
        estimate, ci = decisive_text(c)
        p = f"{c['p_adjusted']:.4g}" if c.get("p_adjusted") is not None else "—"
        verdict = f"errored: {c['error'].splitlines()[0]}" if c.get("error") else c["verdict"]
        st = c.get("sign")
        updown = f"{st['n_up']} / {st['n_down']}" if st else "—"
        out.append(f"| {cell(c['claim']['id'])} | {cell(verdict)} | {estimate} | {ci} | {p} | {updown} | "
                   f"{cell(warning_codes(c))} | {cell(changes_text(c.get('text_changed')))} |")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.evidence", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL,
                    help=f"run the claims about this model [{DEFAULT_MODEL}]; NAME=PATH for weights in a directory")
    ap.add_argument("--out", default="reports", help="folder for findings, evidence, report and plots")
    ap.add_argument("pytest_args", nargs="*", help="after --: more pytest arguments (e.g. -k head_21_1)")
    args = ap.parse_args(argv)
    from harness.errors import UserError
    from harness.models import weights_absent
    from harness.results import atomic_write_text

    name, sep, _ = args.model.partition("=")
    absent = None if sep else weights_absent(name)
    if absent:  # every claim would be skipped: say so before running anything
        raise UserError(absent)

    out = os.path.abspath(args.out)
    doc = run_claims(out, ["--model", args.model, *args.pytest_args], "evidence")
    if doc is None:
        return BROKEN
    text = "\n".join(["# Evidence", "", *verdict_table(doc), "",
                      f"HTML evidence: {os.path.join(out, 'evidence.html')}",
                      f"markdown report: {os.path.join(out, 'phase7_head_patching_report.md')}", ""])
    atomic_write_text(os.path.join(out, "summary.md"), text)
    print("\n" + text, end="")
    return 0


if __name__ == "__main__":
    run_cli(main)
