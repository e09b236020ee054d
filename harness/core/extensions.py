"""What the user-extensible registries (metrics, patch modes, interventions) share: who defined a
function, the rules for names and functions, and importing the modules installed packages name
in an entry-point group.

Identity: a function is named by its file, line and qualified name (:func:`origin`), not its
``module.qualname``: two sibling ``conftest.py`` files are both module ``conftest``, lambdas are
all ``<lambda>``, and a factory's functions share one qualname. :func:`same_definition` says
whether two functions are one definition imported again (same code, equal defaults and closure
values), which may replace itself; anything else under a taken name is refused.

Entry points: a package whose entry point fails to import is reported once, by distribution and
entry-point name, and skipped (:func:`broken_entry_points`); the others still load, and a claim
that needs the broken one fails alone, its message naming the package.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import re
import sys
from collections.abc import Callable

from harness.core.errors import UserError

NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_BROKEN: dict[str, list[str]] = {}


def origin(fn: Callable) -> str:
    """Where ``fn`` was defined: ``file:line qualname`` (``module.qualname`` for a callable without code)."""
    code = getattr(fn, "__code__", None)
    qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    if code is None:
        return f"{getattr(fn, '__module__', None) or type(fn).__module__}.{qualname}"
    try:
        where = inspect.getsourcefile(fn) or code.co_filename
    except TypeError:
        where = code.co_filename
    return f"{where}:{code.co_firstlineno} {qualname}"


def _values(fn: Callable) -> tuple | None:
    closure = getattr(fn, "__closure__", None) or ()
    try:
        return (tuple(c.cell_contents for c in closure), getattr(fn, "__defaults__", None))
    except ValueError:  # an empty cell
        return None


def same_definition(a: Callable, b: Callable) -> bool:
    """``a`` and ``b`` are one definition (the same object, or the same file, line and name with
    equal closure values and defaults: a module imported again)."""
    if a is b:
        return True
    if origin(a) != origin(b):
        return False
    va, vb = _values(a), _values(b)
    try:
        return va is not None and vb is not None and bool(va == vb)
    except Exception:  # values that cannot be compared: not shown to be the same
        return False


def check_name(kind: str, name: object) -> None:
    """A registry name is a non-empty word (letters, digits, ``_ . -``)."""
    if not isinstance(name, str) or not NAME.match(name):
        raise UserError(f"{kind} name {name!r}: use letters, digits, '_', '.' and '-'")


def check_registration(kind: str, name: object, fn: object) -> None:
    """:func:`check_name`, and the registered thing a function: a :class:`UserError` naming the
    kind and the bad value otherwise."""
    check_name(kind, name)
    if not callable(fn):
        raise UserError(f"{kind} {name!r}: registered {type(fn).__name__} {fn!r:.60}, which is not a function")


@functools.cache
def load_entry_points(group: str) -> None:
    """Import each installed package's module in entry-point ``group`` once per process; the
    modules register their metrics or modes when imported. One that fails to import is said once
    on stderr, naming its distribution and entry point, and skipped."""
    for ep in importlib.metadata.entry_points(group=group):
        try:
            ep.load()
        except Exception as exc:  # a broken package must not take every claim down with it
            dist = getattr(getattr(ep, "dist", None), "name", None) or "an unknown distribution"
            line = f"entry point {ep.name!r} ({ep.value}) of package {dist} in {group} failed to load: " + (
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            )
            _BROKEN.setdefault(group, []).append(line)
            print(f"warning: {line}; skipped", file=sys.stderr)


def broken_entry_points(group: str) -> str:
    """What failed to load in ``group``, for messages about a name that is not registered ("" when none)."""
    lines = _BROKEN.get(group) or []
    return f" ({'; '.join(lines)})" if lines else ""
