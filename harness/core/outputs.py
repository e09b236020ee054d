"""A run's outputs replaced together or not at all; signals that end a run without leftovers.

Three pieces, used by every command that writes results:

- :func:`write_temporary` writes a file's bytes into a hidden temporary next to it
  (``.NAME.XXXX.tmp``), removed again if the write is interrupted; :func:`harness.core.results.atomic_write`
  renames it into place at once, :class:`PendingFiles` keeps several until :meth:`~PendingFiles.commit`
  renames them all (the findings and the HTML of a pytest run), and :class:`Staging` gathers a
  job's outputs in a hidden folder of its output folder and moves them in together (evidence,
  nightly). The renames of a commit run with SIGINT and SIGTERM held (:func:`signals_held`), so a
  signal lands before or after them, never between.
- :func:`terminate_as_interrupt` turns SIGTERM into :class:`Terminated` (a ``KeyboardInterrupt``),
  so ``finally`` blocks and the writers above clean up, as they do on Ctrl-C.
- :func:`run_child` runs a child process and, when the parent is interrupted or terminated,
  forwards SIGTERM to it and waits for it: no orphan keeps writing after the job has exited.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import BinaryIO

CHILD_GRACE_S = 60.0  # how long a terminated child may take to finish its cleanup before it is killed


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program was (see :func:`terminate_as_interrupt`)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def terminate_as_interrupt() -> bool:
    """Make SIGTERM raise :class:`Terminated` in the main thread, unless another handler is set
    (one installed by an embedding program is kept). Returns whether it is in effect."""
    if threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(signal.SIGTERM)
    if current is _raise_terminated:
        return True
    if current is not signal.SIG_DFL:
        return False
    signal.signal(signal.SIGTERM, _raise_terminated)
    return True


def restore_sigterm() -> None:
    """Undo :func:`terminate_as_interrupt` (SIGTERM's default again), if it is still in effect."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is _raise_terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block has ended (then act as usual)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def write_temporary(path: str, write: Callable[[BinaryIO], object]) -> str:
    """``write(binary file)`` into a new temporary file next to ``path`` (its folder created),
    flushed to disk, with the permissions of an ordinary file; returns its path. Nothing is left
    behind when ``write`` fails or the process is interrupted."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    except OSError as exc:  # named by the file the run meant to write (see harness.core.errors.run_cli)
        raise OSError(exc.errno, exc.strerror, path) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a result is an ordinary file
    except OSError as exc:  # a full disk, a quota: named by the file the run meant to write
        _remove(tmp)
        raise OSError(exc.errno, exc.strerror, path) from None
    except BaseException:
        _remove(tmp)
        raise
    return tmp


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)


class PendingFiles:
    """Files written now (to temporaries next to their destinations) and put in place together
    by :meth:`commit`, or not at all (:meth:`discard`). A second write to a path replaces the first."""

    def __init__(self) -> None:
        self._pending: dict[str, str] = {}  # destination -> temporary
        self._staged: set[str] = set()  # destinations whose temporary another writer fills

    def write(self, path: str, write: Callable[[BinaryIO], object]) -> None:
        tmp = write_temporary(path, write)
        old = self._pending.pop(path, None)
        self._pending[path] = tmp
        if old is not None:
            _remove(old)

    def write_bytes(self, path: str, data: bytes) -> None:
        self.write(path, lambda fh: fh.write(data))

    def stage(self, path: str) -> str:
        """An empty temporary next to ``path`` for another writer to fill (pytest-html's report),
        put in place with the rest by :meth:`commit`, flushed to disk first; returns its path."""
        self.write(path, lambda fh: None)
        self._staged.add(path)
        return self._pending[path]

    def __contains__(self, path: str) -> bool:
        return path in self._pending

    def commit(self) -> list[str]:
        """Rename every pending file into place (signals held); returns the destinations."""
        for path in self._staged & set(self._pending):
            tmp = self._pending[path]
            if os.path.getsize(tmp) == 0:  # its writer never wrote: the old file stays
                _remove(tmp)
                del self._pending[path]
                continue
            with open(tmp, "rb+") as fh:  # written with a plain open(): flushed to disk before the rename
                os.fsync(fh.fileno())
        with signals_held():
            done = list(self._pending)
            for path, tmp in self._pending.items():
                os.replace(tmp, path)
            self._pending.clear()
            self._staged.clear()
        return done

    def discard(self) -> None:
        for tmp in self._pending.values():
            _remove(tmp)
        self._pending.clear()
        self._staged.clear()

    def __enter__(self) -> PendingFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()  # what was not committed: an error or an interruption on the way


class Staging:
    """A job's outputs, written under :meth:`path` (a hidden folder in ``out``) and moved into
    ``out`` together by :meth:`commit`; on leaving the ``with`` block without a commit (an error,
    a bad run, Ctrl-C, SIGTERM) the folder is removed and ``out`` is as it was. A staged folder
    (``plots``) replaces the old one whole."""

    def __init__(self, out: str) -> None:
        os.makedirs(out, exist_ok=True)
        self.out = out
        self.dir = tempfile.mkdtemp(prefix=".staging.", dir=out)

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def final(self, name: str) -> str:
        return os.path.join(self.out, name)

    def commit(self) -> list[str]:
        """Move every staged entry (not hidden temporaries) into ``out``; returns the moved paths."""
        moved = []
        with signals_held():
            replaced = tempfile.mkdtemp(prefix=".replaced.", dir=self.out)
            for name in sorted(os.listdir(self.dir)):
                if name.startswith("."):
                    continue  # a writer's temporary file
                src, dst = self.path(name), self.final(name)
                if os.path.isdir(dst) and not os.path.islink(dst):
                    os.replace(dst, os.path.join(replaced, name))
                os.replace(src, dst)
                moved.append(dst)
            _remove(replaced)
            _remove(self.dir)
        return moved

    def discard(self) -> None:
        _remove(self.dir)

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


def run_child(cmd: list[str]) -> int:
    """Run ``cmd`` and return its exit status. Should this process be interrupted or terminated
    while it waits, the child gets SIGTERM and is waited for (killed after ``CHILD_GRACE_S``), so
    it never outlives the job; then the interruption goes on."""
    proc = subprocess.Popen(cmd)
    try:
        return proc.wait()
    except BaseException:
        with signals_held():  # a second Ctrl-C must not abandon the child half-way through this
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=CHILD_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        raise
