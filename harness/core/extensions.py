"""What the user-extensible registries (metrics, patch modes) share: who defined a function, and
importing the modules installed packages name in an entry-point group."""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Callable


def origin(fn: Callable) -> str:
    """``module.qualname`` of ``fn``: the same definition imported again has the same origin."""
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}"


@functools.cache
def load_entry_points(group: str) -> None:
    """Import each installed package's module in entry-point ``group`` once per process; the
    modules register their metrics or modes when imported."""
    for ep in importlib.metadata.entry_points(group=group):
        ep.load()
