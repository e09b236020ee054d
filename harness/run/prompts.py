"""Prompt sets and emotion keyword lists: data files in ``prompts/``, validated on load.

Files (all JSON, UTF-8):

- ``<name>_prompts.json``: ``{"format": "causal-heads/prompts", "version": 1, "name": str,
  "kind": "neutral" | "emotion", "description": str, "prompts": [str, ...]}``. Prompts are
  non-empty strings with no duplicates (after trimming whitespace and case-folding).
  Version 2 adds prompts written from templates, and a discovery/confirmation split by whole
  templates: ``"prompts_split": "discovery" | "confirmation"`` (the side of the written
  prompts), ``"fillers": {slot: [str, ...]}`` and ``"templates": [{"id": str, "split":
  "discovery" | "confirmation", "text": "... {slot} ..."}, ...]``; each template yields one
  prompt per filler of its slot. A set's prompts, and a split's, are its written prompts in
  order, then its templates' interleaved (every template's first filler, then every
  template's second, ...), so the first ``n`` of a split cover all of its templates.
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
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
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
SPLITS = ("discovery", "confirmation")  # a prompt's side: heads are selected on one, claims confirmed on the other
SLOT = re.compile(r"\{([a-z_]+)\}")


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
    splits: dict[str, tuple[str, ...]] = field(default_factory=dict)  # {} for a version-1 file

    def head(self, n: int | None) -> tuple[str, ...]:
        """The first ``n`` prompts (all when ``n`` is None); refuses more than there are."""
        if n is None:
            return self.prompts
        if not 1 <= n <= len(self.prompts):
            raise UserError(
                f"--n-prompts {n} is invalid for prompt set {self.name!r}: it has {len(self.prompts)} prompts"
            )
        return self.prompts[:n]

    def split(self, name: str | None) -> tuple[str, ...]:
        """The prompts of split ``name`` (``discovery`` or ``confirmation``; None or ``all``: every
        prompt). A set without splits (a version-1 file) refuses, naming the file."""
        if name in (None, "all"):
            return self.prompts
        if name not in SPLITS:
            raise UserError(f"split {name!r} is not one of {', '.join(SPLITS)}, all")
        if not self.splits:
            raise UserError(
                f"prompt set {self.name!r} ({self.path}) has no discovery/confirmation split "
                "(a version-1 file: give it templates with a split, see docs/data.md)"
            )
        return self.splits[name]

    def take(self, n: int | None, split: str | None = None) -> tuple[str, ...]:
        """The first ``n`` prompts of ``split`` (all of it when ``n`` is None), refusing more than it has."""
        chosen = self.split(split)
        if n is None:
            return chosen
        if not 1 <= n <= len(chosen):
            where = f"its {split} split" if split not in (None, "all") else "it"
            raise UserError(
                f"--n-prompts {n} is invalid for prompt set {self.name!r}: {where} has {len(chosen)} prompts"
            )
        return chosen[:n]


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
    versions = (1, 2) if expected_format == "causal-heads/prompts" else (1,)
    if type(doc.get("version")) is not int or doc["version"] not in versions:  # JSON true and 1.0 equal 1
        raise DataFileError(
            f"{path}: field 'version' must be {' or '.join(map(str, versions))} (the versions this code reads), "
            f"got {doc.get('version')!r}"
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
    written = _string_list(path, doc, "prompts")
    if doc["version"] == 1:
        return PromptSet(name, doc["kind"], doc["description"], 1, written, path, digest)
    splits = _templated(path, doc, written)
    every = interleave([written, *_expanded(path, doc)])
    _string_list(path, {"prompts": list(every)}, "prompts")  # no templated prompt repeats another
    return PromptSet(name, doc["kind"], doc["description"], 2, every, path, digest, splits)


def interleave(groups: Sequence[Sequence[str]]) -> tuple[str, ...]:
    """The first group whole (the written prompts), then the others round-robin."""
    first, rest = (tuple(groups[0]), groups[1:]) if groups else ((), ())
    longest = max((len(g) for g in rest), default=0)
    return first + tuple(g[i] for i in range(longest) for g in rest if i < len(g))


def _expanded(path: str, doc: dict) -> list[list[str]]:
    """Each template's prompts (one per filler of its slot), in file order."""
    fillers = doc["fillers"]
    out = []
    for t in doc["templates"]:
        (slot,) = SLOT.findall(t["text"])
        out.append([t["text"].replace("{" + slot + "}", f) for f in fillers[slot]])
    return out


def _templated(path: str, doc: dict, written: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Check a version-2 file's templates and fillers; its splits' prompts."""
    side = doc.get("prompts_split")
    if side not in SPLITS:
        raise DataFileError(f"{path}: field 'prompts_split' must be one of {', '.join(SPLITS)}, got {side!r}")
    fillers = doc.get("fillers")
    if not isinstance(fillers, dict) or not fillers:
        raise DataFileError(f"{path}: field 'fillers' must be an object of slot -> list of strings")
    for slot in fillers:
        _string_list(path, fillers, slot)
    templates = doc.get("templates")
    if not isinstance(templates, list) or not templates:
        raise DataFileError(f"{path}: field 'templates' must be a non-empty list of objects")
    used = _check_templates(path, templates, fillers)
    unused = sorted(set(fillers) - used)
    if unused:
        raise DataFileError(f"{path}: fillers {unused[0]!r} is used by no template")
    groups = _expanded(path, doc)
    splits = {}
    for name in SPLITS:
        own = [g for t, g in zip(templates, groups) if t["split"] == name]
        if not own:
            raise DataFileError(f"{path}: no template is in the {name} split: a split needs whole templates of its own")
        splits[name] = interleave([written if side == name else (), *own])
    return splits


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


def check_prompt_folder() -> str:
    """The prompt folder in use, which must exist and hold at least one prompt set: a
    :class:`UserError` naming it otherwise (a check that passes on nothing is no check)."""
    folder = prompts_dir()
    where = "$CAUSAL_HEADS_PROMPTS" if os.environ.get("CAUSAL_HEADS_PROMPTS") else "the prompt folder"
    if not os.path.isdir(folder):
        raise UserError(f"{where} {folder!r} is not a folder")
    if not data_names(PROMPT_SUFFIX):
        raise UserError(f"{where} {folder!r} holds no prompt sets (files named <name>{PROMPT_SUFFIX})")
    return folder


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


def _check_templates(path: str, templates: list, fillers: dict) -> set[str]:
    """Each template: its fields, a unique id, a split, exactly one known slot; the slots used."""
    ids: set[str] = set()
    used: set[str] = set()
    for i, t in enumerate(templates):
        where = f"{path}: templates[{i}]"
        if not isinstance(t, dict) or set(t) != {"id", "split", "text"}:
            raise DataFileError(f"{where} must be an object with exactly the fields id, split, text")
        if not isinstance(t["id"], str) or not t["id"] or t["id"] in ids:
            raise DataFileError(f"{where}: id {t['id']!r} must be a non-empty string used once")
        ids.add(t["id"])
        if t["split"] not in SPLITS:
            raise DataFileError(f"{where}: split must be one of {', '.join(SPLITS)}, got {t['split']!r}")
        slots = SLOT.findall(t["text"]) if isinstance(t["text"], str) else []
        if len(slots) != 1 or slots[0] not in fillers:
            raise DataFileError(
                f"{where}: text {t['text']!r} must hold exactly one {{slot}} naming a list in 'fillers' "
                f"({', '.join(sorted(fillers))})"
            )
        used.add(slots[0])
    return used


def selection_prompts(
    emotion: str, target: str, n: int, split: str | None = None
) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """The source and target prompts a screen or sweep selects heads on: the first ``n`` of both
    sets' ``split``; None: ``discovery`` where both sets have splits (the shipped ones do), else
    every prompt (``all``). Returns sources, targets and the split used."""
    sources_set, targets_set = load_emotion_prompts(emotion), load_prompt_set(target)
    if split is None:
        split = "discovery" if sources_set.splits and targets_set.splits else "all"
    return sources_set.take(n, split), targets_set.take(n, split), split


def other_split(split: str) -> str:
    """The split that confirms what ``split`` selected (``all`` has none: its claims are exploratory)."""
    return {"discovery": "confirmation", "confirmation": "discovery"}.get(split, "all")
