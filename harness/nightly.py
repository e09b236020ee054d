"""``python -m harness.nightly``: the same as ``causal-heads nightly`` (:mod:`harness.cli.nightly`)."""

from harness.cli.nightly import main
from harness.errors import run_cli

__all__ = ["main"]

if __name__ == "__main__":
    run_cli(main)
