"""``python -m harness.browser``: the same as ``causal-heads browser`` (:mod:`harness.cli.browser`)."""

from harness.cli.browser import main
from harness.errors import run_cli

__all__ = ["main"]

if __name__ == "__main__":
    run_cli(main)
