"""``python -m harness.report``: the same as ``causal-heads report`` (:mod:`harness.cli.report`)."""

from harness.cli.report import main
from harness.core.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
