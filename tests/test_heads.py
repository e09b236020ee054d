"""Head specs: parsing, resolution against a model's shape, boundaries and duplicates."""

from __future__ import annotations

import pytest

from harness.core.errors import UserError
from harness.patch.heads import parse_head_spec


def test_resolve_expands_sorts_and_keeps_the_last_valid_head():
    spec = parse_head_spec("1:10, 0:*")
    assert spec.resolve(2, 12, "m") == tuple([(0, h) for h in range(12)] + [(1, 10)])  # sorted by layer, head
    assert parse_head_spec("1:11").resolve(2, 12, "m") == ((1, 11),)  # the last head and layer exist
    assert spec.slug == "1_10-0_all"


@pytest.mark.parametrize("text, message", [
    ("2:0", "head 2:0 is out of range for m (2 layers × 12 heads)"),  # layers are 0 and 1
    ("1:12", "head 1:12 is out of range for m (2 layers × 12 heads)"),  # heads are 0..11
    ("2:*", "layer 2 in head spec '2:*' is out of range for m (2 layers × 12 heads)"),
    ("1:3,1:3", "head 1:3 is listed more than once in head spec '1:3,1:3'"),
    ("1:*,1:4", "head 1:4 is listed more than once"),
])
def test_out_of_range_and_repeated_heads_are_named(text, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        parse_head_spec(text).resolve(2, 12, "m")


def test_any_head_spec_text_parses_or_is_one_user_error():
    """Reliability (hypothesis): random text as a head spec is a HeadSpec or a UserError."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from harness.core.errors import UserError
    from harness.patch.heads import parse_head_spec

    @settings(max_examples=300, deadline=None, database=None)
    @given(st.one_of(st.text(max_size=12), st.text(alphabet="0123456789:*, -", max_size=12)))
    def check(text):
        try:
            spec = parse_head_spec(text)
        except UserError:
            return
        assert spec.items and len(set(spec.items)) == len(spec.items)

    check()
