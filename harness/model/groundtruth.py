"""The shipped ground-truth models: small models whose mechanism is known by construction.

Each is a ``save_pretrained``-style directory (GPT-2 architecture, its own word-level tokenizer,
weights in ``model.safetensors``) with ``truth.json`` (which heads cause which effect on which
metric, which are inert) and ``prompts/`` (its prompt pools and keyword list, in the usual
formats). They load through the normal offline path, by directory or by registered name
(``groundtruth-planted``, ``groundtruth-distractor``, ``groundtruth-induction``). The script that
made them, ``build.py``, sits beside them; see its docstring and ``README.md`` there.

In a source checkout they are ``fixtures/groundtruth/``; a wheel carries them as the data package
``harness._groundtruth``.
"""

from __future__ import annotations

import json
import os

from harness.core.errors import UnknownNameError, did_you_mean
from harness.core.results import REPO_ROOT

MODELS = ("planted", "distractor", "induction")
PREFIX = "groundtruth-"
_PACKAGED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_groundtruth")
GROUNDTRUTH_DIR = _PACKAGED if os.path.isdir(_PACKAGED) else os.path.join(REPO_ROOT, "fixtures", "groundtruth")


RECORD = os.path.join(GROUNDTRUTH_DIR, "validation.json")  # the release's `causal-heads validate` record


def registered_name(model: str) -> str:
    """``planted`` -> ``groundtruth-planted``, the name ``--model`` takes."""
    return PREFIX + model


def check(model: str) -> str:
    """``model`` if it is a shipped ground-truth model, else one message naming the choices."""
    if model not in MODELS:
        raise UnknownNameError(did_you_mean("ground-truth model", model, MODELS))
    return model


def model_dir(model: str) -> str:
    return os.path.join(GROUNDTRUTH_DIR, check(model))


def prompts_dir(model: str) -> str:
    return os.path.join(model_dir(model), "prompts")


def truth_path(model: str) -> str:
    return os.path.join(model_dir(model), "truth.json")


def shipped_record() -> dict | None:
    """The release's validation record (written by ``make validation``), or None when it is missing
    or unreadable (reports then leave their ground-truth section out)."""
    try:
        with open(RECORD, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("models"), dict) else None
