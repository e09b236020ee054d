"""Head patching: put chosen heads' activations from source runs into target runs.

Notation, for query head ``h`` of layer ``l``, a source run ``S`` (an emotion prompt) and a
target run ``T`` (a neutral prompt): ``A`` = attention pattern ``[head, q, k]``, ``V`` = value
vectors ``[pos, kv_head, d_head]``, ``g(h) = h // (n_heads / n_kv_heads)`` the KV head that
``h`` reads, and ``z = A · V`` the per-head output before the output projection. Every mode
writes only ``z`` of the patched query heads (at ``blocks.L.attn.hook_z``), so on GQA
models the query heads that share ``h``'s KV head are never touched. Modes:

=================  ===============================================================
``z``              ``z_T,h <- z_S,h``
``pattern_v``      ``z_h = A_S,h · V_S,g(h)`` (computed from the captured pattern and
                   values; equal to ``z`` by construction, which a test asserts)
``v_only``         ``z_h = A_T,h · V'``, ``V'`` = target values with the aligned
                   positions replaced by ``V_S,g(h)``
``pattern_only``   ``z_h = A_S,h · V_T,g(h)`` over aligned keys, the source pattern
                   renormalised over the keys that have a target counterpart
``zero``           ``z_h <- 0`` (control)
``mean``           ``z_h <- mean of z_S,h over every source prompt and position`` (control)
=================  ===============================================================

Pairing: target prompt ``i`` takes source prompt ``i mod n_sources``.

Alignment (prompts differ in length; ``Lt``, ``Ls`` = unpadded token counts):

- ``end`` (default): align from the end of the prompt; the last ``n = min(Lt, Ls)``
  positions are paired (target ``Lt-n+j`` <-> source ``Ls-n+j``) and patched. Key
  positions for ``v_only``/``pattern_only`` are paired the same way.
- ``last``: patch only the final prompt position (target ``Lt-1`` <- source ``Ls-1``);
  keys for ``v_only``/``pattern_only`` are still paired from the end.
- ``mean_source``: every target prompt position gets the mean over source ``i``'s positions
  (``z``: mean ``z_S,h``; ``v_only``: every target key gets the mean ``V_S,g(h)``).
  Undefined for ``pattern_only`` (a pattern row cannot be averaged across query positions
  onto another prompt's keys) and refused.

Generated positions: by default the patch applies at prompt positions during prefill only;
decode steps then see the patched run through the KV cache (later layers' keys/values at
prompt positions were computed from the patched residual stream). With
``patch_generated=True`` the ``z``-valued modes (``z``, ``pattern_v``, ``zero``, ``mean``)
also write each newly generated position, with the source's final-position value (the mean
for ``mean_source``, zero, or the source mean). ``v_only``/``pattern_only`` refuse it.

Numerics: modes that read the target pattern (``v_only``, ``pattern_only``) hook
``hook_pattern``, which switches those layers from SDPA to an explicit softmax;
:func:`baseline_hooks` installs identity pattern hooks on the same layers so that the
baseline run takes the same path and the patch stays the only difference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import torch

from harness.core.errors import UnknownNameError, UserError, did_you_mean
from harness.model.loading import ModelHandle
from harness.model.names import act_name
from harness.patch.modes import ALIGNMENTS, PatchMode, Row, get_mode
from harness.patch.source import SourceActivations, aligned_positions, source_length
from harness.run.generation import BatchInfo


@dataclass(frozen=True)
class PatchConfig:
    heads: tuple[tuple[int, int], ...]
    mode: str
    alignment: str = "end"
    patch_generated: bool = False

    def __post_init__(self) -> None:
        mode = get_mode(self.mode)
        if self.alignment not in ALIGNMENTS:
            raise UnknownNameError(did_you_mean("alignment", self.alignment, ALIGNMENTS))
        if not self.heads:
            raise UserError("a patch needs at least one head")
        if self.alignment not in mode.alignments:
            why = (mode.value.__doc__ or "").strip().split("\n\n")[0].replace("\n    ", " ").replace("\n", " ")
            raise UserError(
                f"alignment {self.alignment!r} is not defined for patch mode {self.mode!r}"
                + (f" ({why})" if why else "")
                + f"; use {' or '.join(repr(a) for a in mode.alignments)}"
            )
        if self.patch_generated and not mode.z_valued:
            raise UserError(
                f"patch mode {self.mode!r} cannot be extended to generated positions (its value "
                f"depends on target keys the source does not have); drop --patch-generated"
            )

    def by_layer(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for layer, head in self.heads:
            out.setdefault(layer, []).append(head)
        return out

    def to_dict(self) -> dict:
        return {
            "heads": [f"{layer}:{head}" for layer, head in self.heads],
            "mode": self.mode,
            "alignment": self.alignment,
            "patch_generated": self.patch_generated,
        }


def _generated_value(cfg: PatchConfig, mode: PatchMode, row: Row) -> torch.Tensor:
    """Value written at a newly generated position (``patch_generated``; z-valued modes only): the
    mode's value at the source's last position (``mean_source``: its mean over positions)."""
    ls = source_length(row.source, row.layer, row.index, 1)
    at = replace(row, qs_t=_ONE, qs_s=None if cfg.alignment == "mean_source" else torch.tensor([ls - 1]))
    return mode(at)[0]


_ONE = torch.tensor([0])


def patch_hooks(
    handle: ModelHandle, cfg: PatchConfig, source: SourceActivations, pair: Callable[[int], int] | None = None
) -> Callable[[BatchInfo], list]:
    """A hook factory for :func:`harness.run.generation.generate` applying ``cfg`` with ``source``."""
    mode = get_mode(cfg.mode)
    group, d_head = handle.shape.group_size, handle.shape.d_head
    n_src = len(source.prompts)
    pair = pair or (lambda p: p % n_src)

    def factory(info: BatchInfo) -> list:
        state: dict[tuple[str, int], torch.Tensor] = {}
        hooks: list = []
        for layer, heads in cfg.by_layer().items():
            if mode.target_pattern:
                hooks.append((act_name("pattern", layer), _keep(state, "pattern", layer, info)))
            if mode.target_v:
                hooks.append((act_name("v", layer), _keep(state, "v", layer, info)))
            hooks.append((act_name("z", layer), _z_hook(cfg, source, state, info, layer, heads, (group, d_head), pair)))
        return hooks

    return factory


def _keep(state, kind, layer, info):
    def hook(t, hook):
        if info.step == 0:
            state[(kind, layer)] = t
        return t

    return hook


def constant_value(
    cfg: PatchConfig, source: SourceActivations, layer: int, heads: list[int], d_head: int
) -> torch.Tensor | None:
    """``[len(heads), d_head]`` when the mode writes one value at every row and position (``zero``
    with ``end`` or ``mean_source`` alignment; ``mean`` with ``mean_source``, the circuit claims'
    ablation of every other head; ``last`` writes one position only),
    so the hook can write all rows at once; None otherwise."""
    if cfg.mode == "zero" and cfg.alignment in ("end", "mean_source"):  # "end": zero reads no source, all positions
        return torch.zeros(len(heads), d_head)
    if cfg.mode == "mean" and cfg.alignment == "mean_source":
        return source.mean_z(layer)[list(heads)]
    return None


def _z_hook(cfg, source, state, info, layer, heads, dims, pair):
    group, d_head = dims
    mode = get_mode(cfg.mode)
    const = constant_value(cfg, source, layer, heads, d_head)

    def hook(z, hook):
        if info.step > 0 and not cfg.patch_generated:
            return z
        z = z.clone()
        if const is not None:  # the same value everywhere: every row's real positions at once
            idx = torch.tensor(heads, device=z.device)
            value = const.to(z)
            if info.step > 0:
                z[:, 0, idx] = value
                return z
            pads = info.pad_lengths.to(z.device)
            real = torch.arange(z.shape[1], device=z.device)[None, :] >= pads[:, None]  # [rows, positions]
            z[:, :, idx] = torch.where(real[:, :, None, None], value, z[:, :, idx])
            return z
        for r, (p, _sample) in enumerate(info.rows):
            i = pair(p)
            if info.step > 0:
                for h in heads:
                    row = Row(layer, h, h // group, d_head, _ONE, None, source, i, None, None)
                    z[r, 0, h] = _generated_value(cfg, mode, row).to(z)
                continue
            pad, lt = int(info.pad_lengths[r]), int(info.prompt_lengths[r])
            ls = source_length(source, layer, i, lt)
            qs_t, qs_s = aligned_positions(cfg.alignment, lt, ls)
            pat = state.get(("pattern", layer))
            v = state.get(("v", layer))
            for h in heads:
                row = Row(
                    layer,
                    h,
                    h // group,
                    d_head,
                    qs_t,
                    qs_s,
                    source,
                    i,
                    None if pat is None else pat[r, :, pad:, pad:],
                    None if v is None else v[r, pad:],
                )
                # on the model's device and in its dtype (no-ops for a CPU float32 model)
                z[r, (pad + qs_t).to(z.device), h] = mode(row).to(z)
        return z

    return hook


def baseline_hooks(cfg: PatchConfig) -> list:
    """Identity hooks giving the baseline run the same attention path as the patched run."""
    return identity_pattern_hooks(sorted(cfg.by_layer()) if get_mode(cfg.mode).target_pattern else ())


def identity_pattern_hooks(layers: Iterable[int]) -> list:
    """Identity hooks on ``layers``' attention patterns: those layers take the explicit softmax,
    as they do in a run that reads or edits the pattern there."""
    return [(act_name("pattern", layer), lambda t, hook: t) for layer in layers]
