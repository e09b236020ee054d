"""The driver's registered extensions, sent to Ray actors.

Patch modes and interventions run where the model runs: on the actors. Those defined in
harness, or by an installed package's entry point, the actors import themselves; those a user
registered in a ``conftest.py``, a notebook or a script exist only in the driver, so an actor
would call them unknown and fail every claim. :func:`driver_extensions` pickles them by value
(cloudpickle, as Ray pickles remote functions; only between our own processes, never from a
file) and :func:`install` registers them in the actor. One that cannot be pickled is refused
before any work, naming it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

from harness.core.errors import UserError
from harness.core.extensions import origin
from harness.patch.interventions import INTERVENTIONS, available_interventions
from harness.patch.modes import MODES, available_modes


def _ours(fn: Callable) -> bool:
    return (getattr(fn, "__module__", "") or "").startswith("harness.")


@contextlib.contextmanager
def _by_value(cloudpickle: Any, fns: list[Callable]) -> Iterator[None]:
    """Pickle the modules that define ``fns`` by value (an actor cannot import a conftest.py)."""
    modules = {getattr(fn, "__module__", None) for fn in fns} - {None, "__main__"}
    registered = []
    for name in sorted(m for m in modules if m in sys.modules):
        try:
            cloudpickle.register_pickle_by_value(sys.modules[name])
            registered.append(name)
        except ValueError:  # a module cloudpickle will not take by value: by reference, as before
            continue
    try:
        yield
    finally:
        for name in registered:
            cloudpickle.unregister_pickle_by_value(sys.modules[name])


def driver_extensions() -> bytes:
    """The user-registered patch modes and interventions of this process, pickled for the actors."""
    from ray import cloudpickle

    modes = [m for m in available_modes().values() if not _ours(m.value)]
    interventions = [iv for iv in available_interventions().values() if not _ours(iv.fn)]
    fns = [m.value for m in modes] + [iv.fn for iv in interventions]
    with _by_value(cloudpickle, fns):
        try:
            return cloudpickle.dumps((modes, interventions))
        except Exception:
            for kind, name, fn in [("patch mode", m.name, m.value) for m in modes] + [
                ("intervention", iv.name, iv.fn) for iv in interventions
            ]:
                try:
                    cloudpickle.dumps(fn)
                except Exception as exc:
                    raise UserError(
                        f"{kind} {name!r} ({origin(fn)}) cannot be sent to the Ray actors ({type(exc).__name__}: "
                        f"{exc}); register it in an installed package (entry point) or run with --backend local"
                    ) from None
            raise


def install(blob: bytes) -> None:
    """In an actor: register the driver's extensions (:func:`driver_extensions`)."""
    if not blob:
        return
    from ray import cloudpickle

    modes, interventions = cloudpickle.loads(blob)
    available_modes()  # the built-in and installed ones first
    available_interventions()
    for mode in modes:
        MODES[mode.name] = mode
    for iv in interventions:
        INTERVENTIONS[iv.name] = iv
