"""All-heads causal sweep on the next-token keyword log-probability.

For every head (l, h) and target prompt i: Δ_lhi = log p(keywords | target i, z_l,h patched
from source i) − log p(keywords | target i), where the metric is
:func:`harness.metrics.next_token.keyword_logprob`'s log-probability mass on the emotion's
keyword tokens at the next position, and the patch is any mode of :mod:`harness.patch.modes`
with ``last`` alignment (only the head's output at the final prompt position is replaced;
``z`` by default: the source's final-position output).

Why it is fast: with ``last`` alignment only the final position differs from the unpatched
run, at the patched layer and above, so the prompt's other positions are computed once and
kept in the KV cache; each head then costs one single-position step. The heads of a layer
are stacked along the batch (row ``i·(H+1) + k``: variant 0 unpatched, variant k patches
head k−1), so one step evaluates a whole layer and its own unpatched reference. Below the
patched layer all variants are the same unpatched run, so the step carries n rows there and
fans out to n·(H+1) rows on entering the patched layer (a forward pre-hook on each block
from there up repeats the hidden states, mask and position tables; the KV cache holds n rows
below the layer and n·(H+1) from it up). The result
equals patching one head at a time with full forwards (tested, float tolerance, every mode).
The modes that read the target (``v_only``: target pattern × source values;
``pattern_only``: source pattern × target values) take the target's pattern and values at the
patched layer from one unpatched capture: below the patched layer nothing has changed, so
they are the values the full forward would see (:func:`last_position_values`).

Cost: one prefix forward of the n prompts (and one of the sources), plus, per swept layer l,
one single-position step of n rows through layers < l and n·(H+1) rows through layers ≥ l:
linear in prompts and in heads per layer; deeper layers are cheaper
(``python -m harness bench sweep-scaling``).

Also here: :func:`combinations` (the top-k heads patched together vs. each alone) and
:func:`claim_rows` (the top heads as claim rows for the suite, ``--write-claims``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from harness.claims.evaluation import RESOLUTION
from harness.core.errors import UserError
from harness.core.results import load_versioned
from harness.metrics import get_metric
from harness.metrics.next_token import keyword_logprob, keyword_token_ids
from harness.model.loading import ModelHandle
from harness.model.names import act_name
from harness.patch.hooks import PatchConfig, patch_hooks
from harness.patch.modes import MODES, Row, get_mode
from harness.patch.source import SourceActivations, aligned_positions, capture_source, source_length
from harness.run.generation import position_ids
from harness.run.templating import format_prompts
from harness.stats import adjust_pvalues, bootstrap_mean_ci, bootstrap_mean_ci_grid, paired_effect, tost

SCHEMA, SCHEMA_VERSION = "causal-heads/sweep", 1


@dataclass
class Sweep:
    emotion: str
    deltas: np.ndarray  # [n_layers, n_heads, n_prompts]
    baseline: np.ndarray  # [n_prompts] unpatched log-prob mass
    mode: str = "z"

    def ranked(self) -> list[tuple[int, int, float, float]]:
        """(layer, head, mean Δ, share of prompts up), best first."""
        mean, up = self.deltas.mean(-1), (self.deltas > 0).mean(-1)
        order = np.argsort(-mean, axis=None)
        return [
            (int(i // mean.shape[1]), int(i % mean.shape[1]), float(mean.flat[i]), float(up.flat[i])) for i in order
        ]

    def ranked_rows(self, *, seed: int, n_resamples: int = 2000) -> list[dict]:
        """:meth:`ranked` as the rows a document holds: rank, ``"L:H"``, mean Δ with its 95%
        bootstrap CI over prompts, share of prompts up."""
        low, high = bootstrap_mean_ci_grid(self.deltas, seed=seed, n_resamples=n_resamples)
        return [
            {
                "rank": rank,
                "head": f"{layer}:{head}",
                "mean": mean,
                "ci_low": float(low[layer, head]),
                "ci_high": float(high[layer, head]),
                "share_up": up,
            }
            for rank, (layer, head, mean, up) in enumerate(self.ranked(), 1)
        ]


def last_position_values(
    handle: ModelHandle,
    mode: str,
    layer: int,
    src: SourceActivations,
    tgt: SourceActivations,
    pair: list[int],
    target_lengths: list[int],
) -> torch.Tensor:
    """The ``mode`` patch's replacement z at each target's final position, ``[n, n_heads, d_head]``.

    With ``last`` alignment a patch at layer l changes nothing below l, so the target's
    pattern and values at l are those of the unpatched run (``tgt``, captured once) and the
    replacement can be computed ahead of the sweep by the patching engine's own definition.
    """

    shape = handle.shape
    patch_mode = get_mode(mode)
    out = torch.empty(len(pair), shape.n_heads, shape.d_head)
    patterns, values = tgt.pattern.get(layer), tgt.v.get(layer)
    for i, j in enumerate(pair):
        lt = target_lengths[i]
        qs_t, qs_s = aligned_positions("last", lt, source_length(src, layer, j, lt))
        pattern = None if patterns is None else patterns[i]
        v = None if values is None else values[i]
        for h in range(shape.n_heads):
            row = Row(layer, h, h // shape.group_size, shape.d_head, qs_t, qs_s, src, j, pattern, v)
            out[i, h] = patch_mode(row)[0]
    return out


_FAN_OUT_KWARGS = ("hidden_states", "attention_mask", "position_ids", "position_embeddings")


def _fan_out(n: int, variants: int) -> Callable:
    """Forward pre-hook for a decoder block: batch-n tensors (hidden states, mask, positions,
    rotary tables) become n·variants rows, row i·variants + k being variant k of prompt i."""

    def grow(t):
        if isinstance(t, tuple):
            return tuple(grow(x) for x in t)
        return t.repeat_interleave(variants, 0) if isinstance(t, torch.Tensor) and t.dim() and t.shape[0] == n else t

    def hook(_module, args, kwargs):
        args = tuple(grow(a) if isinstance(a, torch.Tensor) else a for a in args)
        kwargs = {k: grow(v) if k in _FAN_OUT_KWARGS else v for k, v in kwargs.items()}
        return args, kwargs

    return hook


def _resize_cache_layer(cache_layer: Any, n: int, variants: int, want_expanded: bool, is_expanded: bool) -> None:
    if want_expanded == is_expanded or not getattr(cache_layer, "is_initialized", True):
        return
    for name in ("keys", "values"):
        t = getattr(cache_layer, name)
        setattr(cache_layer, name, t.repeat_interleave(variants, 0) if want_expanded else t[::variants].contiguous())


def sweep(
    handle: ModelHandle,
    targets: Sequence[str],
    sources: Sequence[str],
    emotion: str,
    *,
    layers: Sequence[int] | None = None,
    mode: str = "z",
    prompt_format: str | None = None,
) -> Sweep:
    """Δ keyword log-prob for every head of ``layers`` (default all), source i -> target i mod n,
    patch ``mode`` (any of :data:`harness.patch.modes.MODES`) with ``last`` alignment."""
    from transformers import DynamicCache

    patch_mode = get_mode(mode)
    model, shape = handle.model, handle.shape
    layers = list(range(shape.n_layers)) if layers is None else list(layers)
    targets, sources = list(targets), list(sources)
    fmt = format_prompts(handle.tokenizer, targets, prompt_format or handle.prompt_format)
    fmt.check_fits(handle, prompts=targets)
    enc = fmt.encode(handle.tokenizer)
    device = model.device  # the tokenizer's tensors, the patch values and the masses move to and from it
    ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
    position = position_ids(mask)
    src = capture_source(handle, sources, layers, patch_mode.needs, prompt_format=fmt.format)
    tgt = capture_source(
        handle,
        targets,
        layers,
        frozenset({k for k, on in (("pattern", patch_mode.target_pattern), ("v", patch_mode.target_v)) if on}),
        prompt_format=fmt.format,
    )
    pair = [i % len(sources) for i in range(len(targets))]
    lengths = enc["attention_mask"].sum(-1).tolist()
    n, heads, variants = len(targets), shape.n_heads, shape.n_heads + 1
    keyword_ids = torch.tensor(keyword_token_ids(handle.tokenizer, emotion), device=device)
    # full-length layers even on sliding-window models (Mistral): the step below crops the cache
    # after every layer, which a sliding layer refuses once its window is full; the attention mask
    # still applies the window, so the numbers equal a full forward (tested on tiny-mistral-swa)
    cache = DynamicCache(ddp_cache_data=[(None, None)] * shape.n_layers)  # n empty full-length layers
    blocks = handle.hooked.decoder_layers()
    previous = shape.n_layers  # cache layers >= previous hold n·(H+1) rows (none before the first step)
    with torch.no_grad():
        if ids.shape[1] > 1:  # else every prompt is one token: nothing to cache before the step
            model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=position[:, :-1], cache=cache)
        step = {"input_ids": ids[:, -1:], "attention_mask": mask, "position_ids": position[:, -1:]}
        deltas = np.zeros((shape.n_layers, heads, n))
        baseline = None
        for layer in sorted(layers):
            last = last_position_values(handle, mode, layer, src, tgt, pair, lengths)  # [n, head, d_head]
            last = last.to(device=device, dtype=model.dtype)  # no-ops on a CPU float32 model
            # below `layer` every variant is the unpatched run: those layers see n rows, and the
            # rows become n·(H+1) variants on entering `layer` (their cached prefixes are equal)
            for j in range(shape.n_layers):
                _resize_cache_layer(cache.layers[j], n, variants, j >= layer, j >= previous)
            previous = layer

            def patch(z, hook, last=last):
                z = z.clone()
                for k in range(heads):
                    z[k + 1 :: variants, 0, k] = last[:, k]
                return z

            fan_out = [
                blocks[j].register_forward_pre_hook(_fan_out(n, variants), with_kwargs=True)
                for j in range(layer, shape.n_layers)
            ]
            try:
                with handle.hooked.hooks(fwd_hooks=[(act_name("z", layer), patch)]):
                    logits = model(**step, cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
            finally:
                for h in fan_out:
                    h.remove()
            cache.crop(-1)  # drop the final position again: the next layer re-evaluates it
            mass = torch.logsumexp(logits.float().log_softmax(-1)[:, keyword_ids], -1).view(n, variants)
            deltas[layer] = (mass[:, 1:] - mass[:, :1]).T.cpu().numpy()
            baseline = mass[:, 0].cpu().numpy()
    if baseline is None:
        raise ValueError("sweep: no layer to sweep")
    return Sweep(emotion=emotion, deltas=deltas, baseline=baseline, mode=mode)


def patched_deltas(
    handle: ModelHandle,
    targets: Sequence[str],
    sources: Sequence[str],
    emotion: str,
    head_sets: Sequence[Sequence[tuple[int, int]]],
    *,
    mode: str = "z",
    prompt_format: str | None = None,
) -> np.ndarray:
    """Δ keyword log-prob per prompt for each set of heads patched together (``mode``, ``last``),
    with full forwards through the patching engine: ``[len(head_sets), n]``."""

    head_sets = [tuple(sorted(hs)) for hs in head_sets]
    layers = sorted({layer for hs in head_sets for layer, _ in hs})
    src = capture_source(handle, list(sources), layers, MODES[mode].needs, prompt_format=prompt_format)
    base = keyword_logprob(handle, targets, emotion, prompt_format=prompt_format)
    out = []
    for hs in head_sets:
        hooks = patch_hooks(handle, PatchConfig(tuple(hs), mode, "last"), src)
        out.append((keyword_logprob(handle, targets, emotion, hooks=hooks, prompt_format=prompt_format) - base).numpy())
    return np.stack(out)


def reference_sweep(
    handle: ModelHandle,
    targets: Sequence[str],
    sources: Sequence[str],
    emotion: str,
    heads: Sequence[tuple[int, int]],
    *,
    mode: str = "z",
    prompt_format: str | None = None,
) -> np.ndarray:
    """The sweep's Δ one head at a time with full forwards: ``[len(heads), n]``."""
    return patched_deltas(
        handle, targets, sources, emotion, [(h,) for h in heads], mode=mode, prompt_format=prompt_format
    )


def combinations(
    handle: ModelHandle,
    targets: Sequence[str],
    sources: Sequence[str],
    sweep_result: Sweep,
    heads: Sequence[tuple[int, int]],
    *,
    seed: int = 0,
    prompt_format: str | None = None,
) -> list[dict]:
    """The top-k heads patched together vs. each alone, for k = 2..len(heads).

    Per k: the mean Δ of the joint patch with its bootstrap CI, the additive prediction (sum of
    the single heads' mean Δ), the best single head of the set, and the paired difference
    joint − best single (bootstrap CI, one-sided sign-flip p that the joint patch is larger).
    Single-head Δ come from ``sweep_result`` (the same quantity, see the equality tests).
    """

    heads = [(h[0], h[1]) for h in heads]  # lists (from a document) or tuples
    joint = patched_deltas(
        handle,
        targets,
        sources,
        sweep_result.emotion,
        [heads[:k] for k in range(2, len(heads) + 1)],
        mode=sweep_result.mode,
        prompt_format=prompt_format,
    )
    rows = []
    for k, d in zip(range(2, len(heads) + 1), joint):
        singles = {h: sweep_result.deltas[h[0], h[1]] for h in heads[:k]}
        best = max(singles, key=lambda h: singles[h].mean())
        ci = bootstrap_mean_ci(d, seed=seed, n_resamples=2000)
        gain = paired_effect(d - singles[best], alternative="greater", seed=seed, n_resamples=2000, n_permutations=2000)
        rows.append(
            {
                "k": k,
                "heads": ",".join(f"{a}:{b}" for a, b in heads[:k]),
                "mean": ci.mean,
                "ci_low": ci.ci_low,
                "ci_high": ci.ci_high,
                "additive": float(sum(v.mean() for v in singles.values())),
                "best_single": f"{best[0]}:{best[1]}",
                "best_single_mean": float(singles[best].mean()),
                "gain_over_best": gain.mean,
                "gain_ci_low": gain.ci_low,
                "gain_ci_high": gain.ci_high,
                "gain_p": gain.p_value,
                "per_prompt": d.tolist(),
            }
        )
    return rows


CLAIM_METRICS = ("keywords", "logprob")


def above_rounding(row: dict) -> bool:
    """A head whose sweep CI lies above the float32 rounding of the metric (1e-5 nats), not just
    above 0: on a model whose other heads change nothing, their Δ is rounding noise whose CI
    can exclude 0 (the ground-truth models showed it), and they must not become claims."""
    return row["ci_low"] > RESOLUTION["float32"]


def claim_rows(
    model: str,
    emotion: str,
    target: str,
    n_prompts: int,
    ranked: list[dict],
    combos: list[dict],
    *,
    n_heads: int,
    random_heads: int,
    source_file: str,
    weights: str,
    mode: str = "z",
    claim_metric: str = "logprob",
    split: str = "all",
) -> list[dict]:
    """Claims for the suite from a sweep: the top ``n_heads`` heads whose CI lies above 0, each
    raising ``<emotion>_<claim_metric>`` in generations (``keywords``: counts in the text;
    ``logprob``: the model-side mean keyword log-mass over the generated tokens) with ``mode``
    and ``last`` alignment as swept, beyond random heads; those heads together; and together
    vs. the best of them alone; evaluated on the first ``n_prompts`` of ``split``."""

    metric = f"{emotion}_{claim_metric}"
    get_metric(metric)
    slug = "".join(c if c.isalnum() else "_" for c in model.lower()).strip("_")
    top = [r for r in ranked if above_rounding(r)][:n_heads]
    common = {
        "model": model,
        "selected_on": source_file,  # the discovery record: evaluating on its prompts is exploratory
        "patch_mode": mode,
        "source": emotion,
        "target": target,
        "metric": metric,
        "direction": "increase",
        "alignment": "last",
        **({"split": split} if split != "all" else {}),
        "n_prompts": n_prompts,
    }
    where = f"{source_file} (weights {weights[:12]})"
    rows = []
    for r in top:
        layer, head = r["head"].split(":")
        rows.append(
            {
                "id": f"sweep_{slug}_{emotion}_{layer}_{head}_raises_{metric}",
                **common,
                "heads": r["head"],
                "random_heads": random_heads,
                "description": f"Sweep rank {r['rank']}: next-token {emotion} keyword log-prob "
                f"{r['mean']:+.3f} nats [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}], "
                f"{100 * r['share_up']:.0f}% of prompts up{_stability_text(r)}; from {where}. Does it carry "
                f"into generations, beyond random heads of the same layer?",
            }
        )
    if len(top) >= 2:
        rows += _together_rows(top, combos, common, f"sweep_{slug}_{emotion}_top{len(top)}", where, random_heads)
    return rows


def _stability_text(row: dict) -> str:
    if "selected_share" not in row:
        return ""
    lo, hi = row["rank_interval"]
    return f", selected in {100 * row['selected_share']:.0f}% of prompt resamples (rank {lo}-{hi})"


def _together_rows(
    top: list[dict], combos: list[dict], common: dict, prefix: str, where: str, random_heads: int
) -> list[dict]:
    """The top heads together beyond random head sets, and together vs the best of them alone."""
    metric = common["metric"]
    heads = ",".join(r["head"] for r in top)
    combo = next((c for c in combos if c["heads"] == heads), None)
    measured = (
        f" Sweep: together {combo['mean']:+.3f} nats [{combo['ci_low']:+.3f}, {combo['ci_high']:+.3f}]"
        f" vs best single {combo['best_single']} {combo['best_single_mean']:+.3f}."
        if combo
        else ""
    )
    best = max(top, key=lambda r: r["mean"])["head"]
    gain = (
        f" Sweep: gain {combo['gain_over_best']:+.3f} nats [{combo['gain_ci_low']:+.3f}, "
        f"{combo['gain_ci_high']:+.3f}], p = {combo['gain_p']:.2g}."
        if combo
        else ""
    )
    return [
        {
            "id": f"{prefix}_together_raise_{metric}",
            **common,
            "heads": heads,
            "random_heads": random_heads,
            "description": f"The top {len(top)} sweep heads patched together raise {metric} beyond "
            f"random head sets of the same layers.{measured} From {where}.",
        },
        {
            "id": f"{prefix}_together_beat_best_single",
            **common,
            "heads": heads,
            "versus": {"heads": best},
            "description": f"Patching the top {len(top)} sweep heads together raises {metric} more "
            f"than the best of them ({best}) alone.{gain} From {where}.",
        },
    ]


def load_sweep(path: str) -> dict:
    """A sweep document written by :func:`main`, checked for schema, version and the structure its
    readers use: ``deltas`` a [layers, heads, prompts] grid of numbers with ``n_prompts`` prompts
    (at least 2), and ``emotion``, ``target``, ``patch_mode`` strings. A :class:`UserError` names
    the file and the field."""

    doc = load_versioned(path, SCHEMA, SCHEMA_VERSION, "sweep")
    for key in ("emotion", "target", "patch_mode"):
        if not isinstance(doc.get(key), str):
            shown = "is missing" if key not in doc else f"= {doc[key]!r}"
            raise UserError(f"{path}: field {key!r} {shown}: must be a string")
    if not isinstance(doc.get("model", {}), dict):
        raise UserError(f"{path}: field 'model' = {doc['model']!r}: must be an object")
    try:
        deltas = np.asarray(doc.get("deltas"), dtype=float)
    except (TypeError, ValueError):
        deltas = None
    if deltas is None or deltas.ndim != 3 or not np.isfinite(deltas).all():
        shown = "missing" if "deltas" not in doc else "not a [layers, heads, prompts] grid of finite numbers"
        raise UserError(f"{path}: field 'deltas' is {shown}")
    n = doc.get("n_prompts")
    if isinstance(n, bool) or not isinstance(n, int) or n != deltas.shape[2] or n < 2:
        raise UserError(
            f"{path}: field 'n_prompts' = {n!r}: must be the deltas' prompt count {deltas.shape[2]} (at least 2)"
        )
    return doc


def compare_sweeps(a: dict, b: dict, *, margin: float, alpha: float = 0.05) -> dict:
    """Per head, is sweep ``b`` (e.g. ``v_only``) different from or equivalent to sweep ``a``
    (e.g. ``pattern_v``)? Paired over prompts (same prompts, pairing and model required).

    Difference: two-sided paired t test of mean(Δ_b − Δ_a) = 0. Equivalence: TOST with
    ``margin`` (nats). Both Holm-adjusted over all heads. A head is ``differ``, ``equivalent``
    or ``inconclusive`` (neither at ``alpha``). A difference shown at ``alpha`` is ``differ``
    even when it is also inside the margin (both adjusted p-values are in the row).
    """
    from scipy.stats import spearmanr, ttest_1samp

    for key in ("emotion", "target", "n_prompts"):
        if a.get(key) != b.get(key):
            raise ValueError(f"the sweeps differ in {key}: {a.get(key)!r} vs {b.get(key)!r}")
    wa, wb = a.get("model", {}).get("weights_sha256"), b.get("model", {}).get("weights_sha256")
    if wa != wb:
        raise ValueError(f"the sweeps come from different weights ({str(wa)[:12]} vs {str(wb)[:12]})")
    da, db = np.asarray(a["deltas"], dtype=float), np.asarray(b["deltas"], dtype=float)
    if da.shape != db.shape:
        raise ValueError(f"the sweeps' grids differ: {da.shape} vs {db.shape}")
    n_layers, n_heads, _ = da.shape
    diff = (db - da).reshape(n_layers * n_heads, -1)
    mean_a, mean_b = da.mean(-1), db.mean(-1)
    p_diff = [float(ttest_1samp(d, 0.0).pvalue) if d.std() > 0 else (1.0 if d.mean() == 0 else 0.0) for d in diff]
    p_equiv = [tost(d, margin=margin, alpha=alpha).p_value for d in diff]
    adj_diff, adj_equiv = adjust_pvalues(p_diff), adjust_pvalues(p_equiv)
    heads: list[dict[str, Any]] = []
    for k, d in enumerate(diff):
        verdict = "differ" if adj_diff[k] < alpha else "equivalent" if adj_equiv[k] < alpha else "inconclusive"
        heads.append(
            {
                "head": f"{k // n_heads}:{k % n_heads}",
                "mean_a": float(mean_a.flat[k]),
                "mean_b": float(mean_b.flat[k]),
                "difference": float(d.mean()),
                "p_difference_holm": adj_diff[k],
                "p_equivalence_holm": adj_equiv[k],
                "verdict": verdict,
            }
        )
    heads.sort(key=lambda r: -abs(r["difference"]))
    rho, _ = spearmanr(mean_a.ravel(), mean_b.ravel())
    counts = {v: sum(r["verdict"] == v for r in heads) for v in ("differ", "equivalent", "inconclusive")}
    return {
        "mode_a": a.get("patch_mode"),
        "mode_b": b.get("patch_mode"),
        "margin": margin,
        "alpha": alpha,
        "correction": "holm",
        "spearman_rho": float(rho),
        "counts": counts,
        "heads": heads,
    }
