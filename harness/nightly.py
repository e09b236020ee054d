"""The nightly regression of findings as one command (the workflow runs it; so can you).

    python -m harness.nightly [--last LAST.json] [--out reports] [-- PYTEST ARGS...]

1. Runs every claim, slow ones included: ``pytest causal_tests -m claim --html OUT/evidence.html
   --self-contained-html --findings OUT/findings.json`` plus PYTEST ARGS. Claims that do not
   hold are findings, not a broken night: pytest's exit 0 or 1 go on; any other exit (usage
   error, internal error, no claim collected) or no findings document written stops with exit 3.
2. Renders the seed-style markdown report and plots from the findings (``harness.report``).
3. Compares with LAST when that file exists (``harness.regress``); a missing LAST is the
   first night and says so.
4. Writes OUT/nightly.md (verdicts, what changed, the regression table); when
   ``$GITHUB_STEP_SUMMARY`` is set, appends it there too.

Exit status: 0, 1 when a finding was lost, 2 on unusable input, 3 when the claims run broke.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from harness.errors import run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BROKEN = 3


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


def summary_markdown(doc: dict, context: list[str], rows: list[dict] | None, last: str | None) -> str:
    from harness.report import cell, decisive_effect

    claims = doc.get("claims", [])
    counts: dict[str, int] = {}
    for c in claims:
        key = "errored" if c.get("error") else c["verdict"]
        counts[key] = counts.get(key, 0) + 1
    out = ["# Nightly findings", "", f"{len(claims)} claims: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())),
           "", "| claim | verdict | effect | 95% CI | p adj | up / down |", "|---|---|---|---|---|---|"]
    for c in claims:
        e = decisive_effect(c)
        ci = f"[{e['ci_low']:+.4f}, {e['ci_high']:+.4f}]" if e.get("ci_low") is not None else "—"
        mean = f"{e['estimate']:+.4f}" if e.get("estimate") is not None else "—"
        mean += " (median)" if e.get("label") == "median" else ""
        p = f"{c['p_adjusted']:.4g}" if c.get("p_adjusted") is not None else "—"
        verdict = f"errored: {c['error'].splitlines()[0]}" if c.get("error") else c["verdict"]
        st = c.get("sign")
        updown = f"{st['n_up']} / {st['n_down']}" if st else "—"
        out.append(f"| {cell(c['claim']['id'])} | {cell(verdict)} | {mean} | {ci} | {p} | {updown} |")
    out += ["", "## Against the last night", ""]
    if rows is None:
        out.append(f"no earlier findings at {cell(last)}: nothing to compare" if last else "no earlier findings given")
        return "\n".join(out) + "\n"
    out += [f"- {cell(line).replace(' -&gt; ', ' → ')}" for line in context] or ["- inputs unchanged (commit, packages, weights, data files)"]
    out.append("")
    if not rows:
        out.append("no changes: every verdict and effect is as before")
    else:
        out += ["| claim | change | old → new | detail |", "|---|---|---|---|"]
        out += [f"| {cell(r['claim'])} | {'**LOST** ' if r['lost'] else ''}{cell(r['change'])} | "
                f"{cell(r['old'])} → {cell(r['new'])} | {cell(r['detail'])} |" for r in rows]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.nightly", description=__doc__.splitlines()[0])
    ap.add_argument("--last", help="last night's findings.json (absent file: first night)")
    ap.add_argument("--out", default="reports", help="folder for findings, evidence, report and plots")
    ap.add_argument("pytest_args", nargs="*", help="after --: more pytest arguments (e.g. --claims FILE -k ID)")
    args = ap.parse_args(argv)
    from harness import regress, report
    from harness.results import atomic_write_text

    # read last night's document first: a bad one should not cost a whole claims run
    last = regress.load_document(args.last) if args.last and os.path.isfile(args.last) else None
    out = os.path.abspath(args.out)
    findings = os.path.join(out, "findings.json")
    before = _identity(findings)  # a stale document must not pass for tonight's (nor be deleted)
    cmd = pytest_command(out, args.pytest_args)
    print("$ " + " ".join(cmd), flush=True)
    code = subprocess.run(cmd, check=False).returncode  # in the caller's folder: relative PYTEST ARGS work
    if code not in (0, 1):
        print(f"nightly: the claims run broke (pytest exit {code}); nothing compared", file=sys.stderr)
        return BROKEN
    if _identity(findings) in (None, before):
        print(f"nightly: pytest wrote no new {findings} (were any claims collected?)", file=sys.stderr)
        return BROKEN
    report.main([findings, "--markdown", os.path.join(out, "phase7_head_patching_report.md"),
                 "--plots-dir", os.path.join(out, "plots")])
    doc = regress.load_document(findings)
    rows, context = None, []
    if last is not None:
        context, rows = regress.regression(last, doc)
        print(regress.format_report(context, rows))
    else:
        print(f"no earlier findings at {args.last}: nothing to compare" if args.last else "no --last: nothing to compare")
    text = summary_markdown(doc, context, rows, args.last)
    atomic_write_text(os.path.join(out, "nightly.md"), text)
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as fh:
            fh.write(text)
    return 1 if regress.lost_claims(rows or []) else 0


if __name__ == "__main__":
    run_cli(main)
