"""Path patching: a patch's effect on the output only through chosen receivers.

Path patching (Wang et al. 2022, "Interpretability in the Wild"; Goldowsky-Dill et al. 2023,
"Localizing Model Behavior with Path Patching") asks how much of a patch's effect flows
through particular downstream components. Here the *senders* are patched heads (a patch mode
with source prompts, as in any claim) and the *receivers* are later heads and/or the direct
path to the logits (``direct``).

Definition used here. Above the lowest sender layer ``L`` the model runs several copies of the
residual stream side by side in one batch, all fed the same tokens:

- ``T``, the target run, untouched;
- ``P``, the *sender* stream: the senders take the patch's value; every head that is neither a
  sender nor a receiver is **frozen** to its value in ``T`` (so the senders' effect cannot pass
  through it); receivers and MLPs compute from ``P``'s own residual stream (MLPs are treated as
  part of the paths between heads, as in Wang et al., who recompute them);
- ``Q`` (only when ``direct`` is not a receiver), the *receiver* stream: ``T`` with the
  receivers' outputs taken from ``P`` and every other head frozen to ``T``.

The logits (and so the generated tokens) are ``P``'s when ``direct`` is a receiver (the
senders' direct path, plus what reaches the logits through the receiver heads), else ``Q``'s
(only what passes through the receivers). Consequences, each tested: with receivers = every
later head plus ``direct`` nothing is frozen and ``P`` is the plain patch (same tokens, same
log-probs up to the batch's rounding); with ``direct`` alone every later head is frozen and
only the senders' direct path (through MLPs) moves the logits.

During generation every step runs the same way: the streams keep their own KV caches above
``L`` (so a receiver attends over ``P``'s keys and values at the earlier positions) and are
fed the output stream's tokens. Senders are patched as the claim's patch mode says (at prompt
positions at prefill; the z-valued modes ``z``, ``pattern_v``, ``zero``, ``mean``; the modes
that read the target's own pattern or values are refused). Receiver heads must lie in layers
above ``L``; ``later`` names every head above ``L`` that is not a sender.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from harness.core.errors import UserError
from harness.model.loading import ModelHandle
from harness.model.names import act_name
from harness.patch.heads import parse_head_spec
from harness.patch.hooks import PatchConfig, patch_hooks
from harness.patch.modes import get_mode
from harness.patch.source import SourceActivations
from harness.run.generation import BatchInfo, HookSet

DIRECT = "direct"
LATER = "later"
_FAN_OUT_KWARGS = ("hidden_states", "attention_mask", "position_ids", "position_embeddings")


@dataclass(frozen=True)
class Receivers:
    """Receiver heads and whether the direct path to the logits is a receiver."""

    heads: tuple[tuple[int, int], ...]
    direct: bool

    def to_text(self) -> str:
        return ",".join([f"{l}:{h}" for l, h in self.heads] + ([DIRECT] if self.direct else []))


def parse_receivers(
    text: str, senders: Iterable[tuple[int, int]], n_layers: int, n_heads: int, model: str = ""
) -> Receivers:
    """``"direct"``, ``"later"``, head specs (``"22:*,25:3"``) or a comma-separated mix, against
    ``senders`` (resolved heads): receiver heads lie above the lowest sender layer and are no sender."""
    if not isinstance(text, str) or not text.strip():
        raise UserError(f"receivers {text!r}: name later heads (e.g. '22:*'), 'later', 'direct', or a mix")
    senders = tuple(senders)
    low = min(layer for layer, _ in senders)
    heads: set[tuple[int, int]] = set()
    direct = False
    specs = []
    for part in (p.strip() for p in text.split(",")):
        if part == DIRECT:
            direct = True
        elif part == LATER:
            heads |= {(l, h) for l in range(low + 1, n_layers) for h in range(n_heads)} - set(senders)
        else:
            specs.append(part)
    if specs:
        heads |= set(parse_head_spec(",".join(specs)).resolve(n_layers, n_heads, model))
    early = sorted(h for h in heads if h[0] <= low)
    if early:
        raise UserError(
            f"receivers {text!r}: head {early[0][0]}:{early[0][1]} is not above the lowest sender layer {low} "
            f"(a receiver must be able to read the senders' output)"
        )
    both = sorted(heads & set(senders))
    if both:
        raise UserError(f"receivers {text!r}: head {both[0][0]}:{both[0][1]} is also a sender")
    if not heads and not direct:
        raise UserError(f"receivers {text!r}: no receiver left (no head above layer {low}, and not 'direct')")
    return Receivers(tuple(sorted(heads)), direct)


def check_path_mode(mode: str) -> None:
    m = get_mode(mode)
    if m.target_pattern or m.target_v:
        raise UserError(
            f"patch mode {mode!r} reads the target's own attention pattern or values; path patching takes "
            "the z-valued modes (z, pattern_v, zero, mean)"
        )


def _grow(n: int, copies: int) -> Callable:
    def grow(t):
        if isinstance(t, tuple):
            return tuple(grow(x) for x in t)
        if isinstance(t, torch.Tensor) and t.dim() and t.shape[0] == n:
            return t.repeat(copies, *([1] * (t.dim() - 1)))
        return t

    def hook(_module, args, kwargs):
        args = tuple(grow(a) if isinstance(a, torch.Tensor) else a for a in args)
        kwargs = {k: grow(v) if k in _FAN_OUT_KWARGS else v for k, v in kwargs.items()}
        return args, kwargs

    return hook


def _keep_rows(rows: slice) -> Callable:
    def hook(_module, _inputs, out):
        if isinstance(out, tuple):
            return (out[0][rows], *out[1:])
        return out[rows]

    return hook


@dataclass(frozen=True)
class _Streams:
    """How a path run's batch is laid out above its lowest sender layer ``low``: ``copies``
    streams (T, P and, without the direct path, Q), the logits taken from stream ``output``."""

    low: int
    n_layers: int
    copies: int
    output: int


@dataclass(frozen=True)
class _PathRun:
    """One path run's heads per layer, and its senders' patch hooks for the chunk."""

    inner: dict  # sender hook point -> the patch's hook
    patched: dict[int, list[int]]
    frozen: dict[int, list[int]]
    receiving: dict[int, list[int]]


def _path_set(streams: _Streams, runs: list[_PathRun], n: int) -> HookSet:
    """The hooks of ``runs`` (``n`` rows each) in one batch: each stream holds every run's rows,
    run ``a`` in block ``a``."""
    total = len(runs) * n

    def layer_hook(layer: int) -> tuple[str, Callable]:
        name = act_name("z", layer)

        def hook(z, hook):
            z = z.clone()
            for a, run in enumerate(runs):
                t, p = slice(a * n, (a + 1) * n), slice(total + a * n, total + (a + 1) * n)
                frozen, patched, heads_in = run.frozen[layer], run.patched[layer], run.receiving[layer]
                if frozen:
                    z[p, :, frozen] = z[t, :, frozen]
                if patched:
                    z[p] = run.inner[name](z[p].clone(), hook)
                if streams.copies == 3:
                    q = slice(2 * total + a * n, 2 * total + (a + 1) * n)
                    z[q] = z[t]
                    if heads_in:
                        z[q, :, heads_in] = z[p, :, heads_in]
            return z

        return name, hook

    def install(h: ModelHandle) -> list:
        blocks = h.hooked.decoder_layers()
        grow = _grow(total, streams.copies)
        handles = [blocks[j].register_forward_pre_hook(grow, with_kwargs=True) for j in range(streams.low, len(blocks))]
        out = slice(streams.output * total, (streams.output + 1) * total)
        handles.append(blocks[len(blocks) - 1].register_forward_hook(_keep_rows(out)))
        return handles

    def together(sets: list[HookSet], rows: int) -> HookSet:
        return _path_set(streams, [run for hs in sets for run in hs.runs], rows)  # type: ignore[attr-defined]

    hooks = HookSet(
        [layer_hook(layer) for layer in range(streams.low, streams.n_layers)],
        install,
        pack_key=("path", streams),
        together=together,
        width=streams.copies,
    )
    hooks.runs = runs  # type: ignore[attr-defined]
    return hooks


def path_hooks(
    handle: ModelHandle,
    patch: PatchConfig,
    source: SourceActivations,
    receivers: Receivers,
    pair: Callable[[int], int] | None = None,
) -> Callable[[BatchInfo], HookSet]:
    """A hook factory for :func:`harness.run.generation.generate`: the senders (``patch.heads``,
    patched with ``patch``'s mode and ``source``) reach the output only through ``receivers``
    (see the module docstring). Path runs with the same lowest sender layer and the same streams
    can share a batch (:func:`harness.run.generation.generate_together`)."""
    check_path_mode(patch.mode)
    shape = handle.shape
    senders = set(patch.heads)
    low = min(layer for layer, _ in senders)
    receiving = set(receivers.heads)
    streams = _Streams(low, shape.n_layers, 2 if receivers.direct else 3, 1 if receivers.direct else 2)
    layers = range(low, shape.n_layers)
    heads = range(shape.n_heads)
    patched = {layer: [h for h in heads if (layer, h) in senders] for layer in layers}
    frozen = {
        layer: [h for h in heads if (layer, h) not in senders and (layer, h) not in receiving] for layer in layers
    }
    heads_in = {layer: [h for h in heads if (layer, h) in receiving] for layer in layers}

    def factory(info: BatchInfo) -> HookSet:
        inner = dict(patch_hooks(handle, patch, source, pair)(info))
        return _path_set(streams, [_PathRun(inner, patched, frozen, heads_in)], len(info.rows))

    return factory
