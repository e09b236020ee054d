"""The run cache: generated runs on disk, keyed by everything that decides them.

A rerun of a claims file with nothing changed, or ``pytest -k`` after a full run, needs the same
runs again: each run of the plan (:class:`~harness.claims.plan.RunSpec`) is looked up here before
it is generated, and every run generated is stored. What decides a run, and so its key:

- the run's :class:`~harness.claims.plan.RunKey` (model name, target prompts' texts, generation
  settings and seed, heads, mode, alignment, receivers, intervention, hook points) and the source
  prompts its patch reads;
- the model as loaded: its weights hash and its config, tokenizer and chat-template digests
  (:mod:`harness.model.provenance`), model class, device and dtype;
- the token ids every run tracks (the keyword lists, :func:`harness.metrics.next_token.keyword_tracks`);
- the code that generates: a hash of the source of ``harness.run``, ``harness.patch``,
  ``harness.model`` and the executor, the versions of torch, transformers and TransformerLens,
  and the source file of the patch mode or intervention the run uses (a user's conftest.py
  edited is a new key). A run whose mode or intervention has no readable source file is never
  cached.

Storage: one gzip-compressed JSON file per run, ``ROOT/ab/<key sha256>.json.gz``, written to a
temporary name and renamed (a killed run leaves no half-written entry). Token ids and tracked
log-probabilities are stored as little-endian int64 and float32 bytes (base64): exactly the
values generated (the tracked values are float32). Nothing is unpickled. An entry is trusted
only if it decompresses, parses, names this schema and version, holds exactly the key asked for
and its payload's sha256 matches the one recorded; anything else is reported as corrupted,
deleted and the run generated again.

Where: ``$CAUSAL_HEADS_RUN_CACHE`` (``off`` disables it), else ``runs/`` under the model cache
(``$CAUSAL_HEADS_CACHE``, default ``~/.cache/causal-heads``). ``causal-heads cache info|clear``
shows and empties it; ``--no-cache`` (pytest, evidence) runs without it.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import importlib.metadata
import inspect
import json
import os
import tempfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.claims.plan import RunSpec
from harness.core.errors import UserError
from harness.model.loading import ModelHandle, cache_dir
from harness.patch.interventions import get_intervention
from harness.patch.modes import MODES
from harness.run.generation import Generation, GenerationConfig, GenerationResult

SCHEMA = "causal-heads/run-cache"
VERSION = 1
ENV = "CAUSAL_HEADS_RUN_CACHE"
_HARNESS = Path(__file__).resolve().parents[1]
# the code that decides what a run generates (its source hashed into every key)
_CODE = ("run", "patch", "model", "claims/execute.py", "metrics/next_token.py")


@functools.cache
def code_version() -> str:
    """SHA-256 over the generating code's source and the versions of the libraries it drives."""
    h = hashlib.sha256()
    files: list[Path] = []
    for part in _CODE:
        path = _HARNESS / part
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(_HARNESS)).encode() + b"\0" + f.read_bytes() + b"\0")
    for dist in ("torch", "transformers", "transformer-lens"):
        try:
            h.update(f"{dist}=={importlib.metadata.version(dist)}\0".encode())
        except importlib.metadata.PackageNotFoundError:
            h.update(f"{dist} missing\0".encode())
    return h.hexdigest()


def _source_digest(fn: Any) -> str | None:
    """SHA-256 of the file that defines ``fn`` (None: no readable source file)."""
    try:
        path = inspect.getsourcefile(fn)
        return None if path is None else hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except (TypeError, OSError):
        return None


def extension_digest(run: RunSpec) -> str | None:
    """The source digest of the patch mode or intervention ``run`` uses ("" for a baseline; None:
    not cacheable)."""
    key = run.key
    if key.kind == "baseline":
        return ""
    if key.kind == "intervention":
        return _source_digest(get_intervention(key.intervention or "").fn)
    mode = MODES.get(key.patch_mode)
    return None if mode is None else _source_digest(mode.value)


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def run_key(run: RunSpec, handle: ModelHandle, track: Mapping[str, Sequence[int]]) -> dict | None:
    """Everything that decides ``run`` on ``handle`` (see the module docstring); None: not cacheable."""
    ext = extension_digest(run)
    if ext is None:
        return None
    fields = {**asdict(run.key), "generation": run.key.generation.model_dump()}
    whole = {
        "run": fields,
        "sources": list(run.sources),
        "layers": list(run.layers),
        "model": {
            "weights_sha256": handle.weights_sha256,
            **handle.digests,
            "model_class": type(handle.model).__name__,
            "device": str(handle.device),
            "dtype": str(handle.dtype),
            "prompt_format": handle.prompt_format,
        },
        "track_sha256": hashlib.sha256(_canonical({k: sorted(map(int, v)) for k, v in track.items()})).hexdigest(),
        "code_sha256": code_version(),
        "extension_sha256": ext,
    }
    return json.loads(_canonical(whole))  # as JSON gives it back (tuples as lists): compared to stored keys


# ---------------------------------------------------------------- (de)serialising a result


def _pack(values: Sequence, dtype: str) -> str:
    return base64.b64encode(np.asarray(values, dtype=dtype).tobytes()).decode("ascii")


def _unpack(text: str, dtype: str) -> list:
    return np.frombuffer(base64.b64decode(text, validate=True), dtype=dtype).tolist()


def result_to_payload(result: GenerationResult) -> dict:
    return {
        "config": result.config.model_dump(),
        "prompt_format": result.prompt_format,
        "generations": [
            {
                "prompt_index": g.prompt_index,
                "sample_index": g.sample_index,
                "seed": g.seed,
                "prompt": g.prompt,
                "prompt_token_ids": _pack(g.prompt_token_ids, "<i8"),
                "token_ids": _pack(g.token_ids, "<i8"),
                "text": g.text,
                "stopped_at_eos": g.stopped_at_eos,
                "tracked": {name: _pack(v, "<f4") for name, v in g.tracked.items()},
            }
            for g in result.generations
        ],
    }


def payload_to_result(payload: dict) -> GenerationResult:
    return GenerationResult(
        config=GenerationConfig(**payload["config"]),
        prompt_format=payload["prompt_format"],
        generations=[
            Generation(
                prompt_index=int(g["prompt_index"]),
                sample_index=int(g["sample_index"]),
                seed=int(g["seed"]),
                prompt=str(g["prompt"]),
                prompt_token_ids=tuple(_unpack(g["prompt_token_ids"], "<i8")),
                token_ids=tuple(_unpack(g["token_ids"], "<i8")),
                text=str(g["text"]),
                stopped_at_eos=bool(g["stopped_at_eos"]),
                tracked={str(n): tuple(_unpack(v, "<f4")) for n, v in g["tracked"].items()},
            )
            for g in payload["generations"]
        ],
    )


# ---------------------------------------------------------------- the store


@dataclass
class CacheStats:
    """What one execution asked of the cache."""

    hits: int = 0
    stored: int = 0
    corrupted: int = 0
    uncacheable: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class RunCache:
    """Generated runs under ``root`` (see the module docstring)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.stats = CacheStats()
        self.problems: list[str] = []  # one line per corrupted entry met (reported by the caller)

    @classmethod
    def default(cls) -> RunCache | None:
        """The cache at ``$CAUSAL_HEADS_RUN_CACHE`` or ``<model cache>/runs``; None when that is ``off``."""
        where = os.environ.get(ENV, "")
        if where.lower() in ("off", "0", "no", "false"):
            return None
        return cls(where or os.path.join(cache_dir(), "runs"))

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / f"{digest}.json.gz"

    @staticmethod
    def digest(key: dict) -> str:
        return hashlib.sha256(_canonical(key)).hexdigest()

    def get(self, key: dict) -> GenerationResult | None:
        """The stored result for ``key``; None when absent or not trustworthy (then deleted)."""
        digest = self.digest(key)
        path = self.path(digest)
        if not path.is_file():
            return None
        try:
            entry = json.loads(gzip.decompress(path.read_bytes()))
            problem = _entry_problem(entry, key)
            result = None if problem else payload_to_result(entry["payload"])
        except (OSError, EOFError, ValueError, KeyError, TypeError, zlib.error) as exc:
            problem, result = f"unreadable ({type(exc).__name__}: {exc})", None
        if problem is not None or result is None:
            self.stats.corrupted += 1
            self.problems.append(f"run cache: entry {path} {problem}; generating the run again")
            path.unlink(missing_ok=True)
            return None
        self.stats.hits += 1
        return result

    def put(self, key: dict, result: GenerationResult) -> None:
        """Store ``result`` under ``key`` atomically (a failure to write is reported, never raised)."""
        payload = result_to_payload(result)
        entry = {
            "schema": SCHEMA,
            "version": VERSION,
            "key": key,
            "payload_sha256": hashlib.sha256(_canonical(payload)).hexdigest(),
            "payload": payload,
        }
        path = self.path(self.digest(key))
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json.gz")
            with os.fdopen(fd, "wb") as fh:
                fh.write(gzip.compress(_canonical(entry), compresslevel=6, mtime=0))
            os.replace(tmp, path)
            tmp = None
            self.stats.stored += 1
        except OSError as exc:
            self.problems.append(f"run cache: could not store a run in {self.root} ({exc}); runs are not cached")
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)

    # -- causal-heads cache info | clear ------------------------------------------------
    def entries(self) -> list[Path]:
        return sorted(self.root.glob("??/*.json.gz")) if self.root.is_dir() else []

    def info(self) -> dict:
        files = self.entries()
        return {
            "root": str(self.root),
            "entries": len(files),
            "bytes": sum(f.stat().st_size for f in files),
            "code_sha256": code_version(),
        }

    def clear(self) -> int:
        """Delete every entry (and leftover temporary files); returns how many entries went."""
        files = self.entries()
        for f in files:
            f.unlink(missing_ok=True)
        for tmp in self.root.glob("??/.tmp-*") if self.root.is_dir() else []:
            tmp.unlink(missing_ok=True)
        for d in self.root.glob("??") if self.root.is_dir() else []:
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        return len(files)


def _entry_problem(entry: Any, key: dict) -> str | None:
    if not isinstance(entry, dict) or entry.get("schema") != SCHEMA:
        return "is not a run-cache entry"
    if entry.get("version") != VERSION:
        return f"has version {entry.get('version')!r}, not {VERSION}"
    if entry.get("key") != key:
        return "holds another run's key"
    if hashlib.sha256(_canonical(entry.get("payload"))).hexdigest() != entry.get("payload_sha256"):
        return "does not match its recorded sha256 (edited or damaged)"
    return None


def check_root(root: str) -> None:
    """``root`` can hold a cache (a folder or nothing yet); else one clear message."""
    if os.path.exists(root) and not os.path.isdir(root):
        raise UserError(f"run cache {root!r} is a file, not a folder (set ${ENV} to a folder, or off)")
