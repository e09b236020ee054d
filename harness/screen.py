"""``python -m harness.screen``: the same as ``causal-heads screen`` (:mod:`harness.cli.screen`)."""

from harness.cli.screen import main
from harness.errors import run_cli

__all__ = ["main"]

if __name__ == "__main__":
    run_cli(main)
