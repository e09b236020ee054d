"""Text normalisation and phrase matching shared by the lexical metrics.

Normalisation: Unicode NFKC, curly apostrophes and quotes to ASCII, case-folded. Words are
runs of letters/digits with inner apostrophes or hyphens (``don't``, ``well-known``).

Phrase matching (:class:`PhraseMatcher`): a keyword or phrase matches whole words only
(``thank`` does not match inside ``thanksgiving``; ``mad`` not inside ``made``), spaces in a
phrase match any whitespace, and matches do not overlap: at each position the longest phrase
wins, so "thank you" counts once, not as "thank" plus "thank you".

Negation: a match is *negated* when one of :data:`NEGATORS` (or a word ending in ``n't``) is
among the three words before it in the same clause (no ``. , ; : ! ? ( )`` or newline in
between): "not grateful", "I'm not sorry", "no thanks", "never angry". Idioms that contain
their own negation ("can't thank you enough") are listed as phrases in the keyword files, so
the longest match takes them whole. Known limits: "not only grateful but..." counts as
negated, and negation further than three words back is missed.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

NEGATORS = frozenset(
    {
        "not",
        "no",
        "never",
        "without",
        "hardly",
        "barely",
        "nor",
        "neither",
        "nobody",
        "nothing",
        "none",
        "cannot",
        "cant",
        "dont",
        "wont",
        "isnt",
    }
)
NEGATION_WINDOW = 3
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u201c": '"', "\u201d": '"'})
WORD_RE = re.compile(r"[^\W_]+(?:['\-][^\W_]+)*")
_CLAUSE_BREAK = re.compile(r"[.,;:!?()\n]")


def normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).translate(_QUOTES).casefold()


def words(text: str) -> list[str]:
    return WORD_RE.findall(normalize(text))


def is_negator(word: str) -> bool:
    return word in NEGATORS or word.endswith("n't")


@dataclass(frozen=True)
class Match:
    phrase: str
    start: int
    negated: bool


class PhraseMatcher:
    """Counts whole-word, non-overlapping, longest-first matches of a phrase list."""

    def __init__(self, phrases: Iterable[str]) -> None:
        forms = sorted({normalize(p) for p in phrases}, key=lambda p: (-len(p), p))
        alternation = "|".join(r"\s+".join(map(re.escape, p.split())) for p in forms)
        self.pattern = re.compile(rf"(?<![^\W_])(?:{alternation})(?![^\W_]|'[^\W_])")

    def matches(self, text: str) -> list[Match]:
        """Every match, negated when one of the ``NEGATION_WINDOW`` words before it in its clause
        is a negator. Linear in the text (up to a log): the clause breaks and word starts are
        found once, and each match reads only its few words before it."""
        norm = normalize(text)
        breaks = [b.end() for b in _CLAUSE_BREAK.finditer(norm)]
        starts = [w.start() for w in WORD_RE.finditer(norm)]
        out = []
        for m in self.pattern.finditer(norm):
            k = bisect.bisect_right(breaks, m.start())
            clause_start = breaks[k - 1] if k else 0  # after the last clause break before the match
            w = bisect.bisect_left(starts, m.start())  # words of the text that start before the match
            # from a word start a few words back: words never span a clause break, so the words
            # found from there are the clause's own last words
            lookback = starts[max(0, w - NEGATION_WINDOW - 1)] if w else m.start()
            before = WORD_RE.findall(norm, max(clause_start, lookback), m.start())[-NEGATION_WINDOW:]
            out.append(Match(m.group(0), m.start(), any(is_negator(x) for x in before)))
        return out

    def count(self, text: str, *, negation: bool = True) -> int:
        """Matches in ``text``; with ``negation`` (default) negated matches are not counted."""
        return sum(1 for m in self.matches(text) if not (negation and m.negated))
