"""Result documents: provenance, NaN policy and atomic writes.

A result is a plain ``dict`` of JSON types with ``schema`` and ``schema_version``. NaN
policy: non-finite floats are stored as ``null`` in JSON (JSON has no NaN) and kept as
``float('nan')`` in pickles; readers treat ``null`` in a numeric field as "undefined".
Writes go to a temporary file in the target folder, are flushed and fsynced, then renamed
over the target, so an interrupted run never leaves a half-written result.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from typing import BinaryIO, NoReturn

from harness.core.errors import UserError
from harness.core.outputs import write_temporary

PACKAGES = (
    "torch",
    "transformers",
    "transformer-lens",
    "numpy",
    "scipy",
    "statsmodels",
    "vaderSentiment",
    "gguf",
    "causal-heads",
)
EXTENSIONS = (".json", ".pkl")
REPO_ROOT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)  # harness/core/ -> the checkout


def repo_path(path: str) -> str:
    """``path`` relative to the repository root when inside it, else absolute.

    Rerun commands start with ``pytest causal_tests`` (run from the root) and results travel
    between machines, so paths in them must not depend on the caller's working directory.
    """
    path = os.path.abspath(path)
    rel = os.path.relpath(path, REPO_ROOT)
    return path if rel == os.pardir or rel.startswith(os.pardir + os.sep) else rel


def shown_path(path: str) -> str:
    """``path`` relative to the working directory when inside it, else absolute: how a rerun
    command, typed where the run was started, names a file."""
    path = os.path.abspath(path)
    rel = os.path.relpath(path)
    return path if rel == os.pardir or rel.startswith(os.pardir + os.sep) else rel


def git_info() -> dict:
    root = REPO_ROOT

    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=False)

    try:
        head = git("rev-parse", "HEAD")
        status = git("status", "--porcelain")
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def environment() -> dict:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "git": git_info(),
    }


def json_safe(obj):
    """Replace non-finite floats by None, recursively (see the NaN policy above)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def file_stem(name: str) -> str:
    """A file-name form of a model name; a directory is named by its last component."""
    name = os.path.basename(name.rstrip("/")) if os.path.isdir(name) else name
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


# C0 and C1 control characters except newline and tab: ANSI escape sequences, carriage returns,
# bells and backspaces in a document's text would rewrite or hide what a terminal shows
def path_in(folder: str, *parts: str, suffix: str = "") -> str:
    """A file in ``folder`` named from ``parts`` (text from documents, model names, claim ids:
    untrusted), each made a plain file-name piece (:func:`file_stem`: no separators) and joined
    with ``_``; the result is checked to resolve inside ``folder``, whatever the parts held."""
    name = "_".join(file_stem(str(p)) for p in parts) + suffix
    path = os.path.join(folder, name)
    root = os.path.realpath(folder)
    if os.path.commonpath([root, os.path.realpath(path)]) != root or name in (".", ".."):
        raise UserError(f"refusing to write {name!r}: it would land outside {folder}")
    return path


def refuse_inputs_as_outputs(outputs: dict[str, str | None], inputs: list[str]) -> None:
    """An output that resolves to one of the run's inputs (a prompt set it read, the findings it
    renders) would replace what the run was made from: refused, naming the flag, before any work."""
    read = {os.path.realpath(p) for p in inputs if p}
    for flag, path in outputs.items():
        if path and os.path.realpath(path) in read:
            raise UserError(f"{flag} {path!r} is a file this run reads; write the output somewhere else")


def check_output_path(path: str, flag: str = "--output") -> None:
    """A result document's path (``.json`` or ``.pkl``), checked as :func:`check_writable` does."""
    check_writable(flag, path, extensions=EXTENSIONS)


def check_extension(path: str, extensions: tuple[str, ...], flag: str = "") -> None:
    """``path`` ends with one of ``extensions``; a :class:`UserError` naming the flag otherwise."""
    if not path.endswith(extensions):
        raise UserError(f"{flag + ' ' if flag else ''}{path!r}: the extension must be one of {', '.join(extensions)}")


def check_writable(flag: str, path: str, *, folder: bool = False, extensions: tuple[str, ...] = ()) -> None:
    """Before any work: can the run write ``path`` (a file, or with ``folder`` a folder of files)?
    A :class:`UserError` naming the flag when the extension is not one of ``extensions``, the path
    is a folder where a file is wanted (or the reverse), its nearest existing parent is a file or
    not writable, or that disk has no free space left."""
    if extensions:
        check_extension(path, extensions, flag)
    target = os.path.abspath(path)
    if folder and os.path.exists(target) and not os.path.isdir(target):
        raise UserError(f"{flag} {path!r}: it is a file, not a folder")
    if not folder and os.path.isdir(target):
        raise UserError(f"{flag} {path!r}: it is a folder, not a file")
    parent = target if folder else os.path.dirname(target)
    while not os.path.exists(parent):  # the folders the run will create, under the nearest existing one
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UserError(f"{flag} {path!r}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path!r}: {parent} is not writable")
    if shutil.disk_usage(parent).free == 0:
        raise UserError(f"{flag} {path!r}: no space left on the disk of {parent}")


def check_replaceable(flag: str, path: str, schema: str, force: bool, force_flag: str = "--force") -> None:
    """An existing ``path`` is replaced only when it is a document of the kind about to be written
    (``schema``), or with ``--force``: a prompt set, a findings document or any other file given
    by mistake is refused before the work, naming what it holds. A pickle is not opened (it is
    never unpickled here) and counts as ours."""
    if force or not os.path.isfile(path) or path.endswith(".pkl"):
        return
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
        kind = (doc.get("schema") or doc.get("format")) if isinstance(doc, dict) else None
    except (OSError, ValueError, RecursionError):  # not JSON text: not a document of ours either
        kind = None
    if kind != schema:
        held = f"a {kind!r} document" if isinstance(kind, str) else "a file that is not one of ours"
        raise UserError(f"{flag} {path!r} holds {held}, not {schema!r}; pass {force_flag} to replace it")


def write_result(doc: dict, path: str) -> None:
    """Write ``doc`` as JSON or pickle (by extension), atomically."""
    data = result_bytes(doc, path)
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode()))


def atomic_write(path: str, write: Callable[[BinaryIO], object]) -> None:
    """``write(binary file)`` into a temporary file next to ``path``, then rename: never half a
    file, and no temporary left when interrupted (:func:`harness.core.outputs.write_temporary`)."""
    tmp = write_temporary(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def result_bytes(doc: dict, path: str) -> bytes:
    """``doc`` serialised as ``path``'s extension says: JSON (NaN as null) or pickle."""
    check_extension(path, EXTENSIONS)
    if path.endswith(".json"):
        return json.dumps(json_safe(doc), indent=1, ensure_ascii=False, allow_nan=False).encode()
    return pickle.dumps(doc, protocol=pickle.HIGHEST_PROTOCOL)


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number (this code stores a missing number as null)")


def load_versioned(path: str, schema: str, version: int | tuple[int, ...], what: str) -> dict:
    """A JSON document of ours, validated for ``schema`` and ``version`` (one, or the versions this
    code reads); ``UserError`` naming the file."""

    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh, parse_constant=_no_constant)
        json.dumps(doc, ensure_ascii=False).encode()  # a lone surrogate ("\ud800") is not text
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except UnicodeEncodeError as exc:
        raise UserError(f"{path}: holds a lone surrogate {exc.object[exc.start]!r}, which is not text") from None
    except RecursionError:
        raise UserError(f"{path}: nested too deeply to be a {what} document") from None
    except ValueError as exc:  # NaN or Infinity, which this code never writes (NaN is stored as null)
        raise UserError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != schema:
        raise UserError(f"{path}: not a {what} document (schema must be {schema!r})")
    readable = (version,) if isinstance(version, int) else version
    if type(doc.get("schema_version")) is not int or doc["schema_version"] not in readable:  # not true, not 1.0
        shown = " or ".join(map(str, readable))
        raise UserError(
            f"{path}: {what} schema_version {doc.get('schema_version')!r} is not supported (this code reads {shown})"
        )
    return doc


def command_line() -> str:
    return " ".join([os.path.basename(sys.executable), *sys.argv])
