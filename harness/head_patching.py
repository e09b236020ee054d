"""``python -m harness.head_patching``: the same as ``causal-heads patch`` (:mod:`harness.cli.patch`)."""

from harness.cli.patch import main
from harness.core.errors import run_cli

__all__ = ["main"]

if __name__ == "__main__":
    run_cli(main)
