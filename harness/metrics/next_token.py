"""Model-side metric for 1-token analysis: log-probability mass on an emotion's keywords.

``keyword_logprob(handle, prompts, emotion)`` runs one forward pass per batch of prompts
(templated with the model's prompt format, like generation) and returns, per prompt,
``log sum_{t in K} p(t | prompt)`` at the next position, where ``K`` is the set of *first
tokens* of the emotion's keywords (:func:`keyword_token_ids`). Hooks can be active, so the
same function measures a patched model. It is continuous (no sampling), which makes it the
metric of choice for screening and all-heads sweeps.

Keyword token set: each single-word keyword (phrases are skipped: their first words, "many",
"could", "makes", are generic) is tokenized in four spellings (with and without a leading
space, lower case and Capitalised); the first token of each spelling is kept if the whole
spelling is one token, or if that first token carries at least five letters of the word (a
prefix like " appreci" is informative; " than" from "thankyou" is another word). The ids are
deduplicated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from harness.model.loading import ModelHandle
from harness.run.generation import BatchInfo, HookList, forward
from harness.run.prompts import keyword_emotions, load_keywords

MIN_PREFIX_LETTERS = 5


def keyword_token_ids(tokenizer: Any, emotion: str) -> list[int]:
    ids: set[int] = set()
    for kw in load_keywords(emotion).keywords:
        if " " in kw:
            continue
        for spelling in (kw, " " + kw, kw.capitalize(), " " + kw.capitalize()):
            toks = tokenizer(spelling, add_special_tokens=False).input_ids
            if not toks:
                continue
            letters = sum(c.isalpha() for c in tokenizer.decode(toks[:1]))
            if len(toks) == 1 or letters >= MIN_PREFIX_LETTERS:
                ids.add(toks[0])
    if not ids:
        raise ValueError(f"no keyword of emotion {emotion!r} yields a usable first token")
    return sorted(ids)


def track_key(emotion: str) -> str:
    return f"keywords:{emotion}"


def keyword_tracks(tokenizer: Any) -> dict[str, list[int]]:
    """``generate(track=...)`` argument recording every keyword emotion's first-token mass."""

    return {track_key(e): keyword_token_ids(tokenizer, e) for e in keyword_emotions()}


def keyword_logprob(
    handle: ModelHandle,
    prompts: Iterable[str],
    emotion: str,
    *,
    hooks: HookList | Callable[[BatchInfo], HookList] | None = None,
    prompt_format: str | None = None,
    batch_size: int = 64,
) -> torch.Tensor:
    """Per prompt: log-probability mass on the emotion's keyword first-tokens at the next position."""
    ids = torch.tensor(keyword_token_ids(handle.tokenizer, emotion))
    prompts = list(prompts)
    out = []
    for start in range(0, len(prompts), batch_size):
        logits, _ = forward(
            handle,
            prompts[start : start + batch_size],
            hooks,
            prompt_format=prompt_format,
            last_only=True,
            first_index=start,
        )
        out.append(torch.logsumexp(logits[:, -1, :].float().log_softmax(-1)[:, ids], dim=-1))
    return torch.cat(out)
