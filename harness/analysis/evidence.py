"""The main job: run every claim about one model and turn the results into evidence.

    python -m harness evidence [--model smollm2-135m] [--out reports] [-- PYTEST ARGS...]

1. Runs the claims about MODEL, slow ones included: ``pytest causal_tests -m claim --model MODEL
   --html OUT/evidence.html --self-contained-html --findings OUT/findings.json`` plus PYTEST
   ARGS (e.g. ``-k head_21_1``, ``--profile greedy``), printing one line per claim as it is
   evaluated. Claims that do not hold are results, not a failed job: pytest's exit 0 or 1 go
   on; any other exit (usage error, internal error, no claim collected) or no new findings
   document stops with exit 3.
2. Renders the seed-style markdown report and plots from the findings (``harness.report``):
   OUT/phase7_head_patching_report.md, OUT/plots/.
   Opens OUT/evidence.html in headless Chromium when it is installed: OUT/evidence.png and a
   line saying whether every claim's summary row is visible (``harness.report.browser``).
3. Prints the verdict table and writes it to OUT/summary.md.

Every output is written to a hidden staging folder in OUT first and moved into place together
at the end (:class:`harness.core.outputs.Staging`): a run that breaks, or is stopped by Ctrl-C or
SIGTERM, leaves OUT as it was (its pytest child stopped and waited for, no temporary files).

``causal-heads nightly`` is this job plus the regression against the last night's findings.
Exit status: 0 when the run completed, 2 on unusable input (e.g. ``--model gpt2`` without its
weights on this machine), 3 when the claims run broke.
"""

from __future__ import annotations

import os
import sys

from harness.claims.examples import changes_text
from harness.core.errors import UserError
from harness.core.outputs import Staging, run_child
from harness.findings.schema import load_document
from harness.report.browser import WIDTHS, check_report
from harness.report.markdown import write_report
from harness.report.text import cell, decisive_text, verdict_tally, warning_codes

BROKEN = 3
CLAIMS_FOLDER = "causal_tests"  # the project's claim files, found from the working directory


# what the jobs write into OUT (run_claims, summary.md): an existing entry of these names is replaced
JOB_OUTPUTS = (
    "findings.json",
    "evidence.html",
    "evidence.png",
    "phase7_head_patching_report.md",
    "summary.md",
    "plots",
)
_OUR_HEADINGS = ("# Evidence", "# Nightly findings", "# Head patching report")
_PNG = b"\x89PNG\r\n\x1a\n"


def _ours(path: str) -> bool:
    """Whether an existing file is one a job wrote (recognised by what it holds, and plots by name)."""
    name = os.path.basename(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(2048)
    except OSError:
        return False
    if name.endswith(".json"):
        return b'"schema": "causal-heads/' in head or b'"schema":"causal-heads/' in head
    if name.endswith(".md"):
        return head.decode("utf-8", "replace").partition("\n")[0] in _OUR_HEADINGS
    if name.endswith(".html"):
        return b'<title id="head-title">' in head
    if name.endswith(".png"):
        return head.startswith(_PNG) and (name == "evidence.png" or name.startswith(("forest_", "heatmap_")))
    return False


def check_out_folder(out: str, force: bool) -> None:
    """Before any work: the job replaces ``JOB_OUTPUTS`` in ``out`` (``plots`` whole). A file there
    that no job wrote (a user's ``plots/mine.png``, their own ``summary.md``) is refused, naming
    it, unless ``force``; files of other names are never touched."""
    if force or not os.path.isdir(out):
        return
    theirs = []
    for name in JOB_OUTPUTS:
        path = os.path.join(out, name)
        if os.path.isdir(path) and not os.path.islink(path):
            theirs += [
                os.path.join(root, f)
                for root, _, files in os.walk(path)
                for f in files
                if not _ours(os.path.join(root, f))
            ]
        elif os.path.lexists(path) and not _ours(path):
            theirs.append(path)
    if theirs:
        shown = ", ".join(os.path.relpath(p, out) for p in sorted(theirs)[:3])
        more = f" and {len(theirs) - 3} more" if len(theirs) > 3 else ""
        raise UserError(
            f"--out {out!r} holds files this job did not write and would replace ({shown}{more}); "
            "give an empty or new folder, or pass --force to replace them"
        )


def check_job_inputs(model: str, pytest_args: list[str]) -> None:
    """Before any work: the claims folder (unless PYTEST ARGS name ``--claims`` files) and a
    ``--model NAME=PATH`` directory exist."""
    named = any(a == "--claims" or a.startswith("--claims=") for a in pytest_args)
    if not named and not os.path.isdir(CLAIMS_FOLDER):
        raise UserError(
            f"no {CLAIMS_FOLDER}/ folder in {os.getcwd()}: run the job from the project's root, or name claim "
            "files with -- --claims FILE"
        )
    name, sep, path = model.partition("=")
    if sep and not os.path.isdir(path):
        raise UserError(f"--model {model!r}: {path!r} is not a directory")
    if sep and not name:
        raise UserError(f"--model {model!r}: give NAME=PATH (the name the claims use)")


def pytest_command(out: str, extra: list[str]) -> list[str]:
    """The claims run: the project's ``causal_tests/`` folder, unless PYTEST ARGS name ``--claims`` files."""
    named = any(a == "--claims" or a.startswith("--claims=") for a in extra)
    return [
        sys.executable,
        "-m",
        "pytest",
        *([] if named else [os.path.abspath(CLAIMS_FOLDER)]),
        "-m",
        "claim",
        "-p",
        "no:cacheprovider",
        "--html",
        os.path.join(out, "evidence.html"),
        "--self-contained-html",
        "--findings",
        os.path.join(out, "findings.json"),
        *extra,
    ]


def run_claims(stage: Staging, pytest_args: list[str], job: str) -> dict | None:
    """Steps 1-2 into ``stage`` (a :class:`~harness.core.outputs.Staging` of the output folder): the
    claims run, then the report and plots. The findings document, or None when the run broke (the
    reason printed to stderr, prefixed by ``job``). The caller commits the stage: the findings,
    the HTML, the markdown, the plots and the screenshot of one run replace the old ones together,
    or (a broken, interrupted or terminated run) none of them does."""
    findings = stage.path("findings.json")
    cmd = pytest_command(stage.dir, pytest_args)
    print("$ " + " ".join(cmd), flush=True)
    code = run_child(cmd)  # in the caller's folder: relative PYTEST ARGS work; stopped with this job
    if code not in (0, 1):
        print(f"{job}: the claims run broke (pytest exit {code}); nothing replaced in {stage.out}", file=sys.stderr)
        return None
    if not os.path.isfile(findings):
        print(f"{job}: pytest wrote no findings (were any claims collected?); nothing replaced", file=sys.stderr)
        return None
    write_report(findings, stage.path("phase7_head_patching_report.md"), stage.path("plots"))
    screenshot(stage.dir, job, shown=stage.out)
    return load_document(findings)


def screenshot(out: str, job: str, shown: str | None = None) -> bool | None:
    """Open OUT/evidence.html in headless Chromium (:mod:`harness.report.browser`), write OUT/evidence.png
    and say whether every claim's summary row is visible. Auxiliary: without Chromium, or when
    the browser fails, it says so and the job goes on (None); a summary not seen is printed
    (False) and the job goes on too: the findings are what the run produced."""
    html, png = os.path.join(out, "evidence.html"), os.path.join(out, "evidence.png")
    try:
        view = check_report(html)
        narrow = check_report(html, width=WIDTHS[1])  # the summary must fit half a laptop screen too
    except UserError as exc:
        print(f"{job}: no screenshot: {exc}", flush=True)
        return None
    except (RuntimeError, OSError) as exc:
        print(f"{job}: no screenshot: the browser failed: {exc}", file=sys.stderr, flush=True)
        return None
    view.save_screenshot(png)
    fits = view.tables_fit and narrow.summary_fits
    print(
        f"{view.browser}: the tables {'fit' if fits else 'do NOT fit'} the window (summary {view.summary_right:.0f} px, "
        f"results {view.results_right:.0f} px at {WIDTHS[0]}; summary {narrow.summary_right:.0f} px at {WIDTHS[1]})",
        flush=True,
    )
    seen = sum(r.visible for r in view.rows)
    where = (
        os.path.join(shown, "evidence.png") if shown else png
    )  # where it will be once the run's outputs are in place
    line = f"{view.browser}: {seen} of {len(view.rows)} claims' summary rows visible; screenshot {where}"
    print(line if view.all_visible else f"{job}: NOT all visible: {line}", flush=True)
    return view.all_visible


def verdict_table(doc: dict) -> list[str]:
    """Markdown lines: claim counts by verdict, then claim, verdict, effect, CI, p adj, up/down,
    warnings and how many prompts' generations the patch changed."""

    claims = doc.get("claims", [])
    out = [
        f"{len(claims)} claims: {verdict_tally(claims)}",
        "",
        "| claim | verdict | effect | CI (95%; TOST where marked) | p adj | up / down | warnings | text changed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in claims:
        estimate, ci = decisive_text(c)
        p = f"{c['p_adjusted']:.4g}" if c.get("p_adjusted") is not None else "—"
        verdict = f"error: {c['error'].splitlines()[0]}" if c.get("error") else c["verdict"]
        st = c.get("sign")
        updown = f"{st['n_up']} / {st['n_down']}" if st else "—"
        out.append(
            f"| {cell(c['claim']['id'])} | {cell(verdict)} | {estimate} | {ci} | {p} | {updown} | "
            f"{cell(warning_codes(c))} | {cell(changes_text(c.get('text_changed')))} |"
        )
    return out
