"""The memory budget (--max-memory), the peak measurement, and progress: a budget changes how
many rows run together, never a token; a tight budget runs the arms in smaller batches."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from conftest import load_tiny
from harness import Claim
from harness.core.errors import UserError
from harness.core.memory import peak_rss_mb, reset_peak, rss_mb
from harness.core.progress import Progress
from harness.model.device import parse_memory
from harness.run import shared
from harness.run.generation import GenerationConfig
from harness.run.prompts import load_prompt_set
from harness.run.shared import Arm, budget_rows, generate_arms

PROMPTS = load_prompt_set("neutral").head(12)


@pytest.mark.parametrize(("text", "size"), [("4GB", 4 * 2**30), ("512MB", 512 * 2**20), ("1.5g", int(1.5 * 2**30)),
                                            (" 2 gb ", 2 * 2**30), (2**30, 2**30), (None, None)])  # fmt: skip
def test_memory_sizes_parse(text, size):
    assert parse_memory(text) == size


@pytest.mark.parametrize("text", ["4 parsecs", "GB", "-1GB", "100MB", "1e9"])
def test_a_bad_memory_size_is_one_message(text):
    with pytest.raises(UserError, match="--max-memory"):
        parse_memory(text)


def test_budget_rows_follow_what_the_budget_leaves(monkeypatch):
    handle = load_tiny("tiny-gpt2")
    monkeypatch.setattr(shared, "memory_in_use", lambda device: 2**30)  # 1 GB held already
    rows = [budget_rows(handle, 2**30 + extra, 40, 1, 12, 512) for extra in (0, 2**20, 2**26, 2**28, 2**40)]
    assert rows[0] == 12 and rows[-1] == 512  # at least one run's rows; at most the cap
    assert rows == sorted(rows) and len(set(rows)) > 2
    deeper = budget_rows(handle, 2**30 + 2**26, 40, 0, 12, 512)  # more layers above the shared ones
    assert deeper < rows[2]


def test_a_tight_budget_changes_no_token(monkeypatch):
    handle = load_tiny("tiny-gpt2")
    cfg = GenerationConfig(max_tokens=6)
    top = handle.shape.n_layers - 1
    arms = [Arm([(f"blocks.{top}.attn.hook_z", lambda z, hook, k=k: z * (1 + k))], top) for k in range(5)]
    _, loose, _ = generate_arms(handle, PROMPTS, cfg, arms)
    sizes: list[int] = []
    real = shared._lockstep

    def spy(packs, arms_, rows, limit):
        sizes.append(limit)
        return real(packs, arms_, rows, limit)

    monkeypatch.setattr(shared, "_lockstep", spy)
    monkeypatch.setattr(shared, "memory_in_use", lambda device: 2**30)
    _, tight, _ = generate_arms(handle, PROMPTS, cfg, arms, memory_budget=2**30)  # nothing left: one run per batch
    assert sizes == [len(PROMPTS)]
    for a, b in zip(loose, tight, strict=True):
        assert a == b  # tokens, texts and tracked values


def test_the_peak_is_measured_from_a_reset():
    reset_peak()
    before = peak_rss_mb()
    block = np.ones(300 * 2**20 // 8)  # 300 MB touched
    assert peak_rss_mb() >= before + 250 and rss_mb() > 0
    del block


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_is_plain_lines_off_a_terminal_and_a_bar_on_one():
    lines: list[str] = []
    now = iter(range(0, 1000, 10))
    bar = Progress(400, "runs 1/2 neutral", "tokens", line=lines.append, stream=_Stream(False), clock=lambda: next(now))
    for _ in range(40):
        bar.update(10)
    bar.close()
    assert len(lines) == 3 and not bar.drawn  # at 25%, 50% and 75%; the group's own line ends it
    assert lines[0].startswith("runs 1/2 neutral: 100/400 tokens (25%), ") and "tokens/s, ETA" in lines[0]
    silent = Progress(400, "x", "tokens", stream=_Stream(False))
    silent.update(400)
    assert not silent.drawn
    tty = _Stream(True)
    drawn = Progress(400, "runs", "tokens", stream=tty)
    drawn.update(200)
    assert drawn.drawn
    drawn.close()
    assert "/400" in tty.getvalue() and "tokens/s" in tty.getvalue()  # tqdm's bar, rate and all


def test_degenerate_differences_are_flagged():
    from harness.claims.data_warnings import _degenerate_warning

    up = Claim(id="c", model="tiny-gpt2", heads="1:0", patch_mode="z", source="gratitude", metric="sentiment",
               direction="increase")  # fmt: skip
    same = up.replace(direction="equivalent", margin=0.05)
    mostly_zero = np.array([0.0] * 19 + [0.001])
    (w,) = _degenerate_warning(up, mostly_zero)
    assert w["code"] == "degenerate" and w["message"].startswith("19/20 paired differences are exactly 0")
    assert _degenerate_warning(up, np.array([0.0] * 10 + [0.1] * 10)) == []  # half: not most
    assert _degenerate_warning(up, torch.zeros(0).numpy()) == []
    assert _degenerate_warning(up, np.zeros(20)) == []  # all zero: untestable says it for a direction
    assert _degenerate_warning(same, np.zeros(20))[0]["message"].startswith("20/20 paired differences")
