"""The command line: ``causal-heads <command>``; each module parses arguments and calls the library."""
