"""The models of one run, loaded once each, by name, on one placement."""

from __future__ import annotations

from typing import Any

from harness.model.device import Placement, placement
from harness.model.loading import ModelHandle, load_model


class ModelStore:
    """Models by name (``model_paths`` maps a name to a weights directory, as ``--model NAME=DIR``),
    each loaded on first use onto ``where`` and kept for the run."""

    def __init__(self, model_paths: dict[str, str] | None = None, where: Placement | None = None) -> None:
        self.model_paths = dict(model_paths or {})
        self.placement = where or placement()
        self.loaded: dict[str, ModelHandle] = {}

    def __call__(self, name: str) -> ModelHandle:
        if name not in self.loaded:
            where = self.placement
            self.loaded[name] = load_model(self.model_paths.get(name, name), device=where.device, dtype=where.dtype)
        return self.loaded[name]

    def add(self, name: str, handle: ModelHandle) -> None:
        """Use an already loaded model for ``name`` (tests, notebooks, a worker's kept models)."""
        self.loaded[name] = handle

    def provenance(self) -> dict[str, dict[str, Any]]:
        """Each model loaded so far: its name, source, shape and weights hash."""
        return {name: h.provenance() for name, h in self.loaded.items()}
