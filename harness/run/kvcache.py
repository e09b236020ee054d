"""A KV cache that appends in place: Hugging Face's ``DynamicCache`` with its full-attention layers
growing into a buffer instead of by ``torch.cat``.

``DynamicLayer.update`` concatenates every step: the whole cache of every layer is copied once
per generated token (for a pack of planned arms, hundreds of rows, that is several percent of a
run). ``GrowingLayer`` keeps the keys and values in a buffer with spare positions and writes
only the new ones (:func:`growing_layer_class`); ``keys``/``values`` are views of the filled part, of the same shape and
values as ``DynamicLayer``'s, so attention computes the same numbers (the tests compare tokens
and log-probs bit for bit with HF ``generate``). Sliding-window layers keep Hugging Face's own
class (they drop old positions).
"""

from __future__ import annotations

import functools
from typing import Any

import torch


@functools.cache
def growing_layer_class() -> type:
    """:class:`GrowingLayer`, built on first use (transformers is imported only when a run starts)."""
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        """A ``DynamicLayer`` that appends into a buffer (capacity doubled when full)."""

        def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
            super().lazy_initialization(key_states, value_states)
            self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None
            self._length = 0

        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
        ) -> tuple[torch.Tensor, torch.Tensor]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            need = self._length + key_states.shape[-2]
            buffers = self._buffers
            if buffers is None or need > buffers[0].shape[-2] or buffers[0].shape[:2] != key_states.shape[:2]:
                buffers = self._grow(key_states, value_states, need)
            k, v = buffers
            k[:, :, self._length : need] = key_states
            v[:, :, self._length : need] = value_states
            self._length = need
            self.keys, self.values = k[:, :, :need], v[:, :, :need]
            return self.keys, self.values

        def _grow(
            self, key_states: torch.Tensor, value_states: torch.Tensor, need: int
        ) -> tuple[torch.Tensor, torch.Tensor]:
            capacity = max(2 * need, need + 32)
            old = self._buffers
            if old is not None and old[0].shape[:2] != key_states.shape[:2]:
                raise ValueError(
                    f"cache layer holds {tuple(old[0].shape[:2])} rows x heads, got {tuple(key_states.shape[:2])}"
                )
            k = key_states.new_empty(*key_states.shape[:2], capacity, key_states.shape[-1])
            v = value_states.new_empty(*value_states.shape[:2], capacity, value_states.shape[-1])
            if old is not None:
                k[:, :, : self._length] = old[0][:, :, : self._length]
                v[:, :, : self._length] = old[1][:, :, : self._length]
            self._buffers = (k, v)
            return self._buffers

        def reset(self) -> None:
            super().reset()
            self._buffers, self._length = None, 0

    return GrowingLayer


def growing_cache(config: Any) -> Any:
    """``DynamicCache(config=config)`` with each full-attention layer a ``GrowingLayer``."""
    from transformers.cache_utils import DynamicCache, DynamicLayer

    layer_class = growing_layer_class()
    cache = DynamicCache(config=config)
    cache.layers = [layer_class() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache
