"""``python -m harness <command>``: the same as ``causal-heads <command>``."""

from harness.cli.main import console

if __name__ == "__main__":
    console()
