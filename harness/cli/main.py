"""``causal-heads <command> [options]``: the one console script; ``causal-heads <command> --help`` for each.

A command's module is imported only when it is run, so ``causal-heads --help`` and the light
commands (regress, report) start without torch. ``python -m harness.<module>`` aliases (the
research log's ``python -m harness.head_patching``) call the same ``main`` functions.
"""

from __future__ import annotations

import importlib
import sys

from harness import __version__
from harness.core.errors import UserError, did_you_mean, run_cli

# command -> (module under harness.cli, one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "evidence": ("evidence", "the main job: every claim about a model -> findings, HTML/markdown report, plots"),
    "patch": ("patch", "the research log's run: patch heads from emotion prompts into neutral ones and measure"),
    "sweep": ("sweep", "all-heads causal sweep on the next-token keyword log-probability"),
    "screen": ("screen", "which heads matter for an emotion: attention screen, or attribution patching"),
    "circuit": ("circuit", "one head's direct logit attribution, OV circuit or QK (attention) behaviour"),
    "report": ("report", "render a findings document to the markdown report and plots"),
    "preregister": ("preregister", "record claims files' claims, with the time, before they are evaluated"),
    "regress": ("regress", "what changed between two findings documents (exit 1 on a lost claim)"),
    "nightly": ("nightly", "every claim, the evidence report and the regression against the last run"),
    "calibrate": ("calibrate", "A/A calibration of the claims' statistics on the model's own null data"),
    "validate": ("validate", "the whole pipeline on models whose mechanism is known: recall, power, false positives"),
    "bench": ("bench", "benchmarks that print ratios against a reference run in the same process"),
    "demo": ("demo", "baseline vs head-ablated generations, side by side"),
    "metrics": ("metrics", "list the metrics, or score texts with one"),
    "prompts": ("prompts", "list the prompt sets with their token lengths"),
    "cache": ("cache", "the run cache: where it is and what it holds (info), or empty it (clear)"),
    "browser": ("browser", "open an evidence report in headless Chromium and check every claim row is visible"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: causal-heads <command> [options]   (causal-heads <command> --help for its options)",
        "",
        "Causal hypothesis tests for attention-head claims.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    if args[0] == "--version":
        print(f"causal-heads {__version__}")
        return 0
    if args[0] not in COMMANDS:
        raise UserError(did_you_mean("command", args[0], COMMANDS))
    module = importlib.import_module(f"harness.cli.{COMMANDS[args[0]][0]}")
    return module.main(args[1:])


def console() -> None:
    """The ``causal-heads`` entry point: user errors are one line and exit 2 (:func:`run_cli`)."""
    run_cli(main)
