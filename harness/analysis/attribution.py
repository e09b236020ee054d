"""Attribution patching: every head's patch effect estimated from one forward and one backward pass.

The causal sweep (:mod:`harness.analysis.sweep`) measures, for every head ``(l, h)`` and target
prompt ``i``, Δ = the change of the next-token keyword log-probability mass ``M`` when the
head's ``z`` at the final prompt position takes the patch mode's value from source prompt ``i``
(``last`` alignment). Attribution patching (Nanda 2023; Kramár et al. 2024, "AtP*")
estimates all of them at once with the first-order Taylor expansion around the target run::

    Δ̂_lh,i = (z_new − z_target)_lh,i · ∂M_i/∂z_lh,i      (at the final prompt position)

from one forward pass over the target prompts (recording ``z`` at every layer) and one
backward pass of ``Σ_i M_i`` (each prompt's ``M_i`` depends on its own row only, so one
backward gives every row's gradient). ``z_new`` is exactly the sweep's replacement value
(:func:`harness.analysis.sweep.last_position_values`), so the two measure the same quantity
and differ only by the estimate's higher-order terms: a head whose patch saturates attention
or crosses a nonlinearity's knee is misjudged. AtP*'s two corrections (recomputing the
attention softmax for query/key patches, and GradDrop against cancellation) address patches
of queries and keys and paths through many layers; a ``z`` patch at one position has neither
problem's first cause, and they are not applied here. How far the screen can be trusted on a
given model is measured, not assumed: ``causal-heads sweep`` reports its Spearman correlation,
top-10 overlap and sign agreement with the causal sweep, and ``python -m harness bench
attribution`` times both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from harness.analysis.sweep import Sweep, last_position_values
from harness.metrics.next_token import keyword_token_ids
from harness.model.loading import ModelHandle
from harness.model.names import act_name
from harness.patch.modes import get_mode
from harness.patch.source import capture_source
from harness.run.generation import position_ids
from harness.run.templating import format_prompts


def attribution(
    handle: ModelHandle,
    targets: Sequence[str],
    sources: Sequence[str],
    emotion: str,
    *,
    mode: str = "z",
    prompt_format: str | None = None,
    batch_size: int = 16,
) -> Sweep:
    """Estimated Δ keyword log-prob ``[n_layers, n_heads, n]`` for every head (see the module
    docstring), in the sweep's own record type (``baseline``: the unpatched mass per prompt)."""
    patch_mode = get_mode(mode)
    model, shape = handle.model, handle.shape
    targets, sources = list(targets), list(sources)
    fmt = format_prompts(handle.tokenizer, targets, prompt_format or handle.prompt_format)
    fmt.check_fits(handle, prompts=targets)
    layers = list(range(shape.n_layers))
    src = capture_source(handle, sources, layers, patch_mode.needs, prompt_format=fmt.format)
    target_needs = frozenset(k for k, on in (("pattern", patch_mode.target_pattern), ("v", patch_mode.target_v)) if on)
    tgt = capture_source(handle, targets, layers, target_needs, prompt_format=fmt.format)
    pair = [i % len(sources) for i in range(len(targets))]
    enc = fmt.encode(handle.tokenizer)
    lengths = enc["attention_mask"].sum(-1).tolist()
    new = {layer: last_position_values(handle, mode, layer, src, tgt, pair, lengths) for layer in layers}
    device = model.device
    keyword_ids = torch.tensor(keyword_token_ids(handle.tokenizer, emotion), device=device)
    deltas = np.zeros((shape.n_layers, shape.n_heads, len(targets)))
    baseline = np.zeros(len(targets))
    for start in range(0, len(targets), batch_size):
        rows = slice(start, start + batch_size)
        chunk = fmt.encode(handle.tokenizer, fmt.texts[rows])
        ids, mask = chunk["input_ids"].to(device), chunk["attention_mask"].to(device)
        store: dict[int, torch.Tensor] = {}

        def keep(z, hook, store=store):
            if not z.requires_grad:  # the first layer's z: the graph's leaf (the weights need no gradient)
                z = z.detach().clone().requires_grad_(True)
            store[int(hook.name.split(".")[1])] = z
            return z

        hooks = [(act_name("z", layer), keep) for layer in layers]
        with torch.enable_grad(), handle.hooked.hooks(fwd_hooks=hooks):
            logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask), logits_to_keep=1).logits
            mass = torch.logsumexp(logits[:, -1].float().log_softmax(-1)[:, keyword_ids], -1)
            zs = [store[layer] for layer in layers]
            grads = torch.autograd.grad(mass.sum(), zs)
        baseline[rows] = mass.detach().cpu().numpy()
        for layer, z, g in zip(layers, zs, grads, strict=True):
            last_z, last_g = z[:, -1].detach().float().cpu(), g[:, -1].float().cpu()  # [b, head, d_head]
            diff = new[layer][rows] - last_z
            deltas[layer, :, rows] = (diff * last_g).sum(-1).T.numpy()
    return Sweep(emotion=emotion, deltas=deltas, baseline=baseline, mode=mode)


@dataclass(frozen=True)
class Agreement:
    """How an estimate's per-head effects agree with the causal sweep's."""

    spearman_rho: float
    spearman_p: float
    top: int
    top_overlap: int
    sign_agreement: float  # share of (head, prompt) pairs with |causal Δ| > floor whose signs agree
    pairs: int  # how many such pairs
    floor: float

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def agreement(estimate: np.ndarray, causal: np.ndarray, *, top: int = 10, floor: float = 1e-4) -> Agreement:
    """Spearman correlation and top-``top`` overlap of the per-head mean effects, and the share of
    (head, prompt) pairs whose signs agree among those where the causal effect exceeds ``floor``
    in size (below it, a sign is rounding)."""
    from scipy.stats import spearmanr

    estimate, causal = np.asarray(estimate, dtype=float), np.asarray(causal, dtype=float)
    if estimate.shape != causal.shape:
        raise ValueError(f"estimate grid {estimate.shape} does not match the causal grid {causal.shape}")
    a, b = estimate.mean(-1), causal.mean(-1)
    rho, p = spearmanr(a.ravel(), b.ravel())
    by_a = set(np.argsort(-a, axis=None)[:top].tolist())
    by_b = set(np.argsort(-b, axis=None)[:top].tolist())
    big = np.abs(causal) > floor
    signs = float((np.sign(estimate[big]) == np.sign(causal[big])).mean()) if big.any() else float("nan")
    return Agreement(float(rho), float(p), top, len(by_a & by_b), signs, int(big.sum()), floor)
