"""``python -m harness.sweep``: the same as ``causal-heads sweep`` (:mod:`harness.cli.sweep`)."""

from harness.cli.sweep import main
from harness.errors import run_cli

__all__ = ["main"]

if __name__ == "__main__":
    run_cli(main)
