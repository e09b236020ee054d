"""Model shape: layers, heads, KV heads and the architecture family, read off a loaded HF model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.core.errors import ModelUnavailableError


@dataclass(frozen=True)
class ModelShape:
    """What the patching code needs to know about a model's attention."""

    architecture: str  # registry key of the hook adapter: "llama", "gpt2", "gpt_neox" or "phi3"
    n_layers: int
    n_heads: int  # query heads per layer
    n_kv_heads: int  # key/value heads per layer (== n_heads without GQA)
    d_head: int
    d_model: int
    vocab_size: int

    @property
    def group_size(self) -> int:
        """Query heads per KV head (1 without GQA)."""
        return self.n_heads // self.n_kv_heads

    def describe(self) -> str:
        kv = f", {self.n_kv_heads} KV heads" if self.n_kv_heads != self.n_heads else ""
        return f"{self.n_layers} layers × {self.n_heads} heads{kv}"


# ---------------------------------------------------------------- shape and hashing

# HF class -> hook adapter (harness.model.hooks.ADAPTERS). "llama" is the layout model.layers[l].self_attn
# with separate v_proj/o_proj and transformers' attention interface; each class listed here has a
# tiny model in conftest.TINY_MODELS, checked against untouched HF generate and the patching invariants.
_ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "llama",
    "Qwen2ForCausalLM": "llama",
    "Qwen3ForCausalLM": "llama",
    "GPT2LMHeadModel": "gpt2",
    "GPTNeoXForCausalLM": "gpt_neox",
    "Phi3ForCausalLM": "phi3",
    "GemmaForCausalLM": "llama",
    "Gemma2ForCausalLM": "llama",
    "Gemma3ForCausalLM": "llama",
}


def model_shape(model: Any) -> ModelShape:
    """Read the attention shape from a Hugging Face model's config."""
    cls = type(model).__name__
    if cls not in _ARCHITECTURES:
        raise ModelUnavailableError(
            f"model class {cls} is not supported yet; supported: {', '.join(sorted(_ARCHITECTURES))}"
        )
    cfg = model.config
    n_heads = cfg.num_attention_heads
    d_model = cfg.hidden_size
    return ModelShape(
        architecture=_ARCHITECTURES[cls],
        n_layers=cfg.num_hidden_layers,
        n_heads=n_heads,
        n_kv_heads=getattr(cfg, "num_key_value_heads", None) or n_heads,
        d_head=getattr(cfg, "head_dim", None) or d_model // n_heads,
        d_model=d_model,
        vocab_size=cfg.vocab_size,
    )
