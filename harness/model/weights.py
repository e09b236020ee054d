"""A head's circuits as functions of the loaded model's own modules: OV, output, final norm, unembedding.

Circuit analyses (:mod:`harness.analysis.circuit`) need a head's value map (its KV group's
slice of the value projection), its output map (its slice of the output projection) and the
final norm as a linear map. Rather than slicing weight matrices per architecture (GPT-2's
``Conv1D`` is transposed, GPT-NeoX interleaves q/k/v per head, Phi-3 fuses them), every map
here *applies the model's own module* and reads the head's part the way the hook points do
(:mod:`harness.model.hooks`), so one code path serves every supported architecture and a test
against the real forward pass checks them all.

- :func:`head_output`: ``z_h @ W_O[h]``, the head's write into the residual stream, *without*
  the output projection's bias (the bias belongs to no head).
- :func:`value_vectors`: the value vectors ``[*, n_kv, d_head]`` a layer computes from
  (already normalised) residual vectors, bias included, as ``hook_v`` sees them.
- :class:`FrozenNorm`: the final norm with its scale frozen at a given residual stream, the
  standard linearisation for direct logit attribution: ``x -> g ⊙ c(x) / s`` with ``c`` the
  centring of a LayerNorm (identity for RMSNorm), ``g`` the gain (Gemma's ``1 + w`` included)
  and ``s`` the norm's scale *of the unpatched stream*. Applied to the whole stream (plus the
  norm's bias) it gives exactly the norm's output; applied to one component it gives that
  component's share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from harness.model.hooks import ADAPTERS, NEOX_INTERLEAVED, HookedModel

_FINAL_NORM = {
    "llama": lambda m: m.model.norm,
    "phi3": lambda m: m.model.norm,
    "gpt2": lambda m: m.transformer.ln_f,
    "gpt_neox": lambda m: m.gpt_neox.final_layer_norm,
}
_INPUT_NORM = {
    "llama": lambda m, l: m.model.layers[l].input_layernorm,
    "phi3": lambda m, l: m.model.layers[l].input_layernorm,
    "gpt2": lambda m, l: m.transformer.h[l].ln_1,
    "gpt_neox": lambda m, l: m.gpt_neox.layers[l].input_layernorm,
}


def final_norm(hooked: HookedModel) -> nn.Module:
    return _FINAL_NORM[hooked.shape.architecture](hooked.hf_model)


def input_norm(hooked: HookedModel, layer: int) -> nn.Module:
    """The norm a layer's attention reads the residual stream through."""
    return _INPUT_NORM[hooked.shape.architecture](hooked.hf_model, layer)


def _eps(norm: nn.Module) -> float:
    for name in ("variance_epsilon", "eps", "epsilon"):
        value = getattr(norm, name, None)
        if isinstance(value, float | int):
            return float(value)
    raise ValueError(f"{type(norm).__name__}: no epsilon attribute (variance_epsilon, eps)")


@dataclass(frozen=True)
class FrozenNorm:
    """The final norm as a linear map with the scale frozen (see the module docstring)."""

    centred: bool  # LayerNorm subtracts the mean; RMSNorm does not
    gain: torch.Tensor  # [d_model]
    bias: torch.Tensor  # [d_model] (zeros for RMSNorm)
    eps: float

    @classmethod
    def of(cls, norm: nn.Module) -> FrozenNorm:
        eps = _eps(norm)
        with torch.no_grad():
            if isinstance(norm, nn.LayerNorm):
                d = norm.normalized_shape[-1]
                gain = norm.weight.detach().float() if norm.weight is not None else torch.ones(d)
                shift = norm.bias.detach().float() if norm.bias is not None else torch.zeros(d)
                return cls(True, gain, shift, eps)
            weight = next((p for p in norm.parameters()), None)
            if weight is None:
                raise ValueError(f"{type(norm).__name__}: a final norm without a gain")
            d = weight.shape[-1]
            ones = torch.ones(1, d, dtype=weight.dtype, device=weight.device)
            # rms(1) = 1, so norm(1) = gain / sqrt(1 + eps): the gain whatever its parametrisation
            gain = norm(ones)[0].float() * (1.0 + eps) ** 0.5
            return cls(False, gain.detach(), torch.zeros(d, device=gain.device), eps)

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """The norm's scale at each position of the stream ``x``: ``[..., 1]``."""
        x = x.float()
        if self.centred:
            return (x.var(-1, keepdim=True, unbiased=False) + self.eps).sqrt()
        return (x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt()

    def linear(self, component: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """A component of the stream through the frozen norm (no bias)."""
        c = component.float()
        if self.centred:
            c = c - c.mean(-1, keepdim=True)
        return c / scale * self.gain.to(c.device)


def unembed(hooked: HookedModel, normed: torch.Tensor) -> torch.Tensor:
    """Logits of already-normalised vectors (no bias: a component's share of the logits)."""
    model: Any = hooked.hf_model
    weight = model.get_output_embeddings().weight
    return normed.float() @ weight.detach().float().T


def head_output(hooked: HookedModel, layer: int, head: int, z: torch.Tensor) -> torch.Tensor:
    """``z`` ``[..., d_head]`` of query head ``head`` through its slice of the output projection:
    ``[..., d_model]``, no bias (the model's own module applied, the other heads' slots zero)."""
    shape = hooked.shape
    _attn, _v, out_proj, _off = ADAPTERS[shape.architecture](hooked.hf_model, layer)
    lead = z.shape[:-1]
    full = torch.zeros(*lead, shape.n_heads, shape.d_head, dtype=z.dtype, device=z.device)
    full[..., head, :] = z
    zero = torch.zeros(1, shape.n_heads * shape.d_head, dtype=z.dtype, device=z.device)
    return out_proj(full.reshape(*lead, -1)) - out_proj(zero)[0]


def output_norm(hooked: HookedModel, layer: int) -> nn.Module | None:
    """The norm a layer applies to its attention output before adding it to the residual stream
    (Gemma 2 and 3's ``post_attention_layernorm``), or None where the output is added as it is.
    (In Llama-style layers without ``pre_feedforward_layernorm`` the module of that name is the
    MLP's input norm.)"""
    if hooked.shape.architecture != "llama":
        return None
    model: Any = hooked.hf_model
    block = model.model.layers[layer]
    return block.post_attention_layernorm if hasattr(block, "pre_feedforward_layernorm") else None


def residual_write(
    hooked: HookedModel, layer: int, head: int, z: torch.Tensor, attn_out: torch.Tensor | None = None
) -> torch.Tensor:
    """What query head ``head`` adds to the residual stream: :func:`head_output`, and on models
    that normalise the attention output before adding it (Gemma 2/3), that output through the
    norm with its scale frozen at the whole layer's ``attn_out`` (required there)."""
    out = head_output(hooked, layer, head, z)
    post = output_norm(hooked, layer)
    if post is None:
        return out
    if attn_out is None:
        raise ValueError(f"layer {layer} normalises its attention output: pass the layer's attn_out")
    frozen = FrozenNorm.of(post)
    return frozen.linear(out, frozen.scale(attn_out)).to(out.dtype)


def value_vectors(hooked: HookedModel, layer: int, normed: torch.Tensor) -> torch.Tensor:
    """Value vectors ``[..., n_kv, d_head]`` the layer computes from normalised residual vectors
    ``[..., d_model]`` (as ``blocks.L.attn.hook_v`` sees them)."""
    shape = hooked.shape
    _attn, v_module, _out, offset = ADAPTERS[shape.architecture](hooked.hf_model, layer)
    out = v_module(normed)
    kv, d_head = shape.n_kv_heads, shape.d_head
    if offset is None:
        return out.view(*out.shape[:-1], kv, d_head)
    if offset == NEOX_INTERLEAVED:
        return out.view(*out.shape[:-1], kv, 3, d_head)[..., 2, :]
    return out[..., offset:].reshape(*out.shape[:-1], kv, d_head)
