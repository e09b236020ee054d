"""Causal hypothesis tests for attention heads.

The harness loads real language models offline (``harness.models``), exposes
TransformerLens hook points on them (``harness.hooks``), and generates text with
patch hooks active (``harness.generation``). Later layers (metrics, patching,
statistics, claims) build on these.
"""

__version__ = "0.1.0"
