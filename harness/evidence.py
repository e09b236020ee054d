"""``python -m harness.evidence``: the same as ``causal-heads evidence`` (:mod:`harness.cli.evidence`)."""

from harness.cli.evidence import main
from harness.errors import run_cli

__all__ = ["main"]

if __name__ == "__main__":
    run_cli(main)
