"""Per-text metrics on hand-labelled texts: exact counts, orderings, ranges, bad names."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.core.errors import UnknownNameError
from harness.metrics import get_metric, registry, score
from harness.metrics.politeness import marker_counts

GRATITUDE = [
    ("Thank you so much!", 1),
    ("Thanks!!! I'm really grateful.", 2),
    ("I am THANKFUL and I appreciated it", 2),
    ("thank you, thank you, thank you", 3),
    ("I can't thank you enough.", 1),  # idiom with its own negation counts once
    ("I'm not grateful at all.", 0),  # negation
    ("No thanks, I don't need it.", 0),  # negated "thanks"
    ("Not grateful. But thanks anyway.", 1),  # negation stops at the clause break
    ("We celebrated Thanksgiving and ate grated cheese.", 0),  # whole words only
    ("I\u2019m so grateful \U0001F64F", 1),  # curly apostrophe and emoji
    ("ＴＨＡＮＫＳ a lot", 1),  # full-width letters normalise (NFKC); longest match "thanks a lot"
    ("", 0),
    ("Many thanks and much appreciation.", 2),
    ("I never appreciated his jokes.", 0),
    ("I do not feel very grateful.", 0),  # a negator three words back still negates
    ("Not in any way grateful.", 1),  # four words back it does not (NEGATION_WINDOW = 3)
    ("Not now, thanks.", 1),  # a comma ends the negation's clause
    ("I don't appreciate it.", 0),  # a word ending in n't negates
    ("An ungrateful guest.", 0),  # whole words: not inside "ungrateful"
]
ANGER = [
    ("I'm furious!", 1),
    ("I am so angry and fed up.", 2),
    ("I'm not angry.", 0),
    ("He was never mad at anyone", 0),
    ("She made a madrigal.", 0),  # "mad" is not inside "made" or "madrigal"
    ("Rage, RAGE against the dying of the light", 2),
    ("I hate Mondays; they're infuriating", 2),
    ("Outrageous prices make me livid...", 2),
    ("I'm sick and tired of this", 1),
    ("", 0),
    ("An angry, annoyed, irritated customer", 3),
]
APOLOGY = [
    ("I'm so sorry.", 1),
    ("Sorry, sorry, SORRY!", 3),
    ("I apologise for the delay; please forgive me.", 2),  # "please forgive" is the longest match
    ("I am not sorry.", 0),
    ("My apologies, that was my fault.", 2),
    ("Excuse me, where is the station?", 1),
    ("I regret nothing", 1),
    ("The sorrowful song", 0),
    ("I\u2019m sorry", 1),
    ("", 0),
    ("Without an apology he left.", 0),  # "without" negates
]


def test_a_word_with_an_inner_apostrophe_is_one_word():
    from harness.metrics.text import PhraseMatcher

    assert PhraseMatcher(["don"]).count("I don't know") == 0 and PhraseMatcher(["don"]).count("Don knows") == 1
    # the longest phrase wins at a position (the screen's keyword tokens are its span)
    assert [m.phrase for m in PhraseMatcher(["thank", "thank you"]).matches("Thank you, thank")] == ["thank you", "thank"]


@pytest.mark.parametrize("text, expected", GRATITUDE)
def test_gratitude_keywords(text, expected):
    assert get_metric("gratitude_keywords")(text) == expected


@pytest.mark.parametrize("text, expected", ANGER)
def test_anger_keywords(text, expected):
    assert get_metric("anger_keywords")(text) == expected


@pytest.mark.parametrize("text, expected", APOLOGY)
def test_apology_keywords(text, expected):
    assert get_metric("apology_keywords")(text) == expected


SENTIMENT_ORDER = [  # from most negative to most positive, each clearly apart
    "This is the worst, most horrible day of my life. I hate everything!!!",
    "I am sad and disappointed.",
    "The meeting is at 3 pm in room 12.",
    "It was a nice day.",
    "This is wonderful, I love it so much! Best day ever :)",
]


def test_sentiment_orders_hand_ranked_texts():
    scores = score("sentiment", SENTIMENT_ORDER)
    assert scores == sorted(scores) and len(set(scores)) == len(scores)


@pytest.mark.parametrize("text, low, high", [
    ("", 0.5, 0.5),  # empty text is neutral
    ("The meeting is at 3 pm.", 0.5, 0.5),
    ("I love this!", 0.75, 1.0),
    ("I do not love this.", 0.0, 0.4),  # VADER's own negation
    ("GREAT!!!", 0.8, 1.0),  # emphasis
    ("terrible \U0001F620", 0.0, 0.3),
    ("Thank you so much!", 0.6, 1.0),
    ("I'm furious that the bus was late.", 0.0, 0.35),
    ("Café au lait, s'il vous plaît.", 0.45, 0.6),
    ("Not bad at all.", 0.5, 1.0),
])
def test_sentiment_values(text, low, high):
    value = get_metric("sentiment")(text)
    assert 0.0 <= value <= 1.0 and low <= value <= high


POLITENESS = [
    ("", 0),
    ("Give me the report.", -1),  # direct imperative
    ("Please give me the report.", 1),  # please; not an imperative start
    ("Could you please send the report? Thank you!", 3),  # indirect request, please, gratitude
    ("Hello! Sorry to bother you, but I was wondering if you could help.", 4),  # greeting, apology, indirect x2
    ("You are wrong. Obviously.", -2),  # second-person start, bluntness
    ("Shut up, that's stupid.", -2),
    ("Perhaps we might try again tomorrow.", 2),  # hedges
    ("Great question, happy to help.", 2),  # deference
    ("Whatever. Leave me alone!", -3),  # impoliteness x2 ("whatever", "leave me alone") + imperative "leave"
    ("Dear Ms Lee, thank you for your note.", 2),
    ("THANK YOU\u2026 really!", 1),
    ("Your answer is wrong.", -1),  # second-person start ("your" too)
    ("I am not sorry.", 1),  # markers are surface strategies: counted without negation
]


@pytest.mark.parametrize("text, expected", POLITENESS)
def test_politeness(text, expected):
    assert get_metric("politeness")(text) == expected


@pytest.mark.parametrize("family, text", [
    ("gratitude", "Many thanks."), ("apology", "My apologies."), ("please", "Kindly reply."),
    ("hedge", "I think so."), ("indirect_request", "Would you mind?"), ("greeting", "Good morning."),
    ("deference", "Well done."), ("impoliteness", "How dare you."), ("bluntness", "In fact, no."),
    ("direct_imperative", "Stop it."), ("second_person_start", "You did this."),
])
def test_each_politeness_family_fires_on_its_marker(family, text):
    counts = marker_counts(text)
    assert counts[family] == 1
    assert sum(counts.values()) == 1  # and nothing else fires


NRC = [
    ("nrc_anger", "", 0),
    ("nrc_anger", "I am angry and furious", 2),
    ("nrc_anger", "ANGRY!!!", 1),
    ("nrc_joy", "happy happy joy", 3),
    ("nrc_joy", "The table is brown.", 0),
    ("nrc_joy", "gratitude", 1),
    ("nrc_fear", "I'm afraid of the terrible storm", 2),
    ("nrc_trust", "My honest friend", 2),
    ("nrc_sadness", "Grief, GRIEF and sadness.", 3),
    ("nrc_sadness", "sad", 0),  # absent from nrclex's copy of the lexicon: documented
    ("nrc_positive", "thanks", 0),  # inflected form missing from the lexicon: documented
    ("nrc_negative", "abandoned", 1),
]


@pytest.mark.parametrize("name, text, expected", NRC)
def test_nrc_counts(name, text, expected):
    assert get_metric(name)(text) == expected


def test_every_metric_declares_range_and_direction_and_stays_in_range():
    texts = [t for t, _ in GRATITUDE + ANGER + APOLOGY] + SENTIMENT_ORDER
    for metric in registry().values():
        assert metric.lower < metric.upper and metric.higher_means.startswith("more")
        if metric.on == "generation":
            continue  # model-side: range tested on real generations (tests/test_next_token.py)
        for t in texts:
            v = metric(t)
            assert metric.lower <= v <= metric.upper and not math.isnan(v), (metric.name, t)


def test_registry_has_a_keyword_metric_per_emotion():
    names = set(registry())
    assert {"gratitude_keywords", "anger_keywords", "apology_keywords", "sentiment", "politeness",
            "nrc_anger", "nrc_joy", "gratitude_logprob", "anger_logprob", "apology_logprob"} <= names


def test_unknown_metric_suggests():
    with pytest.raises(UnknownNameError, match="Did you mean 'gratitude_keywords'(, '[a-z_]+')*\\?.*Available: anger_keywords"):
        get_metric("gratitude_keyword")


def test_metric_refuses_non_text():
    with pytest.raises(TypeError, match="scores str, got NoneType"):
        get_metric("sentiment")(None)


def test_cli_scores_and_rejects_unknown_metric(cli, main_in_process):
    ok = cli("harness.metrics", "score", "--metric", "gratitude_keywords", "Thank you so much!")
    assert ok.returncode == 0 and ok.stdout.strip() == "1"
    bad = main_in_process("harness.cli.metrics", "score", "--metric", "gratitud", "x")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("error: unknown metric 'gratitud'. Did you mean 'gratitude_logprob', "
                                 "'gratitude_keywords'?")
    model_side = main_in_process("harness.cli.metrics", "score", "--metric", "anger_logprob", "x")
    assert model_side.returncode == 2 and "Traceback" not in model_side.stderr
    assert model_side.stderr.startswith("error: metric 'anger_logprob' is model-side: it scores generations")


def test_keyword_emotion_names_the_keyword_list_a_metric_uses():
    from harness.metrics import keyword_emotion

    assert [keyword_emotion(m) for m in ("anger_keywords", "apology_logprob", "sentiment", "nrc_anger",
                                         "joy_keywords")] == ["anger", "apology", None, None, None]


def _quadratic_matches(pm, text):
    """The keyword matcher as it was (each match re-split the whole text before it): the reference."""
    from harness.metrics.text import _CLAUSE_BREAK, NEGATION_WINDOW, WORD_RE, Match, is_negator, normalize

    norm, out = normalize(text), []
    for m in pm.pattern.finditer(norm):
        before = WORD_RE.findall(_CLAUSE_BREAK.split(norm[: m.start()])[-1])[-NEGATION_WINDOW:]
        out.append(Match(m.group(0), m.start(), any(is_negator(w) for w in before)))
    return out


_PIECES = ["thank", "you", "thanks", "not", "never", "don't", "grateful", "well-thank", ",", ".", "-", "'", "_",
           "so", "appreciate", "no", "isn't", "\n", "x", "Thank\u2019s", "ǅ"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_PIECES), st.sampled_from(["", " ", "  "])), max_size=40))
def test_linear_keyword_matching_finds_what_the_quadratic_one_did(pieces):
    """Reliability class 9: the matcher re-read the text before every match ('thank you ' * 9000
    took 26 s); it now finds the clause and the words before a match by bisection, same results."""
    from harness.metrics.text import PhraseMatcher

    pm = PhraseMatcher(["thank you", "thanks", "grateful", "appreciate"])
    text = "".join(a + b for a, b in pieces)
    assert pm.matches(text) == _quadratic_matches(pm, text)


def test_keyword_matching_grows_linearly_with_the_number_of_hits():
    """A ratio in one process, not a timed test: 8 times the hits must cost about 8 times as much
    (the old matcher: about 64 times); the bound 25 leaves room for noise."""
    import time

    from harness.metrics.text import PhraseMatcher

    pm = PhraseMatcher(["thank you"])

    def seconds(n):
        t0 = time.perf_counter()
        assert pm.count("thank you " * n) == n
        return time.perf_counter() - t0

    seconds(500)  # warm up
    small, large = min(seconds(1000) for _ in range(3)), min(seconds(8000) for _ in range(3))
    assert large / small < 25, (small, large)


def test_an_optional_metric_whose_package_is_missing_is_listed_unavailable_and_refused(monkeypatch, main_in_process):
    """Issue 40: nrc_* metrics were listed without nrclex and then crashed with a traceback."""
    import harness.metrics as metrics
    from harness.core.errors import UserError

    monkeypatch.setattr(metrics, "nrc_available", lambda: False)
    metrics._registry.cache_clear()
    try:
        listed = main_in_process("harness", "metrics", "list")
        assert "nrc_joy" in listed.stdout and "(unavailable: pip install --no-deps nrclex==4.1.0)" in listed.stdout
        with pytest.raises(UserError, match=r"metric 'nrc_joy' is unavailable here: it needs `pip install --no-deps nrclex"):
            metrics.get_metric("nrc_joy")
        scored = main_in_process("harness", "metrics", "score", "--metric", "nrc_joy", "happy")
        assert scored.returncode == 2 and "Traceback" not in scored.stderr and "unavailable" in scored.stderr
    finally:
        monkeypatch.undo()
        metrics._registry.cache_clear()
    assert metrics.get_metric("nrc_joy").needs is None  # installed here (make setup)
