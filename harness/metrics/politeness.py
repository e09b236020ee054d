"""A politeness score from lexical markers, after Danescu-Niculescu-Mizil et al. (2013).

``politeness(text) = (# polite markers) - (# impolite markers)``, an integer (higher = more
polite; 0 for empty or marker-free text). The marker families follow the strategies that
paper found predictive, with our own word lists:

polite (+1 each)
  gratitude ("thank you", "appreciate"), apology ("sorry", "excuse me"), please (anywhere,
  "kindly"), hedges ("perhaps", "I think", "might"), indirect requests / counterfactual
  modals ("could you", "would you mind", "I was wondering"), greetings ("hello", "good
  morning", "dear"), deference ("great question", "my pleasure", "happy to help").
impolite (-1 each)
  direct imperatives (a sentence that starts with a bare command verb, e.g. "Give me the
  file."; a sentence with "please" before the verb is not counted here), impoliteness
  markers ("shut up", "stupid", "whatever"), factuality / bluntness ("obviously", "in
  fact", "frankly"), and second-person starts (a sentence starting "you ..."; the paper
  found it impolite).

Every family is tested (``tests/test_metrics.py``). Matching uses
:class:`harness.metrics.text.PhraseMatcher` without negation: "not sorry" still shows an
apology marker's form, and the score is about surface strategies, not sincerity.
"""

from __future__ import annotations

import functools
import re

from harness.metrics.text import PhraseMatcher, normalize

POLITE: dict[str, tuple[str, ...]] = {
    "gratitude": (
        "thank",
        "thanks",
        "thank you",
        "thankful",
        "grateful",
        "appreciate",
        "appreciated",
        "appreciation",
        "much obliged",
        "many thanks",
    ),
    "apology": (
        "sorry",
        "apologize",
        "apologise",
        "apologies",
        "apology",
        "excuse me",
        "pardon me",
        "forgive me",
        "my apologies",
    ),
    "please": ("please", "kindly", "pls"),
    "hedge": (
        "perhaps",
        "maybe",
        "possibly",
        "probably",
        "might",
        "i think",
        "i believe",
        "i guess",
        "i suppose",
        "it seems",
        "somewhat",
        "sort of",
        "kind of",
        "a little",
        "a bit",
    ),
    "indirect_request": (
        "could you",
        "would you",
        "would you mind",
        "would it be possible",
        "do you think you could",
        "i was wondering",
        "if you don't mind",
        "if possible",
        "if you could",
        "when you get a chance",
        "by the way",
    ),
    "greeting": (
        "hi",
        "hello",
        "hey",
        "good morning",
        "good afternoon",
        "good evening",
        "dear",
        "greetings",
        "nice to meet you",
    ),
    "deference": (
        "great question",
        "good question",
        "good point",
        "well done",
        "nice work",
        "great work",
        "you're welcome",
        "my pleasure",
        "happy to help",
        "glad to help",
    ),
}
IMPOLITE: dict[str, tuple[str, ...]] = {
    "impoliteness": (
        "shut up",
        "stupid",
        "idiot",
        "idiots",
        "idiotic",
        "dumb",
        "moron",
        "nonsense",
        "ridiculous",
        "whatever",
        "damn",
        "useless",
        "pathetic",
        "get lost",
        "how dare you",
        "none of your business",
        "go away",
        "leave me alone",
    ),
    "bluntness": ("obviously", "in fact", "frankly", "clearly you", "as i said", "i told you"),
}
COMMAND_VERBS = (
    "give",
    "tell",
    "send",
    "do",
    "stop",
    "get",
    "go",
    "make",
    "show",
    "fix",
    "answer",
    "move",
    "bring",
    "leave",
    "hurry",
    "listen",
    "look",
    "explain",
    "hand",
    "pay",
    "come",
    "call",
    "finish",
    "write",
    "read",
    "take",
    "put",
    "let",
    "quit",
    "start",
    "wait",
)
_SENTENCE = re.compile(r"[^.!?\n]+")
_FIRST_WORDS = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


@functools.lru_cache(maxsize=1)
def _matchers() -> dict[str, PhraseMatcher]:
    return {family: PhraseMatcher(words) for family, words in {**POLITE, **IMPOLITE}.items()}


def _sentence_starts(text: str) -> list[list[str]]:
    return [_FIRST_WORDS.findall(s)[:2] for s in _SENTENCE.findall(normalize(text)) if _FIRST_WORDS.search(s)]


def marker_counts(text: str) -> dict[str, int]:
    """Count per marker family (polite and impolite), for reports and tests."""
    counts = {f: m.count(text, negation=False) for f, m in _matchers().items()}
    starts = _sentence_starts(text)
    counts["direct_imperative"] = sum(1 for s in starts if s[0] in COMMAND_VERBS)
    counts["second_person_start"] = sum(1 for s in starts if s[0] in {"you", "your"})
    return counts


IMPOLITE_FAMILIES = (*IMPOLITE, "direct_imperative", "second_person_start")


def politeness(text: str) -> float:
    counts = marker_counts(text)
    polite = sum(counts[f] for f in POLITE)
    impolite = sum(counts[f] for f in IMPOLITE_FAMILIES)
    return float(polite - impolite)
