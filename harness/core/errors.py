"""User-facing errors and the one place that turns them into exit code 2.

Every error a user can cause by bad input (unknown model, missing weights, bad
option value) is a :class:`UserError`. Command-line entry points run through
:func:`run_cli`, which prints the message on one line of stderr and exits with
code 2, without a traceback. Internal bugs stay ordinary exceptions.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Iterable

from harness.core.outputs import Terminated, terminate_as_interrupt


class UserError(Exception):
    """Bad input from the user; the message says what was wrong and what is allowed."""

    exit_code = 2


class UnknownNameError(UserError, KeyError):
    """A name that is not in a registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ModelUnavailableError(UserError):
    """A model whose weights are not on this machine."""


def did_you_mean(kind: str, name: str, available: Iterable[str]) -> str:
    """Format "unknown <kind> 'x'. Did you mean ...? Available: ..." for ``name``."""
    options = sorted(available)
    close = difflib.get_close_matches(name, options, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown {kind} {name!r}.{hint} Available: {', '.join(options)}"


def check_options(checks: Iterable[tuple[bool, str, object, str]]) -> None:
    """Raise a :class:`UserError` for the first ``(ok, flag, value, allowed)`` whose ``ok`` is false.

    The message reads ``--seed -1 is invalid: must be an integer >= 0``: the flag, the bad value
    and what is allowed, on one line.
    """
    for ok, flag, value, allowed in checks:
        if not ok:
            raise UserError(f"{flag} {value} is invalid: must be {allowed}")


def reading_error(exc: Exception) -> str:
    """A stored document's bad structure in words: ``KeyError('deltas')`` -> "field 'deltas' is missing"."""
    if isinstance(exc, KeyError) and exc.args:
        return f"field {exc.args[0]!r} is missing"
    return str(exc)


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> None:
    """Run ``main(argv)`` and exit; a :class:`UserError` becomes one line on stderr and exit 2.
    Ctrl-C (exit 130) and SIGTERM (exit 143, :func:`harness.core.outputs.terminate_as_interrupt`)
    unwind the command, so its writers remove their temporaries and its children are stopped."""
    terminate_as_interrupt()
    try:
        code = main(argv)
    except UserError as exc:
        print("error: " + terminal_safe(str(exc)).replace("\n", "\\x0a"), file=sys.stderr)  # one line
        sys.exit(exc.exit_code)
    except OSError as exc:
        if exc.filename is None:
            raise
        # the run could not read or write a file it was given (full disk, permissions): one line
        print(f"error: {terminal_safe(str(exc.filename))}: {exc.strerror}", file=sys.stderr)
        sys.exit(2)
    except Terminated:
        print("terminated", file=sys.stderr)
        sys.exit(143)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)] if chr(c) not in "\n\t"}


def terminal_safe(text: str) -> str:
    """Text from untrusted documents as a terminal may show it: control characters written as
    visible ``\\xNN`` escapes."""
    return text.translate(_CONTROL)
