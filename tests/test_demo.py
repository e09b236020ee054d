"""The main job (``python -m harness demo``): end to end on a tiny model, and its bad input."""

from __future__ import annotations

import pytest

from harness.cli.demo import parse_heads
from harness.core.errors import UserError


def test_demo_runs_and_the_patch_fires(cli):
    proc = cli("harness", "demo", "--model", "tiny-gpt2", "--ablate", "1:10,0:*", "--max-tokens", "6")
    assert proc.returncode == 0, proc.stderr
    assert "zero-ablated 13 head(s) 1:10,0:*: 4/4 continuations changed" in proc.stdout
    assert proc.stdout.count("baseline: ") == 4


@pytest.mark.parametrize("spec, message", [
    ("1-10", "malformed head '1-10' in head spec '1-10'"),
    ("1:", "malformed head '1:'"),
    ("a:b", "malformed head 'a:b'"),
    ("", "head spec '' is empty"),
    ("1:1,1:1", "head 1:1 is listed more than once"),
    ("5:*", "layer 5 in head spec '5:\\*' is out of range for tiny"),
    ("2:0", "head 2:0 is out of range for tiny (2 layers × 12 heads)"),
    ("1:12", "head 1:12 is out of range for tiny (2 layers × 12 heads)"),
])
def test_bad_head_specs_are_named(spec, message):
    with pytest.raises(UserError, match=message.replace("(", "\\(").replace(")", "\\)")):
        parse_heads(spec, 2, 12, "tiny")


def test_parse_heads_expands_wildcards():
    assert parse_heads("1:2,0:*", 2, 3, "tiny") == [(0, 0), (0, 1), (0, 2), (1, 2)]


def test_demo_bad_spec_exits_2_without_traceback(main_in_process):
    proc = main_in_process("harness.cli.demo", "--model", "tiny-gpt2", "--ablate", "1:99", "--max-tokens", "2")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: head 1:99 is out of range for tiny-gpt2 (2 layers × 12 heads)"
