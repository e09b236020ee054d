"""Registry of named per-text metrics, each declaring its range and direction.

=====================  ============  =============================================
name                   range         meaning (higher = ...)
=====================  ============  =============================================
``sentiment``          [0, 1]        more positive (VADER, :mod:`.sentiment`)
``politeness``         integers      more polite markers (:mod:`.politeness`)
``<emotion>_keywords`` counts >= 0   more non-negated emotion keywords (:mod:`.text`)
``nrc_<category>``     counts >= 0   more NRC-lexicon words of the category (:mod:`.nrc`)
``<emotion>_logprob``  (-inf, 0]     model-side: mean over the generated tokens of the log
                                     probability mass on the emotion's keyword first tokens
=====================  ============  =============================================

``<emotion>`` ranges over every ``prompts/<emotion>_keywords.json``, so a new emotion's
metric needs no Python. Text metrics score a string; ``<emotion>_logprob`` scores a
generation (``on = "generation"``): it reads the per-token values the generation engine
tracked with the run's hooks active (:func:`harness.metrics.next_token.keyword_tracks`), so it
is the 30-token counterpart of the 1-token metric in :mod:`.next_token` and, unlike keyword
counts, is not zero for the many generations that contain no keyword.
Unknown names fail with "Did you mean ...? Available: ...".
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.core.errors import UnknownNameError, UserError, did_you_mean
from harness.core.extensions import broken_entry_points, check_registration, load_entry_points, origin, same_definition
from harness.metrics.next_token import track_key
from harness.metrics.nrc import CATEGORIES, NRC_INSTALL, nrc_available, nrc_count
from harness.metrics.politeness import politeness
from harness.metrics.sentiment import sentiment
from harness.metrics.text import PhraseMatcher
from harness.run.prompts import keyword_emotions, load_keywords, prompts_dir


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[Any], float]  # text -> score, or (model-side) Generation -> score
    lower: float
    upper: float
    higher_means: str  # what a higher score means, for reports
    description: str
    on: str = "text"  # "text": fn(str); "generation": fn(Generation), a model-side metric
    needs: str | None = None  # the install line of an optional package it needs, when that is missing

    def __call__(self, item: object) -> float:
        if self.on == "generation":
            if not hasattr(item, "tracked"):
                raise UserError(
                    f"metric {self.name!r} is model-side: it scores generations made with "
                    f"tracking (harness.run.generation.generate(track=...)), not text"
                )
            return float(self.fn(item))
        if not isinstance(item, str):
            raise TypeError(f"metric {self.name!r} scores str, got {type(item).__name__}")
        return float(self.fn(item))

    def score(self, generation: Any) -> float:
        """Score one :class:`~harness.run.generation.Generation` (its text, or its tracked values)."""
        return self(generation if self.on == "generation" else generation.text)


def _mean_tracked(name: str, key: str) -> Callable[[Any], float]:
    def fn(generation: Any) -> float:
        values = generation.tracked.get(key)
        if values is None:
            raise UserError(
                f"metric {name!r} needs generations tracked for {key!r}; this run tracked "
                f"{sorted(generation.tracked) or 'nothing'}"
            )
        return sum(values) / len(values) if values else float("nan")

    return fn


def _logprob_metric(emotion: str) -> Metric:

    name = f"{emotion}_logprob"
    return Metric(
        name,
        _mean_tracked(name, track_key(emotion)),
        -math.inf,
        0.0,
        f"more probability on {emotion} keywords",
        f"mean over generated tokens of the log probability mass on the first tokens of the "
        f"{emotion} keywords, from the run's own logits (model-side)",
        on="generation",
    )


def _keyword_metric(emotion: str) -> Metric:

    kw = load_keywords(emotion)
    matcher = PhraseMatcher(kw.keywords)
    return Metric(
        f"{emotion}_keywords",
        matcher.count,
        0,
        math.inf,
        f"more {emotion} keywords",
        f"count of non-negated {emotion} keywords from {kw.path} (sha256 {kw.sha256[:12]})",
    )


def _nrc_metric(category: str) -> Metric:

    return Metric(
        f"nrc_{category}",
        lambda t: nrc_count(t, category),
        0,
        math.inf,
        f"more NRC '{category}' words",
        f"count of words tagged '{category}' in the NRC Emotion Lexicon (research-only licence)",
        needs=None if nrc_available() else NRC_INSTALL,
    )


# metrics registered by users (a conftest.py, a notebook, an installed package's entry point)
_REGISTERED: dict[str, Metric] = {}
ENTRY_POINT_GROUP = "causal_heads.metrics"
SIDES = ("text", "generation")


def register_metric(
    name: str,
    *,
    lower: float = -math.inf,
    upper: float = math.inf,
    higher_means: str = "higher",
    description: str = "",
    on: str = "text",
) -> Callable[[Callable], Callable]:
    """Register ``fn(text: str) -> float`` as the metric ``name`` (a decorator)::

        @register_metric("exclamations", lower=0, higher_means="more exclamation marks")
        def exclamations(text: str) -> float:
            return float(text.count("!"))

    ``lower``/``upper`` bound its values (reports and the floor/ceiling warnings use them). A
    model-side metric takes the :class:`~harness.run.generation.Generation` instead and says
    ``on="generation"``. A name that is taken (built in, or registered before) is an error."""
    if on not in SIDES:
        raise UserError(f"metric {name!r}: on={on!r} must be one of {', '.join(SIDES)}")
    if not name or not name.replace("_", "").isalnum():
        raise UserError(f"metric name {name!r}: use letters, digits and underscores")
    if not lower <= upper:
        raise UserError(f"metric {name!r}: lower {lower!r} is above upper {upper!r}")

    def decorate(fn: Callable) -> Callable:
        check_registration("metric", name, fn)
        taken = _REGISTERED.get(name)
        if taken is not None and same_definition(taken.fn, fn):
            taken = None  # the same definition imported again (a conftest re-imported): replaced
        elif taken is not None or name in _registry(prompts_dir()):
            where = f"registered before by {origin(taken.fn)}" if taken else "a built-in metric"
            raise UserError(f"metric {name!r} is registered twice: {where}; {origin(fn)} must use another name")
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTERED[name] = Metric(name, fn, lower, upper, higher_means, description or (doc[0] if doc else name), on)
        return fn

    return decorate


def registry() -> dict[str, Metric]:
    """All metrics: the built-in ones (keyword metrics come from the current prompts folder's
    keyword files), then those registered by users and installed packages."""
    load_entry_points(ENTRY_POINT_GROUP)
    builtin = _registry(prompts_dir())
    clash = sorted(set(builtin) & set(_REGISTERED))
    if clash:  # a registered name that a keyword file of the current prompt folder now also makes
        raise UserError(
            f"metric {clash[0]!r} is registered twice: a built-in metric and {origin(_REGISTERED[clash[0]].fn)}"
        )
    return {**builtin, **_REGISTERED}


@functools.lru_cache(maxsize=8)
def _registry(folder: str) -> dict[str, Metric]:

    metrics = [
        Metric("sentiment", sentiment, 0.0, 1.0, "more positive", "VADER compound mapped to [0, 1]"),
        Metric(
            "politeness",
            politeness,
            -math.inf,
            math.inf,
            "more polite",
            "polite minus impolite markers (Danescu-Niculescu-Mizil et al. 2013 strategies)",
        ),
        *(_keyword_metric(e) for e in keyword_emotions()),
        *(_nrc_metric(c) for c in CATEGORIES),
        *(_logprob_metric(e) for e in keyword_emotions()),
    ]
    return {m.name: m for m in metrics}


KEYWORD_METRIC_SUFFIXES = ("_keywords", "_logprob")


def keyword_emotion(metric: str) -> str | None:
    """The emotion whose keyword list ``metric`` uses (``<e>_keywords``, ``<e>_logprob``), else None."""

    for suffix in KEYWORD_METRIC_SUFFIXES:
        if metric.endswith(suffix) and metric.removesuffix(suffix) in keyword_emotions():
            return metric.removesuffix(suffix)
    return None


def get_metric(name: str) -> Metric:
    metrics = registry()
    if name not in metrics:
        raise UnknownNameError(did_you_mean("metric", name, metrics) + broken_entry_points(ENTRY_POINT_GROUP))
    if metrics[name].needs:  # an optional package is missing: one line, before any work
        raise UserError(f"metric {name!r} is unavailable here: it needs `{metrics[name].needs}`")
    return metrics[name]


def score(name: str, texts: list[str]) -> list[float]:
    metric = get_metric(name)
    return [metric(t) for t in texts]
