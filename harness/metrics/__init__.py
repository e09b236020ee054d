"""Registry of named per-text metrics, each declaring its range and direction.

=====================  ============  =============================================
name                   range         meaning (higher = ...)
=====================  ============  =============================================
``sentiment``          [0, 1]        more positive (VADER, :mod:`.sentiment`)
``politeness``         integers      more polite markers (:mod:`.politeness`)
``<emotion>_keywords`` counts >= 0   more non-negated emotion keywords (:mod:`.text`)
``nrc_<category>``     counts >= 0   more NRC-lexicon words of the category (:mod:`.nrc`)
=====================  ============  =============================================

``<emotion>`` ranges over every ``prompts/<emotion>_keywords.json``, so a new emotion's
metric needs no Python. The model-side next-token metric lives in :mod:`.next_token`.
Unknown names fail with "Did you mean ...? Available: ...".
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

from harness.errors import UnknownNameError, did_you_mean


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[str], float]
    lower: float
    upper: float
    higher_means: str  # what a higher score means, for reports
    description: str
    higher_is_better: bool = True  # direction a "raises X" claim tests by default

    def __call__(self, text: str) -> float:
        if not isinstance(text, str):
            raise TypeError(f"metric {self.name!r} scores str, got {type(text).__name__}")
        return float(self.fn(text))


def _keyword_metric(emotion: str) -> Metric:
    from harness.metrics.text import PhraseMatcher
    from harness.prompts import load_keywords

    kw = load_keywords(emotion)
    matcher = PhraseMatcher(kw.keywords)
    return Metric(f"{emotion}_keywords", matcher.count, 0, math.inf, f"more {emotion} keywords",
                  f"count of non-negated {emotion} keywords from {kw.path} (sha256 {kw.sha256[:12]})")


def _nrc_metric(category: str) -> Metric:
    from harness.metrics.nrc import nrc_count

    return Metric(f"nrc_{category}", lambda t: nrc_count(t, category), 0, math.inf,
                  f"more NRC '{category}' words",
                  f"count of words tagged '{category}' in the NRC Emotion Lexicon (research-only licence)")


def registry() -> dict[str, Metric]:
    """All metrics; keyword metrics come from the current prompts folder's keyword files."""
    from harness.prompts import prompts_dir

    return _registry(prompts_dir())


@functools.lru_cache(maxsize=8)
def _registry(folder: str) -> dict[str, Metric]:
    from harness.metrics.nrc import CATEGORIES
    from harness.metrics.politeness import politeness
    from harness.metrics.sentiment import sentiment
    from harness.prompts import keyword_emotions

    metrics = [
        Metric("sentiment", sentiment, 0.0, 1.0, "more positive", "VADER compound mapped to [0, 1]"),
        Metric("politeness", politeness, -math.inf, math.inf, "more polite",
               "polite minus impolite markers (Danescu-Niculescu-Mizil et al. 2013 strategies)"),
        *(_keyword_metric(e) for e in keyword_emotions()),
        *(_nrc_metric(c) for c in CATEGORIES),
    ]
    return {m.name: m for m in metrics}


def get_metric(name: str) -> Metric:
    metrics = registry()
    if name not in metrics:
        raise UnknownNameError(did_you_mean("metric", name, metrics))
    return metrics[name]


def score(name: str, texts: list[str]) -> list[float]:
    metric = get_metric(name)
    return [metric(t) for t in texts]
