"""Source activations: capture the heads' z, pattern and v on source prompts, and align positions."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import cast

import torch

from harness.model.loading import ModelHandle
from harness.model.names import ActKind, act_name
from harness.run.generation import position_ids
from harness.run.templating import format_prompts


@dataclass
class SourceActivations:
    """Unpadded source activations per layer and prompt, plus per-head means."""

    prompts: tuple[str, ...]
    z: dict[int, list[torch.Tensor]] = field(default_factory=dict)  # [Ls, head, d_head]
    pattern: dict[int, list[torch.Tensor]] = field(default_factory=dict)  # [head, Ls, Ls]
    v: dict[int, list[torch.Tensor]] = field(default_factory=dict)  # [Ls, kv_head, d_head]

    def subset(self, layers: Sequence[int], needs: frozenset[str] | set[str]) -> SourceActivations:
        """What a capture of only ``needs`` at ``layers`` would hold (the same tensors)."""
        kinds = {kind: {layer: getattr(self, kind)[layer] for layer in layers} for kind in needs}
        return SourceActivations(prompts=self.prompts, **kinds)

    def mean_z(self, layer: int) -> torch.Tensor:
        """Mean of z over every source prompt and position: [head, d_head]."""
        return torch.cat(self.z[layer], dim=0).mean(dim=0)


def capture_source(
    handle: ModelHandle,
    prompts: Sequence[str],
    layers: Sequence[int],
    needs: frozenset[str] | set[str],
    *,
    prompt_format: str | None = None,
    batch_size: int = 64,
) -> SourceActivations:
    """Run the source prompts once and keep what the patch needs at ``layers``, unpadded."""
    fmt = format_prompts(handle.tokenizer, list(prompts), prompt_format or handle.prompt_format)
    fmt.check_fits(handle, prompts=list(prompts))
    acts = SourceActivations(prompts=tuple(prompts))
    for kind in needs:
        for layer in layers:
            getattr(acts, kind)[layer] = []
    for start in range(0, len(fmt.texts) if needs else 0, batch_size):
        enc = fmt.encode(handle.tokenizer, fmt.texts[start : start + batch_size])
        mask = enc["attention_mask"]
        pads = (mask.shape[1] - mask.sum(-1)).tolist()
        store: dict[tuple[str, int], torch.Tensor] = {}
        hooks = [
            (
                act_name(cast(ActKind, kind), layer),  # needs holds z, pattern or v (checked by register_mode)
                lambda t, hook, key=(kind, layer), store=store: store.__setitem__(key, t.detach().clone()),
            )
            for kind in needs
            for layer in layers
        ]
        position = position_ids(mask)
        with torch.no_grad(), handle.hooked.hooks(fwd_hooks=hooks), _stop_after(handle, max(layers, default=None)):
            handle.model(input_ids=enc["input_ids"], attention_mask=mask, position_ids=position, logits_to_keep=1)
        for (kind, layer), t in store.items():
            for r, pad in enumerate(pads):
                getattr(acts, kind)[layer].append(t[r, :, pad:, pad:] if kind == "pattern" else t[r, pad:])
    return acts


class _Reached(Exception):
    """Raised by the last block a capture reads: the layers above it are not computed."""


@contextlib.contextmanager
def _stop_after(handle: ModelHandle, layer: int | None) -> Iterator[None]:
    """The forward pass ends after block ``layer`` (what a capture keeps is computed by then;
    None: it runs to the end)."""
    if layer is None:
        yield
        return
    block = handle.hooked.decoder_layers()[layer]

    def stop(_module, _inputs, _output):
        raise _Reached

    registered = block.register_forward_hook(stop)
    try:
        yield
    except _Reached:
        pass
    finally:
        registered.remove()


def aligned_positions(alignment: str, lt: int, ls: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Patched target query positions and their source positions (None: source mean)."""
    if alignment == "last":
        return torch.tensor([lt - 1]), torch.tensor([ls - 1])
    if alignment == "mean_source":
        return torch.arange(lt), None
    n = min(lt, ls)
    return torch.arange(lt - n, lt), torch.arange(ls - n, ls)


def source_length(source: SourceActivations, layer: int, i: int, default: int) -> int:
    for kind in ("z", "v", "pattern"):
        acts = getattr(source, kind).get(layer)
        if acts:
            return acts[i].shape[-2 if kind == "pattern" else 0]
    return default  # zero mode needs no source: treat as same length
