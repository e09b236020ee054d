"""All-heads causal sweep on the next-token keyword log-probability.

For every head (l, h) and target prompt i: Δ_lhi = log p(keywords | target i, z_l,h patched
from source i) − log p(keywords | target i), where the metric is
:func:`harness.metrics.next_token.keyword_logprob`'s log-probability mass on the emotion's
keyword tokens at the next position, and the patch is the ``z`` mode with ``last`` alignment
(the head's output at the final prompt position is replaced by the source's final-position
output; see :mod:`harness.patching`).

Why it is fast: with ``last`` alignment only the final position differs from the unpatched
run, at the patched layer and above, so the prompt's other positions are computed once and
kept in the KV cache; each head then costs one single-position step. The heads of a layer
are stacked along the batch (row ``i·(H+1) + k``: variant 0 unpatched, variant k patches
head k−1), so one step evaluates a whole layer and its own unpatched reference. The result
equals patching one head at a time with full forwards (tested, float tolerance).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from harness.models import ModelHandle


@dataclass
class Sweep:
    emotion: str
    deltas: np.ndarray  # [n_layers, n_heads, n_prompts]
    baseline: np.ndarray  # [n_prompts] unpatched log-prob mass

    def ranked(self) -> list[tuple[int, int, float, float]]:
        """(layer, head, mean Δ, share of prompts up), best first."""
        mean, up = self.deltas.mean(-1), (self.deltas > 0).mean(-1)
        order = np.argsort(-mean, axis=None)
        return [(int(i // mean.shape[1]), int(i % mean.shape[1]), float(mean.flat[i]), float(up.flat[i]))
                for i in order]


def sweep(handle: ModelHandle, targets, sources, emotion: str, *, layers=None,
          prompt_format: str | None = None) -> Sweep:
    """Δ keyword log-prob for every head of ``layers`` (default all), source i -> target i mod n."""
    from transformers import DynamicCache

    from harness.metrics.next_token import keyword_token_ids
    from harness.patching import capture_source
    from harness.templating import format_prompts

    model, shape = handle.model, handle.shape
    layers = list(range(shape.n_layers)) if layers is None else list(layers)
    targets, sources = list(targets), list(sources)
    fmt = format_prompts(handle.tokenizer, targets, prompt_format or handle.prompt_format)
    enc = handle.tokenizer(list(fmt.texts), return_tensors="pt", padding=True,
                           add_special_tokens=fmt.add_special_tokens)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    position = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    src = capture_source(handle, sources, layers, frozenset({"z"}), prompt_format=fmt.format)
    pair = [i % len(sources) for i in range(len(targets))]
    n, heads, variants = len(targets), shape.n_heads, shape.n_heads + 1
    keyword_ids = torch.tensor(keyword_token_ids(handle.tokenizer, emotion))
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=position[:, :-1], cache=cache)
        cache.batch_repeat_interleave(variants)
        step = {"input_ids": ids[:, -1:].repeat_interleave(variants, 0),
                "attention_mask": mask.repeat_interleave(variants, 0),
                "position_ids": position[:, -1:].repeat_interleave(variants, 0)}
        deltas = np.zeros((shape.n_layers, heads, n))
        baseline = None
        for layer in layers:
            last = torch.stack([src.z[layer][pair[i]][-1] for i in range(n)])  # [n, head, d_head]

            def patch(z, hook, last=last):
                z = z.clone()
                for k in range(heads):
                    z[k + 1::variants, 0, k] = last[:, k]
                return z
            with handle.hooked.hooks(fwd_hooks=[(f"blocks.{layer}.attn.hook_z", patch)]):
                logits = model(**step, cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
            cache.crop(-1)  # drop the final position again: the next layer re-evaluates it
            mass = torch.logsumexp(logits.float().log_softmax(-1)[:, keyword_ids], -1).view(n, variants)
            deltas[layer] = (mass[:, 1:] - mass[:, :1]).T.numpy()
            baseline = mass[:, 0].numpy()
    return Sweep(emotion=emotion, deltas=deltas, baseline=baseline)


def reference_sweep(handle: ModelHandle, targets, sources, emotion: str, heads, *,
                    prompt_format: str | None = None) -> np.ndarray:
    """The same Δ one head at a time with full forwards through the patching engine: [len(heads), n]."""
    from harness.metrics.next_token import keyword_logprob
    from harness.patching import PatchConfig, capture_source, patch_hooks

    layers = sorted({layer for layer, _ in heads})
    src = capture_source(handle, list(sources), layers, frozenset({"z"}), prompt_format=prompt_format)
    base = keyword_logprob(handle, targets, emotion, prompt_format=prompt_format)
    out = []
    for head in heads:
        hooks = patch_hooks(handle, PatchConfig((head,), "z", "last"), src)
        out.append((keyword_logprob(handle, targets, emotion, hooks=hooks, prompt_format=prompt_format) - base).numpy())
    return np.stack(out)
