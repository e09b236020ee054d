"""``python -m harness.demo``: the same as ``causal-heads demo`` (:mod:`harness.cli.demo`)."""

from harness.cli.demo import main
from harness.errors import run_cli

__all__ = ["main"]

if __name__ == "__main__":
    run_cli(main)
