"""``python -m harness.regress``: the same as ``causal-heads regress`` (:mod:`harness.cli.regress`)."""

from harness.cli.regress import main
from harness.errors import run_cli

__all__ = ["main"]

if __name__ == "__main__":
    run_cli(main)
