"""``python -m harness.prompts``: the same as ``causal-heads prompts`` (:mod:`harness.cli.prompts`)."""

from harness.cli.prompts import main
from harness.errors import run_cli

__all__ = ["main"]

if __name__ == "__main__":
    run_cli(main)
