"""Models: shape, offline loading and the registry, hook points on HF attention, tiny test models."""
