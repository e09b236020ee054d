"""Prompt templating: how a prompt string becomes model input.

Two formats, chosen per model (``ModelHandle.prompt_format``) or overridden per profile/run,
and recorded in every result:

- ``plain``: the prompt is the start of a text and the model continues it. Tokenized with
  the tokenizer's default special tokens (GPT-2 adds none).
- ``chat``: the prompt is a user message; the model's own chat template (with its default
  system prompt, as shipped) wraps it and opens the assistant turn
  (``add_generation_prompt=True``). The template already contains the special tokens, so
  the result is tokenized with ``add_special_tokens=False``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.core.errors import UnknownNameError, UserError, did_you_mean

FORMATS = ("plain", "chat")


@dataclass(frozen=True)
class FormattedPrompts:
    format: str
    texts: tuple[str, ...]
    add_special_tokens: bool

    def encode(self, tokenizer, texts=None):
        """Left-padded ``input_ids``/``attention_mask`` tensors for ``texts`` (default: all)."""
        return tokenizer(
            list(self.texts if texts is None else texts),
            return_tensors="pt",
            padding=True,
            add_special_tokens=self.add_special_tokens,
        )

    def check_fits(self, handle: Any, new_tokens: int = 0, prompts: Sequence[str] | None = None) -> None:
        """Raise a :class:`UserError` naming the first prompt whose tokens plus ``new_tokens``
        exceed ``handle``'s context (:attr:`~harness.model.loading.ModelHandle.context_length`, the
        positions it was trained with; ``None``: unknown, no check).

        Without it a GPT-2 prompt past 1024 positions fails deep in the embedding with
        ``IndexError: index out of range in self``, and a rotary model silently runs beyond
        its trained context. ``prompts`` (the untemplated strings) only make the message readable.
        """
        context = handle.context_length
        if not context:
            return
        lengths = [
            len(ids)
            for ids in handle.tokenizer(list(self.texts), add_special_tokens=self.add_special_tokens)["input_ids"]
        ]
        for i, n in enumerate(lengths):
            if n + new_tokens > context:
                text = (prompts or self.texts)[i]
                shown = text if len(text) <= 40 else text[:40] + "..."
                more = f" + {new_tokens} new tokens" if new_tokens else ""
                raise UserError(
                    f"prompt {i} ({shown!r}) is {n} tokens in {self.format} format{more}: "
                    f"more than {handle.name}'s context of {context} positions; shorten the prompt"
                    + (" or lower --max-tokens" if new_tokens else "")
                )


def format_prompts(tokenizer: Any, prompts: Sequence[str], prompt_format: str) -> FormattedPrompts:
    """Apply ``prompt_format`` to every prompt (see module docstring)."""
    if prompt_format not in FORMATS:
        raise UnknownNameError(did_you_mean("prompt format", prompt_format, FORMATS))
    prompts = tuple(prompts)
    if prompt_format == "plain":
        return FormattedPrompts("plain", prompts, True)
    if not getattr(tokenizer, "chat_template", None):
        raise UserError(
            "prompt format 'chat' needs a tokenizer with a chat template; this model has "
            "none, use --prompt-format plain"
        )
    texts = tuple(
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts
    )
    return FormattedPrompts("chat", texts, False)
