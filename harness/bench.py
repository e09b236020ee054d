"""``python -m harness.bench``: the same as ``causal-heads bench`` (:mod:`harness.cli.bench`)."""

from harness.cli.bench import main
from harness.core.errors import run_cli

__all__ = ["main"]

if __name__ == "__main__":
    run_cli(main)
