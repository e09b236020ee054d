"""Prompt sets and emotion keyword lists: data files in ``prompts/``, validated on load.

Files (all JSON, UTF-8):

- ``<name>_prompts.json``: ``{"format": "causal-heads/prompts", "version": 1, "name": str,
  "kind": "neutral" | "emotion", "description": str, "prompts": [str, ...]}``. Prompts are
  non-empty strings with no duplicates (after trimming whitespace and case-folding).
- ``<emotion>_keywords.json``: ``{"format": "causal-heads/keywords", "version": 1,
  "emotion": str, "description": str, "keywords": [str, ...]}``; see
  :mod:`harness.metrics` for how keywords are matched.

An *emotion* is any name with both an ``emotion``-kind prompt set and a keyword list, so a
new emotion needs only these two files. ``$CAUSAL_HEADS_PROMPTS`` points to another folder.
Errors name the file, the entry and the problem.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.core.errors import UnknownNameError, UserError, did_you_mean
from harness.core.results import REPO_ROOT
from harness.run.templating import format_prompts

# In a source checkout the shipped sets are the top-level prompts/ folder; a wheel carries them as
# the data package harness._prompts (pyproject.toml maps one onto the other).
_PACKAGED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_prompts")
PROMPTS_DIR = _PACKAGED if os.path.isdir(_PACKAGED) else os.path.join(REPO_ROOT, "prompts")
PROMPT_SUFFIX, KEYWORD_SUFFIX = "_prompts.json", "_keywords.json"
KINDS = ("neutral", "emotion")


class DataFileError(UserError):
    """A prompt or keyword file that is missing or malformed."""


@dataclass(frozen=True)
class PromptSet:
    name: str
    kind: str
    description: str
    version: int
    prompts: tuple[str, ...]
    path: str
    sha256: str

    def head(self, n: int | None) -> tuple[str, ...]:
        """The first ``n`` prompts (all when ``n`` is None); refuses more than there are."""
        if n is None:
            return self.prompts
        if not 1 <= n <= len(self.prompts):
            raise UserError(
                f"--n-prompts {n} is invalid for prompt set {self.name!r}: it has {len(self.prompts)} prompts"
            )
        return self.prompts[:n]


@dataclass(frozen=True)
class KeywordList:
    emotion: str
    description: str
    version: int
    keywords: tuple[str, ...]
    path: str
    sha256: str


def prompt_hashes(prompts: Sequence[str]) -> list[str]:
    """The sha256 of each prompt's text (UTF-8): what records which prompts a step used."""
    return [hashlib.sha256(p.encode("utf-8")).hexdigest() for p in prompts]


def prompts_dir() -> str:
    """The prompt folder in use: ``$CAUSAL_HEADS_PROMPTS`` (a user's own sets) or the shipped one."""
    return os.path.abspath(os.environ.get("CAUSAL_HEADS_PROMPTS") or PROMPTS_DIR)


def data_names(suffix: str) -> list[str]:
    d = prompts_dir()
    return sorted(f[: -len(suffix)] for f in os.listdir(d) if f.endswith(suffix)) if os.path.isdir(d) else []


def _read(path: str, expected_format: str) -> tuple[dict, str]:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise DataFileError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise DataFileError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(doc, dict):
        raise DataFileError(f"{path}: the top level must be a JSON object, got {type(doc).__name__}")
    if doc.get("format") != expected_format:
        raise DataFileError(f"{path}: field 'format' must be {expected_format!r}, got {doc.get('format')!r}")
    if type(doc.get("version")) is not int or doc["version"] != 1:  # JSON true and 1.0 equal 1 in Python
        raise DataFileError(
            f"{path}: field 'version' must be 1 (the only version this code reads), got {doc.get('version')!r}"
        )
    if not isinstance(doc.get("description"), str) or not doc["description"].strip():
        raise DataFileError(f"{path}: field 'description' must be a non-empty string")
    return doc, hashlib.sha256(raw).hexdigest()


def _string_list(path: str, doc: dict, field: str) -> tuple[str, ...]:
    items = doc.get(field)
    if not isinstance(items, list):
        raise DataFileError(f"{path}: field {field!r} must be a list of strings, got {type(items).__name__}")
    if not items:
        raise DataFileError(f"{path}: field {field!r} is empty")
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise DataFileError(f"{path}: {field}[{i}] must be a string, got {type(item).__name__} {item!r}")
        if not item.strip():
            raise DataFileError(f"{path}: {field}[{i}] is empty or whitespace")
        try:
            item.encode("utf-8")
        except UnicodeEncodeError as exc:  # "\ud800" in the JSON: a lone surrogate is not text
            raise DataFileError(
                f"{path}: {field}[{i}] holds a lone surrogate {exc.object[exc.start]!r} at {exc.start}, which is not text"
            ) from None
        key = " ".join(item.split()).casefold()
        if key in seen:
            raise DataFileError(f"{path}: {field}[{i}] {item!r} duplicates {field}[{seen[key]}]")
        seen[key] = i
    return tuple(items)


def load_prompt_set(name: str) -> PromptSet:
    """Load and validate ``prompts/<name>_prompts.json``."""
    path = os.path.join(prompts_dir(), name + PROMPT_SUFFIX)
    if not os.path.isfile(path):
        raise UnknownNameError(f"no prompt file {path}; " + did_you_mean("prompt set", name, data_names(PROMPT_SUFFIX)))
    doc, digest = _read(path, "causal-heads/prompts")
    if doc.get("name") != name:
        raise DataFileError(f"{path}: field 'name' must be {name!r} (the file name), got {doc.get('name')!r}")
    if doc.get("kind") not in KINDS:
        raise DataFileError(f"{path}: field 'kind' must be one of {', '.join(KINDS)}, got {doc.get('kind')!r}")
    return PromptSet(
        name=name,
        kind=doc["kind"],
        description=doc["description"],
        version=1,
        prompts=_string_list(path, doc, "prompts"),
        path=path,
        sha256=digest,
    )


def load_keywords(emotion: str) -> KeywordList:
    """Load and validate ``prompts/<emotion>_keywords.json``."""
    path = os.path.join(prompts_dir(), emotion + KEYWORD_SUFFIX)
    if not os.path.isfile(path):
        raise UnknownNameError(did_you_mean("emotion", emotion, emotions()))
    doc, digest = _read(path, "causal-heads/keywords")
    if doc.get("emotion") != emotion:
        raise DataFileError(f"{path}: field 'emotion' must be {emotion!r} (the file name), got {doc.get('emotion')!r}")
    words = _string_list(path, doc, "keywords")
    for i, w in enumerate(words):
        if w != w.strip() or any(not (c.isalnum() or c in " '-") for c in w):
            raise DataFileError(
                f"{path}: keywords[{i}] {w!r} may hold only letters, digits, spaces, "
                f"apostrophes and hyphens, with no surrounding space"
            )
    return KeywordList(
        emotion=emotion, description=doc["description"], version=1, keywords=words, path=path, sha256=digest
    )


def emotions() -> list[str]:
    """Names that have both a keyword list and a prompt file (kind not checked here)."""
    return sorted(set(data_names(KEYWORD_SUFFIX)) & set(data_names(PROMPT_SUFFIX)))


def keyword_emotions() -> list[str]:
    """Names that have a keyword list (each gets an ``<emotion>_keywords`` metric)."""
    return data_names(KEYWORD_SUFFIX)


def load_emotion_prompts(emotion: str) -> PromptSet:
    """The source prompt set of an emotion; an unknown emotion gets "Did you mean ...?"."""
    if emotion not in emotions():
        # one of the two data files exists (a target set like neutral is not half an emotion):
        # say which one is missing, and where
        if emotion in data_names(PROMPT_SUFFIX) and load_prompt_set(emotion).kind == "emotion":
            missing = ("keyword list", KEYWORD_SUFFIX)
        elif emotion in data_names(KEYWORD_SUFFIX):
            missing = ("prompt file", PROMPT_SUFFIX)
        else:
            missing = None
        if missing:
            raise UnknownNameError(
                f"emotion {emotion!r} has no {missing[0]}: an emotion needs both "
                f"{emotion}{PROMPT_SUFFIX} and {emotion}{KEYWORD_SUFFIX}; "
                f"{os.path.join(prompts_dir(), emotion + missing[1])} does not exist"
            )
        raise UnknownNameError(did_you_mean("emotion", emotion, emotions()))
    ps = load_prompt_set(emotion)
    if ps.kind != "emotion":
        raise DataFileError(f"{ps.path}: kind must be 'emotion' for an emotion's prompt set, got {ps.kind!r}")
    return ps


def token_length_stats(tokenizer: Any, prompt_set: PromptSet, prompt_format: str = "plain") -> dict:
    """Token counts of a set's prompts (as templated): min, quartiles, median, mean, max."""
    import statistics

    fmt = format_prompts(tokenizer, prompt_set.prompts, prompt_format)
    lengths = sorted(len(tokenizer(t, add_special_tokens=fmt.add_special_tokens).input_ids) for t in fmt.texts)
    q1, median, q3 = statistics.quantiles(lengths, n=4, method="inclusive")
    return {
        "set": prompt_set.name,
        "n": len(lengths),
        "format": fmt.format,
        "min": lengths[0],
        "q1": q1,
        "median": median,
        "q3": q3,
        "mean": statistics.fmean(lengths),
        "max": lengths[-1],
    }
