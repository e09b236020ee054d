"""Sentiment in [0, 1] from VADER (Hutto & Gilbert 2014), which works offline.

``sentiment(text) = (compound + 1) / 2`` where ``compound`` in [-1, 1] is VADER's normalised
valence sum; 0 is most negative, 0.5 neutral (also the value for empty text), 1 most
positive. VADER handles negation, intensifiers, punctuation emphasis and emoticons itself.
"""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def _analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentiment(text: str) -> float:
    return (_analyzer().polarity_scores(text)["compound"] + 1.0) / 2.0
