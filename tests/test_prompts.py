"""Prompt sets and keyword lists: the shipped data is valid, bad files are named."""

from __future__ import annotations

import json

import pytest

from harness.core.errors import UnknownNameError, UserError
from harness.metrics import get_metric, registry
from harness.run.prompts import (
    DataFileError,
    emotions,
    load_emotion_prompts,
    load_keywords,
    load_prompt_set,
    token_length_stats,
)

SETS = ["neutral", "gratitude", "anger", "apology"]


@pytest.mark.parametrize("name", SETS)
def test_shipped_sets_load_with_at_least_70_prompts(name):
    ps = load_prompt_set(name)
    assert len(ps.prompts) >= 70 and ps.kind == ("neutral" if name == "neutral" else "emotion")
    assert len(ps.sha256) == 64 and ps.head(70) == ps.prompts[:70]


def test_shipped_emotions():
    assert emotions() == ["anger", "apology", "gratitude"]


@pytest.mark.parametrize("emotion", ["gratitude", "anger", "apology"])
def test_emotion_prompts_carry_their_emotion_and_only_it(emotion):
    """Every source prompt shows its emotion's keywords; no other set does."""
    own = get_metric(f"{emotion}_keywords")
    for name in SETS:
        counts = [own(p) for p in load_prompt_set(name).prompts]
        if name == emotion:
            assert min(counts) >= 1, [p for p, c in zip(load_prompt_set(name).prompts, counts) if c == 0]
        else:
            assert sum(counts) == 0, name


def test_neutral_prompts_are_neutral():
    sentiment = get_metric("sentiment")
    scores = [sentiment(p) for p in load_prompt_set("neutral").prompts]
    assert sum(abs(s - 0.5) < 0.25 for s in scores) >= 0.9 * len(scores)


def test_token_lengths_are_comparable_on_the_tiny_tokenizer(tiny_gpt2):
    stats = {n: token_length_stats(tiny_gpt2.tokenizer, load_prompt_set(n)) for n in SETS}
    assert all(s["n"] >= 70 and 4 <= s["min"] <= s["median"] <= s["max"] <= 25 for s in stats.values())
    assert max(s["median"] for s in stats.values()) - min(s["median"] for s in stats.values()) <= 6


# ---------------------------------------------------------------- malformed files

def _write(folder, name, content):
    path = folder / name
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def _doc(prompts, **over):
    return {"format": "causal-heads/prompts", "version": 1, "name": "joy", "kind": "emotion",
            "description": "test set", "prompts": prompts, **over}


def _v2(**over):
    """A version-2 set: one written prompt, one template per split."""
    fields = {"version": 2, "prompts_split": "discovery", "fillers": {"x": ["day", "night"]},
              "templates": [{"id": "a", "split": "discovery", "text": "Joy of the {x}."},
                            {"id": "b", "split": "confirmation", "text": "The {x} was joyful."}]}
    return _doc(["Written joy."], **{**fields, **over})


@pytest.mark.parametrize("content, message", [
    ("{not json", r"joy_prompts.json: not valid JSON: Expecting property name.* at line 1 column 2"),
    ("[1, 2]", r"joy_prompts.json: the top level must be a JSON object, got list"),
    (_doc([]), r"joy_prompts.json: field 'prompts' is empty"),
    (_doc("one prompt"), r"joy_prompts.json: field 'prompts' must be a list of strings, got str"),
    (_doc(["Fine.", 3]), r"joy_prompts.json: prompts\[1\] must be a string, got int 3"),
    (_doc(["Fine.", "   "]), r"joy_prompts.json: prompts\[1\] is empty or whitespace"),
    (_doc(["I am happy.", "Other.", "i am  HAPPY."]), r"prompts\[2\] 'i am  HAPPY.' duplicates prompts\[0\]"),
    (_doc(["Fine."], version=3), r"field 'version' must be 1 or 2 .*got 3"),
    (_doc(["Fine."], version=True), r"field 'version' must be 1 or 2 .*got True"),
    (_v2(prompts_split="test"), r"field 'prompts_split' must be one of discovery, confirmation, got 'test'"),
    (_v2(fillers={"x": []}), r"field 'x' is empty"),
    (_v2(templates=[{"id": "a", "split": "discovery", "text": "Joy {x}."}]), r"no template is in the confirmation split"),
    (_v2(templates=[{"id": "a", "split": "discovery", "text": "Joy."}, {"id": "b", "split": "confirmation", "text": "Oh {x}."}]),
     r"templates\[0\]: text 'Joy.' must hold exactly one \{slot\} naming a list in 'fillers' \(x\)"),
    (_v2(templates=[{"id": "a", "split": "discovery", "text": "Joy {y}."}, {"id": "b", "split": "confirmation", "text": "Oh {x}."}]),
     r"templates\[0\]: text 'Joy \{y\}.' must hold exactly one"),
    (_v2(templates=[{"id": "a", "split": "discovery", "text": "Joy {x}."}, {"id": "a", "split": "confirmation", "text": "Oh {x}."}]),
     r"templates\[1\]: id 'a' must be a non-empty string used once"),
    (_v2(templates=[{"id": "a", "split": "test", "text": "Joy {x}."}]), r"templates\[0\]: split must be one of discovery, confirmation, got 'test'"),
    (_v2(templates=[{"id": "a", "split": "discovery", "text": "Joy of the {x}."}, {"id": "b", "split": "confirmation", "text": "Joy of the {x}."}]),
     r"prompts\[2\] 'Joy of the day.' duplicates prompts\[1\]"),
    (_v2(fillers={"x": ["day"], "y": ["night"]}), r"fillers 'y' is used by no template"),
    (_doc(["Fine."], format="csv"), r"field 'format' must be 'causal-heads/prompts', got 'csv'"),
    (_doc(["Fine."], kind="happy"), r"field 'kind' must be one of neutral, emotion, got 'happy'"),
    (_doc(["Fine."], name="sad"), r"field 'name' must be 'joy' \(the file name\), got 'sad'"),
    (_doc(["Fine."], description=""), r"field 'description' must be a non-empty string"),
    (_doc(["Fine.", "a\ud800b"]), r"prompts\[1\] holds a lone surrogate '\\ud800' at 1, which is not text"),
])
def test_malformed_prompt_files_are_named(tmp_path, monkeypatch, content, message):
    monkeypatch.setenv("CAUSAL_HEADS_PROMPTS", str(tmp_path))
    _write(tmp_path, "joy_prompts.json", content)
    with pytest.raises(DataFileError, match=message):
        load_prompt_set("joy")


def test_non_utf8_file_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("CAUSAL_HEADS_PROMPTS", str(tmp_path))
    (tmp_path / "joy_prompts.json").write_bytes(b'{"prompts": ["caf\xe9"]}')
    with pytest.raises(DataFileError, match="joy_prompts.json: not UTF-8 text"):
        load_prompt_set("joy")


def test_missing_prompt_set_suggests():
    with pytest.raises(UnknownNameError, match="no prompt file .*neutrl_prompts.json; unknown prompt set "
                                               "'neutrl'. Did you mean 'neutral'"):
        load_prompt_set("neutrl")


def test_unknown_emotion_suggests():
    with pytest.raises(UnknownNameError, match="unknown emotion 'gratitud'. Did you mean 'gratitude'\\? "
                                               "Available: anger, apology, gratitude"):
        load_emotion_prompts("gratitud")


def test_bad_keyword_entries_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("CAUSAL_HEADS_PROMPTS", str(tmp_path))
    _write(tmp_path, "joy_keywords.json", {"format": "causal-heads/keywords", "version": 1, "emotion": "joy",
                                           "description": "d", "keywords": ["happy", "glad|sad"]})
    with pytest.raises(DataFileError, match=r"keywords\[1\] 'glad\|sad' may hold only letters"):
        load_keywords("joy")


def test_a_new_emotion_needs_only_data(tmp_path, monkeypatch):
    monkeypatch.setenv("CAUSAL_HEADS_PROMPTS", str(tmp_path))
    _write(tmp_path, "joy_prompts.json", _doc(["I am so happy today!", "What a joyful morning."]))
    _write(tmp_path, "joy_keywords.json", {"format": "causal-heads/keywords", "version": 1, "emotion": "joy",
                                           "description": "d", "keywords": ["happy", "joyful", "overjoyed"]})
    assert emotions() == ["joy"]
    assert load_emotion_prompts("joy").prompts[1] == "What a joyful morning."
    assert "joy_keywords" in registry() and "gratitude_keywords" not in registry()
    assert get_metric("joy_keywords")("Happy, happy, not happy, OVERJOYED!") == 3


def test_an_emotion_with_one_of_its_two_files_names_the_missing_one(tmp_path, monkeypatch):
    monkeypatch.setenv("CAUSAL_HEADS_PROMPTS", str(tmp_path))
    _write(tmp_path, "joy_prompts.json", _doc(["I am so happy today!", "What a joyful morning."]))
    with pytest.raises(UnknownNameError, match="emotion 'joy' has no keyword list: an emotion needs both "
                                               "joy_prompts.json and joy_keywords.json; .*joy_keywords.json does "
                                               "not exist"):
        load_emotion_prompts("joy")
    (tmp_path / "joy_prompts.json").unlink()
    _write(tmp_path, "joy_keywords.json", {"format": "causal-heads/keywords", "version": 1, "emotion": "joy",
                                           "description": "d", "keywords": ["happy"]})
    with pytest.raises(UnknownNameError, match="emotion 'joy' has no prompt file: .*joy_prompts.json does not"):
        load_emotion_prompts("joy")
    monkeypatch.delenv("CAUSAL_HEADS_PROMPTS")
    with pytest.raises(UnknownNameError, match="unknown emotion 'neutral'"):  # a target set is not half an emotion
        load_emotion_prompts("neutral")


def test_prompt_files_with_random_unicode_load_or_are_refused_in_one_message(tmp_path_factory):
    """Reliability (hypothesis): any text in a prompt file, surrogates and control characters
    included, either loads as prompts that encode as UTF-8 or is a DataFileError, never another
    exception."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    folder = tmp_path_factory.mktemp("unicode")

    any_char = st.characters() | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=())

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.lists(st.text(alphabet=any_char, max_size=20), min_size=1, max_size=5))
    def check(prompts):
        (folder / "joy_prompts.json").write_text(json.dumps(_doc(prompts)), encoding="utf-8")
        try:
            loaded = load_prompt_set("joy")
        except DataFileError:
            return
        assert [p.encode("utf-8") for p in loaded.prompts]

    import os

    old = os.environ.get("CAUSAL_HEADS_PROMPTS")
    os.environ["CAUSAL_HEADS_PROMPTS"] = str(folder)
    try:
        check()
    finally:
        if old is None:
            del os.environ["CAUSAL_HEADS_PROMPTS"]
        else:
            os.environ["CAUSAL_HEADS_PROMPTS"] = old


# ---------------------------------------------------------------- templates and splits

def test_a_version_2_set_expands_templates_and_splits_by_whole_templates(tmp_path, monkeypatch):
    monkeypatch.setenv("CAUSAL_HEADS_PROMPTS", str(tmp_path))
    doc = _v2(templates=[{"id": "a", "split": "discovery", "text": "Joy of the {x}."},
                         {"id": "b", "split": "confirmation", "text": "The {x} was joyful."},
                         {"id": "c", "split": "confirmation", "text": "A joyful {x}."}])
    _write(tmp_path, "joy_prompts.json", doc)
    ps = load_prompt_set("joy")
    # written first, then the templates round-robin (every template's first filler, then the second)
    assert ps.prompts == ("Written joy.", "Joy of the day.", "The day was joyful.", "A joyful day.",
                          "Joy of the night.", "The night was joyful.", "A joyful night.")
    assert ps.split("discovery") == ("Written joy.", "Joy of the day.", "Joy of the night.")
    assert ps.split("confirmation") == ("The day was joyful.", "A joyful day.", "The night was joyful.",
                                        "A joyful night.")
    assert ps.split(None) == ps.split("all") == ps.prompts
    assert ps.take(2, "confirmation") == ("The day was joyful.", "A joyful day.")
    with pytest.raises(UserError, match=r"--n-prompts 5 is invalid for prompt set 'joy': its confirmation split has 4"):
        ps.take(5, "confirmation")
    with pytest.raises(UserError, match=r"split 'test' is not one of discovery, confirmation, all"):
        ps.split("test")


def test_a_version_1_set_has_no_split(tmp_path, monkeypatch):
    monkeypatch.setenv("CAUSAL_HEADS_PROMPTS", str(tmp_path))
    _write(tmp_path, "joy_prompts.json", _doc(["I am happy."]))
    ps = load_prompt_set("joy")
    assert ps.take(1) == ("I am happy.",)
    with pytest.raises(UserError, match=r"prompt set 'joy' \(.*joy_prompts.json\) has no discovery/confirmation split"):
        ps.take(1, "confirmation")


@pytest.mark.parametrize("name", SETS)
def test_shipped_sets_have_300_prompts_split_by_whole_templates(name):
    ps = load_prompt_set(name)
    doc = json.loads(open(ps.path, encoding="utf-8").read())
    assert len(ps.prompts) >= 300 and ps.version == 2
    discovery, confirmation = set(ps.split("discovery")), set(ps.split("confirmation"))
    assert not discovery & confirmation and discovery | confirmation == set(ps.prompts)
    assert len(confirmation) >= 100
    # the written prompts (what the first sweeps ranked heads on) are discovery prompts, in their order
    assert ps.split("discovery")[: len(doc["prompts"])] == tuple(doc["prompts"]) == ps.head(len(doc["prompts"]))
    # whole templates: each template's words (without its slot) show on one side only
    (slot, fillers), = doc["fillers"].items()
    for t in doc["templates"]:
        mine = {t["text"].replace("{" + slot + "}", f) for f in fillers}
        side = confirmation if t["split"] == "confirmation" else discovery
        assert len(mine) == len(fillers) >= 20 and mine <= side, t["id"]
    # the first 12 of a split cover its 6 templates (so a claim's first n prompts are not one template's)
    assert len({t["id"] for t in doc["templates"] if t["split"] == "confirmation"}) == 6
