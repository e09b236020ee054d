"""``python -m harness.metrics``: the same as ``causal-heads metrics`` (:mod:`harness.cli.metrics`)."""

from harness.cli.metrics import main
from harness.core.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
