"""``python -m harness.calibrate``: the same as ``causal-heads calibrate`` (:mod:`harness.cli.calibrate`)."""

from harness.cli.calibrate import main
from harness.errors import run_cli

__all__ = ["main"]

if __name__ == "__main__":
    run_cli(main)
