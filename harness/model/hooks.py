"""TransformerLens hook points on a Hugging Face model, with the KV cache left to HF.

Why not TransformerBridge: with transformer-lens 4.3.0 the bridge's cached ``generate``
departs from Hugging Face ``generate`` after the first token (seen on SmolLM2 and on a
GPT-2-architecture model), uncached generation costs ~25x more compute at 30 tokens, and
booting the bridge patches transformers' attention for the whole process. So the harness
owns the decode loop (:mod:`harness.run.generation`) on the untouched HF model and its
``DynamicCache``, and exposes TransformerLens' hook vocabulary with TransformerLens' own
:class:`~transformer_lens.hook_points.HookPoint` and
:class:`~transformer_lens.HookedRootModule.HookedRootModule` (the class TL keeps as "the
supported way to add TransformerLens-style hooks to arbitrary nn.Modules"). Users write
``with handle.hooked.hooks(fwd_hooks=[("blocks.1.attn.hook_z", fn)]): ...`` exactly as
with TransformerLens' own models, and ``fn(tensor, hook)`` may return a replacement tensor.

Hook points, per layer ``L`` (axis order as in TransformerLens; names from :func:`harness.model.names.act_name`):

- ``blocks.L.attn.hook_v``: ``[batch, pos, kv_head, d_head]``, the value vectors before
  they enter the KV cache, so an edit here is cached and seen by later decode steps.
  On GQA models there are ``n_kv_heads`` of them, shared by ``n_heads / n_kv_heads``
  query heads.
- ``blocks.L.attn.hook_pattern``: ``[batch, head, query_pos, key_pos]``, attention
  probabilities per query head after masking and softmax.
- ``blocks.L.attn.hook_z``: ``[batch, pos, head, d_head]``, per-head output
  (pattern · V) before the output projection.
- ``blocks.L.attn.hook_attn_out``: ``[batch, pos, d_model]``, the attention output
  after the output projection (and its bias), before the residual add.
- ``blocks.L.hook_resid_pre`` / ``blocks.L.hook_resid_post``: ``[batch, pos, d_model]``,
  the residual stream entering and leaving decoder block ``l`` (where steering vectors go).

What a hook sees during generation: at prefill ``pos`` spans the left-padded prompt; at each
decode step ``pos`` is 1 (the newest token only) for ``hook_v``/``hook_z``/``hook_attn_out``,
and ``hook_pattern`` is ``[batch, head, 1, prompt_len + step]`` over all cached keys (on a
sliding-window model such as Mistral, HF's cache keeps only the window: ``min(prompt_len +
step, window)`` keys, the most recent ones). Earlier positions are not recomputed: they reach
decode steps only through the cached keys/values.

Attention itself runs through a registered attention function (``harness_hooked``) that
calls PyTorch SDPA exactly as transformers' ``sdpa`` implementation does, so the hooked
model is bit-for-bit the plain model, unless a hook is attached to ``hook_pattern``: then
that layer computes the pattern explicitly (eager softmax) so the hook can read or replace it.
Soft-capped attention (Gemma 2) always takes the explicit path, as transformers' eager does.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import nn
from transformer_lens.hook_points import HookPoint
from transformer_lens.HookedRootModule import HookedRootModule

from harness.model.shape import ModelShape

ATTN_IMPLEMENTATION = "harness_hooked"
_ATTN_HOOKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # HF attention module -> AttentionHooks


class AttentionHooks(nn.Module):
    """The hook points of one attention layer (see module docstring for shapes)."""

    hook_v: HookPoint
    hook_pattern: HookPoint
    hook_z: HookPoint
    hook_attn_out: HookPoint

    def __init__(self) -> None:
        super().__init__()
        self.hook_v = HookPoint()
        self.hook_pattern = HookPoint()
        self.hook_z = HookPoint()
        self.hook_attn_out = HookPoint()


class BlockHooks(nn.Module):
    hook_resid_pre: HookPoint
    attn: AttentionHooks
    hook_resid_post: HookPoint

    def __init__(self) -> None:
        super().__init__()
        self.hook_resid_pre = HookPoint()
        self.attn = AttentionHooks()
        self.hook_resid_post = HookPoint()


# ---------------------------------------------------------------- attention function


def _explicit_attention(
    hooks: AttentionHooks | None,
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    softcap: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention with the pattern materialised and passed through ``hook_pattern``.

    ``softcap`` (Gemma 2's attention-logit soft-capping): scores become ``softcap ·
    tanh(scores / softcap)`` before masking, as in transformers' eager Gemma 2 attention."""
    from transformers.integrations.sdpa_attention import repeat_kv

    n_rep = query.shape[1] // key.shape[1]
    key, value = repeat_kv(key, n_rep), repeat_kv(value, n_rep)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    q_len, k_len = query.shape[-2], key.shape[-2]
    if attention_mask is None:
        allowed = torch.ones(q_len, k_len, dtype=torch.bool, device=query.device).tril(k_len - q_len)
    elif attention_mask.dtype == torch.bool:
        allowed = attention_mask
    else:  # additive float mask
        scores = scores + attention_mask
        allowed = None
    if allowed is not None:
        # finfo.min, not -inf: a fully masked (padding) query row gets a uniform pattern, not NaN
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    pattern = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    if hooks is not None:
        pattern = hooks.hook_pattern(pattern)
    out = torch.matmul(pattern, value)
    return out.transpose(1, 2).contiguous(), pattern


def hooked_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, softcap=None, **kwargs):
    """transformers attention interface: SDPA unless this layer's ``hook_pattern`` is hooked or
    its logits are soft-capped (Gemma 2: SDPA cannot cap, and would ignore the argument)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    hooks = _ATTN_HOOKS.get(module)
    if softcap is not None or (hooks is not None and hooks.hook_pattern.has_hooks(dir="fwd")):
        return _explicit_attention(hooks, module, query, key, value, attention_mask, scaling, softcap)
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)


def _register_attention() -> None:
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if ATTN_IMPLEMENTATION not in ALL_ATTENTION_FUNCTIONS:
        ALL_ATTENTION_FUNCTIONS.register(ATTN_IMPLEMENTATION, hooked_attention)
        ALL_MASK_ATTENTION_FUNCTIONS.register(ATTN_IMPLEMENTATION, sdpa_mask)


# ---------------------------------------------------------------- per-architecture adapters


def _llama_layer(model: Any, layer: int) -> tuple[Any, Any, Any, int | str | None]:
    attn = model.model.layers[layer].self_attn
    return attn, attn.v_proj, attn.o_proj, None


def _gpt2_layer(model: Any, layer: int) -> tuple[Any, Any, Any, int | str | None]:
    attn = model.transformer.h[layer].attn
    # c_attn emits [q | k | v] along the last axis; values start after 2·d_model columns
    return attn, attn.c_attn, attn.c_proj, 2 * model.config.hidden_size


def _phi3_layer(model: Any, layer: int) -> tuple[Any, Any, Any, int | str | None]:
    attn = model.model.layers[layer].self_attn
    # qkv_proj emits [q (n_heads·d_head) | k (n_kv·d_head) | v (n_kv·d_head)]
    cfg = model.config
    d_head = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return attn, attn.qkv_proj, attn.o_proj, (cfg.num_attention_heads + cfg.num_key_value_heads) * d_head


def _gpt_neox_layer(model: Any, layer: int) -> tuple[Any, Any, Any, int | str | None]:
    attn = model.gpt_neox.layers[layer].attention
    # query_key_value emits, per head, [q_h | k_h | v_h] (interleaved by head, not by kind)
    return attn, attn.query_key_value, attn.dense, NEOX_INTERLEAVED


NEOX_INTERLEAVED = "per-head interleaved qkv"
ADAPTERS: dict[str, Callable] = {
    "llama": _llama_layer,
    "gpt2": _gpt2_layer,
    "gpt_neox": _gpt_neox_layer,
    "phi3": _phi3_layer,
}
DECODER_LAYERS: dict[str, Callable] = {
    "llama": lambda m: m.model.layers,
    "gpt2": lambda m: m.transformer.h,
    "gpt_neox": lambda m: m.gpt_neox.layers,
    "phi3": lambda m: m.model.layers,
}


class HookedModel(HookedRootModule):
    """A Hugging Face causal LM with TransformerLens hook points (see module docstring).

    The HF model is held, not owned as a submodule, so ``hook_dict`` holds only the hook
    points. ``forward`` is the HF model's forward.
    """

    hf_model: Any  # a transformers PreTrainedModel, held outside the module tree
    blocks: nn.ModuleList

    def __init__(self, model: Any, shape: ModelShape) -> None:
        super().__init__()
        self.shape = shape
        self.blocks = nn.ModuleList(BlockHooks() for _ in range(shape.n_layers))
        object.__setattr__(self, "hf_model", model)
        self._handles: list = []
        self.setup()
        self.install()

    def forward(self, *args, **kwargs):
        return self.hf_model(*args, **kwargs)

    def hook_blocks(self) -> list[BlockHooks]:
        """Each layer's hook points (``blocks.L`` is entry ``L``)."""
        return [cast(BlockHooks, block) for block in self.blocks]

    def decoder_layers(self) -> nn.ModuleList:
        """The HF model's decoder blocks, in order (``blocks.L`` is entry ``L``)."""
        return DECODER_LAYERS[self.shape.architecture](self.hf_model)

    # -- installation ------------------------------------------------------------------
    def install(self) -> None:
        """Attach the hook points to the HF modules (idempotent)."""
        if self._handles:
            return
        _register_attention()
        self._plain_attention = self.hf_model.config._attn_implementation
        adapter = ADAPTERS[self.shape.architecture]
        for layer, block in enumerate(self.hook_blocks()):
            attn, v_module, out_proj, v_offset = adapter(self.hf_model, layer)
            _ATTN_HOOKS[attn] = block.attn
            self._handles += [
                v_module.register_forward_hook(self._v_hook(block.attn.hook_v, v_offset)),
                out_proj.register_forward_pre_hook(self._z_hook(block.attn.hook_z)),
                out_proj.register_forward_hook(lambda _m, _i, out, hp=block.attn.hook_attn_out: hp(out)),
            ]
        for decoder_layer, block in zip(self.decoder_layers(), self.hook_blocks(), strict=True):
            self._handles += [
                decoder_layer.register_forward_pre_hook(self._resid_pre_hook(block.hook_resid_pre), with_kwargs=True),
                decoder_layer.register_forward_hook(self._resid_post_hook(block.hook_resid_post)),
            ]
        self.hf_model.set_attn_implementation(ATTN_IMPLEMENTATION)

    def uninstall(self) -> None:
        """Detach everything: the HF model is exactly as loaded (used by benchmarks)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        for layer in range(self.shape.n_layers):
            _ATTN_HOOKS.pop(ADAPTERS[self.shape.architecture](self.hf_model, layer)[0], None)
        self.hf_model.set_attn_implementation(self._plain_attention)

    def _v_hook(self, hp: HookPoint, offset: int | str | None) -> Callable:
        kv, d_head = self.shape.n_kv_heads, self.shape.d_head

        def hook(_module, _inputs, out):
            if not hp.has_hooks(dir="fwd"):
                return None
            if offset is None:
                return hp(out.view(*out.shape[:-1], kv, d_head)).reshape(out.shape)
            if offset == NEOX_INTERLEAVED:
                qkv = out.view(*out.shape[:-1], kv, 3, d_head)
                v = hp(qkv[..., 2, :].contiguous())
                return torch.cat([qkv[..., :2, :], v.unsqueeze(-2)], dim=-2).reshape(out.shape)
            qk, v = out[..., :offset], out[..., offset:]  # offset: where the values start
            v = hp(v.reshape(*v.shape[:-1], kv, d_head)).reshape(v.shape)
            return torch.cat([qk, v], dim=-1)

        return hook

    @staticmethod
    def _resid_pre_hook(hp: HookPoint) -> Callable:
        def hook(_module, args, kwargs):
            if not hp.has_hooks(dir="fwd"):
                return None
            if args:  # the hidden states are the block's first argument, positional or by name
                return (hp(args[0]), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": hp(kwargs["hidden_states"])}

        return hook

    @staticmethod
    def _resid_post_hook(hp: HookPoint) -> Callable:
        def hook(_module, _inputs, out):
            if not hp.has_hooks(dir="fwd"):
                return None
            if isinstance(out, tuple):  # some blocks return (hidden_states, *extras)
                return (hp(out[0]), *out[1:])
            return hp(out)

        return hook

    def _z_hook(self, hp: HookPoint) -> Callable:
        heads, d_head = self.shape.n_heads, self.shape.d_head

        def hook(_module, args):
            if not hp.has_hooks(dir="fwd"):
                return None
            z = args[0]
            return (hp(z.view(*z.shape[:-1], heads, d_head)).reshape(z.shape), *args[1:])

        return hook
