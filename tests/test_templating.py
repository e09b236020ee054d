"""Prompt templating: plain continuation vs the model's chat template."""

from __future__ import annotations

import pytest

from harness.core.errors import UnknownNameError, UserError
from harness.run.generation import GenerationConfig, generate
from harness.run.templating import format_prompts


def test_plain_passes_prompts_through(tiny_gpt2):
    fmt = format_prompts(tiny_gpt2.tokenizer, ["Hello there", "Bye"], "plain")
    assert fmt.texts == ("Hello there", "Bye") and fmt.add_special_tokens and fmt.format == "plain"


def test_chat_without_a_template_is_a_clear_error(tiny_gpt2):
    with pytest.raises(UserError, match="needs a tokenizer with a chat template"):
        format_prompts(tiny_gpt2.tokenizer, ["Hi"], "chat")


def test_unknown_format_suggests_the_right_one(tiny_gpt2):
    with pytest.raises(UnknownNameError, match="Did you mean 'chat'\\?.*Available: chat, plain"):
        format_prompts(tiny_gpt2.tokenizer, ["Hi"], "chta")


@pytest.mark.model
def test_default_model_uses_its_chat_template(smollm2):
    fmt = format_prompts(smollm2.tokenizer, ["Thank you!"], smollm2.prompt_format)
    assert fmt.format == "chat" and not fmt.add_special_tokens
    assert fmt.texts[0].endswith("<|im_start|>user\nThank you!<|im_end|>\n<|im_start|>assistant\n")
    assert fmt.texts[0].startswith("<|im_start|>system\n")
    ids = smollm2.tokenizer(fmt.texts[0], add_special_tokens=False).input_ids
    assert ids.count(smollm2.tokenizer.convert_tokens_to_ids("<|im_start|>")) == 3  # no doubled specials


@pytest.mark.model
def test_format_is_recorded_and_can_be_overridden(smollm2):
    chat = generate(smollm2, ["The weather today is"], GenerationConfig(max_tokens=3))
    plain = generate(smollm2, ["The weather today is"], GenerationConfig(max_tokens=3), prompt_format="plain")
    assert (chat.prompt_format, plain.prompt_format) == ("chat", "plain")
    assert len(chat.generations[0].prompt_token_ids) > len(plain.generations[0].prompt_token_ids) + 10
