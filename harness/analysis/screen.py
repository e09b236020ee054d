"""Head screening by attention: which heads look at an emotion's words (Δattention).

Definition. Prompts are templated as for generation (the model's prompt format). For a prompt
p, q is the final position of the templated prompt (the position that predicts the first
generated token) and A_lh[q, k] is head (l, h)'s attention from q to key position k.

- *Keyword tokens* K(p): the tokens of p whose characters overlap a match of the emotion's
  keyword list (:class:`harness.metrics.text.PhraseMatcher`: whole words, inflections as
  listed, longest phrase first; negated matches count too, a head can attend to "grateful" in
  "not grateful"). Only tokens of the prompt's own text count, never the chat template's.
- *Emotion mass* of head (l, h) on emotion prompt e_i: m_E = Σ_{k ∈ K(e_i)} A_lh[q, k].
- *Comparable tokens*: tokens at the same distances from the end of the text as K(e_i) are
  from the end of e_i's text. Everything after the prompt text (the template's closing tokens)
  is identical for all prompts, so comparable tokens are also at the same distance from q:
  attention's strong recency bias cancels, and so does the token count. Two references:

  - ``pooled`` (default): r_lh(d) = mean, over the neutral prompts whose text reaches distance
    d, of A_lh[q, end − d]; only distances that at least ``MIN_TARGETS_PER_DISTANCE`` (10, or
    all if fewer) neutral prompts reach are used, and keyword tokens farther back are dropped
    (reported as clipped). m_N,i = Σ_{k ∈ K(e_i)} r_lh(d_k). The CI is a percentile bootstrap
    that resamples emotion prompts and neutral prompts independently (the reference is an
    estimate too), recomputing r each time.
  - ``paired``: emotion prompt i against neutral prompt i only, m_N,i = Σ over the tokens of
    n_i at the distances d_k; a keyword token farther from the end than n_i's text is long is
    dropped on both sides. BCa bootstrap CI over pairs. Short neutral prompts lose many pairs.

- **Δattention_lh,i = m_E − m_N**, in [−1, 1]; the screen reports its mean over emotion
  prompts with a 95% CI. Emotion prompts with no keyword token left after clipping are left
  out (reported).

Δattention says where a head *looks*, not what it *does*: compare with the causal sweep
(``--sweep``), which this module summarises as a rank correlation.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from harness.metrics.text import PhraseMatcher, normalize
from harness.model.loading import ModelHandle
from harness.model.names import act_name
from harness.run.generation import position_ids
from harness.run.prompts import load_keywords
from harness.run.templating import FormattedPrompts, format_prompts
from harness.stats import bootstrap_mean_ci_grid


@dataclass(frozen=True)
class PromptTokens:
    """Token positions (unpadded) of one templated prompt."""

    n_tokens: int
    text_first: int  # first token of the prompt's own text
    text_last: int  # last token of the prompt's own text
    keywords: tuple[int, ...]  # keyword token positions (sorted)


@dataclass
class Screen:
    emotion: str
    target: str
    emotion_mass: np.ndarray  # [n_layers, n_heads, n_used]
    neutral_mass: np.ndarray  # [n_layers, n_heads, n_used]
    used: list[int]  # indices of the emotion/neutral pairs used
    excluded: list[int]  # pairs with no keyword token left after clipping
    no_keyword: list[int]  # ...of which the emotion prompt has no keyword token at all
    keyword_tokens: list[int]  # per used pair
    clipped_tokens: list[int]  # per used pair: keyword tokens dropped (too far from the end for the target)
    reference: str = "paired"
    # pooled only: per target prompt the mass at each distance from the end (NaN beyond its text),
    # [n_targets, n_layers, n_heads, n_distances], and per used emotion prompt its keyword-token
    # count at each distance, [n_used, n_distances]
    target_rows: np.ndarray | None = None
    distance_counts: np.ndarray | None = None

    @property
    def deltas(self) -> np.ndarray:
        return self.emotion_mass - self.neutral_mass

    def ranked(self) -> list[tuple[int, int, float]]:
        """(layer, head, mean Δattention), largest first."""
        mean = self.deltas.mean(-1)
        order = np.argsort(-mean, axis=None, kind="stable")
        return [(int(i // mean.shape[1]), int(i % mean.shape[1]), float(mean.flat[i])) for i in order]


def _normalized_with_map(text: str) -> tuple[str, list[int]]:
    """``normalize`` applied per character, with the original index of every output character."""

    out, where = [], []
    for i, ch in enumerate(text):
        n = normalize(ch)
        out.append(n)
        where.extend([i] * len(n))
    norm = "".join(out)
    if normalize(norm) != norm:  # composition across characters: offsets would not map back
        raise ValueError(f"prompt {text!r}: cannot map normalised keyword matches back to its characters")
    return norm, where


def template_suffix(tokenizer: Any, prompt_format: str) -> str:
    """What the prompt format puts after the prompt's text (the same for every prompt)."""

    sentinel = "\x00prompt\x00"
    return format_prompts(tokenizer, [sentinel], prompt_format).texts[0].split(sentinel, 1)[1]


def prompt_tokens(
    tokenizer: Any, templated: str, prompt: str, matcher: PhraseMatcher, add_special_tokens: bool, suffix: str = ""
) -> PromptTokens:
    """Locate the prompt's text (just before the template's ``suffix``) and its keyword tokens
    inside the tokenized ``templated`` string."""
    start = len(templated) - len(suffix) - len(prompt)
    if start < 0 or templated[start : start + len(prompt)] != prompt or not templated.endswith(suffix):
        raise ValueError(f"prompt {prompt!r} does not occur verbatim before the end of its templated text")
    end = start + len(prompt)
    norm, where = _normalized_with_map(prompt)
    spans = [(start + where[m.start], start + where[m.start + len(m.phrase) - 1] + 1) for m in matcher.matches(norm)]
    offsets = tokenizer(templated, return_offsets_mapping=True, add_special_tokens=add_special_tokens)["offset_mapping"]
    inside = [k for k, (a, b) in enumerate(offsets) if a < end and b > start and b > a]
    if not inside:
        raise ValueError(f"prompt {prompt!r} has no tokens of its own after templating")
    keywords = tuple(k for k in inside if any(offsets[k][0] < b and offsets[k][1] > a for a, b in spans))
    return PromptTokens(len(offsets), inside[0], inside[-1], keywords)


def last_position_attention(
    handle: ModelHandle, fmt: FormattedPrompts, texts: Sequence[str] | None = None, *, batch_size: int = 32
) -> list[torch.Tensor]:
    """Per templated text of ``fmt`` (a :class:`~harness.run.templating.FormattedPrompts`; ``texts``
    picks some of them): attention rows from its final position, ``[n_layers, n_heads, n_tokens]``.

    Read at ``blocks.L.attn.hook_pattern`` (hooking it makes the layer compute the pattern
    explicitly; the output is unchanged). Padding is stripped, so row k is the text's token k.
    """

    n_layers = handle.shape.n_layers
    texts = list(fmt.texts if texts is None else texts)
    out: list[torch.Tensor] = []
    for lo in range(0, len(texts), batch_size):
        chunk = texts[lo : lo + batch_size]
        enc = fmt.encode(handle.tokenizer, chunk)
        rows: dict[int, torch.Tensor] = {}

        def grab(pattern, hook, rows=rows):
            rows[int(hook.name.split(".")[1])] = pattern[:, :, -1, :].float().clone()

        hooks = [(act_name("pattern", layer), grab) for layer in range(n_layers)]
        mask = enc["attention_mask"]
        with torch.no_grad(), handle.hooked.hooks(fwd_hooks=hooks):
            handle.model(
                input_ids=enc["input_ids"], attention_mask=mask, position_ids=position_ids(mask), logits_to_keep=1
            )
        stacked = torch.stack([rows[layer] for layer in range(n_layers)], 1)  # [b, L, H, seq]
        for b in range(len(chunk)):
            length = int(mask[b].sum())
            out.append(stacked[b, :, :, -length:])
    return out


def _attention_rows(
    handle: ModelHandle, fmt: FormattedPrompts, tokens: list[PromptTokens], which: list[int]
) -> list[torch.Tensor]:
    """:func:`last_position_attention` for prompts ``which`` of ``fmt``, checked against their token counts."""
    rows = last_position_attention(handle, fmt, [fmt.texts[i] for i in which])
    for a, i in zip(rows, which):
        if a.shape[-1] != tokens[i].n_tokens:
            raise RuntimeError(f"attention row length {a.shape[-1]} != {tokens[i].n_tokens} tokens")
    return rows


REFERENCES = ("pooled", "paired")
MIN_TARGETS_PER_DISTANCE = 10


def screen(
    handle: ModelHandle,
    emotion_prompts: Sequence[str],
    neutral_prompts: Sequence[str],
    emotion: str,
    *,
    target: str = "neutral",
    reference: str = "pooled",
    prompt_format: str | None = None,
) -> Screen:
    """Δattention for every head against a ``paired`` (emotion prompt i with target prompt i) or
    ``pooled`` reference (see the module docstring)."""

    if reference not in REFERENCES:
        raise ValueError(f"reference {reference!r} is not one of {', '.join(REFERENCES)}")
    if reference == "pooled":
        emo, neu = list(emotion_prompts), list(neutral_prompts)
    else:
        n = min(len(emotion_prompts), len(neutral_prompts))
        emo, neu = list(emotion_prompts)[:n], list(neutral_prompts)[:n]
    matcher = PhraseMatcher(load_keywords(emotion).keywords)
    fmt = prompt_format or handle.prompt_format
    fe, fn = format_prompts(handle.tokenizer, emo, fmt), format_prompts(handle.tokenizer, neu, fmt)
    for f, texts in ((fe, emo), (fn, neu)):
        f.check_fits(handle, prompts=texts)
    suffix = template_suffix(handle.tokenizer, fmt)
    te = [prompt_tokens(handle.tokenizer, t, p, matcher, fe.add_special_tokens, suffix) for t, p in zip(fe.texts, emo)]
    tn = [prompt_tokens(handle.tokenizer, t, p, matcher, fn.add_special_tokens, suffix) for t, p in zip(fn.texts, neu)]
    if reference == "pooled":
        return _pooled(handle, emotion, target, fe, fn, te, tn)
    n = len(emo)
    # keyword tokens whose distance from the end of the text does not fit into the paired
    # target text are dropped on both sides, so both masses sum over the same distances
    keywords = [
        [k for k in te[i].keywords if tn[i].text_last - (te[i].text_last - k) >= tn[i].text_first] for i in range(n)
    ]
    used = [i for i in range(n) if keywords[i]]
    excluded = [i for i in range(n) if not keywords[i]]
    if not used:
        raise ValueError(
            f"none of the {n} {emotion} prompts has a {emotion} keyword token within the "
            f"length of its paired {target} prompt"
        )
    ae, an = _attention_rows(handle, fe, te, used), _attention_rows(handle, fn, tn, used)
    shape = handle.shape
    me = np.zeros((shape.n_layers, shape.n_heads, len(used)))
    mn = np.zeros_like(me)
    n_kw, n_clipped = [], []
    for j, i in enumerate(used):
        e, m = te[i], tn[i]
        keep = keywords[i]
        me[:, :, j] = ae[j][:, :, keep].sum(-1).numpy()
        mn[:, :, j] = an[j][:, :, [m.text_last - (e.text_last - k) for k in keep]].sum(-1).numpy()
        n_kw.append(len(keep))
        n_clipped.append(len(e.keywords) - len(keep))
    no_keyword = [i for i in excluded if not te[i].keywords]
    return Screen(emotion, target, me, mn, used, excluded, no_keyword, n_kw, n_clipped)


def _pooled(
    handle: ModelHandle,
    emotion: str,
    target: str,
    fe: FormattedPrompts,
    fn: FormattedPrompts,
    te: list[PromptTokens],
    tn: list[PromptTokens],
) -> Screen:
    lengths = np.array([t.text_last - t.text_first + 1 for t in tn])
    need = min(MIN_TARGETS_PER_DISTANCE, len(tn))
    n_dist = int(sum((lengths > d).sum() >= need for d in range(int(lengths.max()))))
    keywords = [[k for k in t.keywords if t.text_last - k < n_dist] for t in te]
    used = [i for i, k in enumerate(keywords) if k]
    excluded = [i for i, k in enumerate(keywords) if not k]
    if not used:
        raise ValueError(
            f"none of the {len(te)} {emotion} prompts has a {emotion} keyword token within "
            f"{n_dist} tokens of the end (the distances at least {need} {target} prompts reach)"
        )
    shape = handle.shape
    rows = np.full((len(tn), shape.n_layers, shape.n_heads, n_dist), np.nan)
    for j, (a, t) in enumerate(zip(_attention_rows(handle, fn, tn, list(range(len(tn)))), tn)):
        reach = min(n_dist, int(lengths[j]))
        rows[j, :, :, :reach] = a[:, :, [t.text_last - d for d in range(reach)]].numpy()
    counts = np.zeros((len(used), n_dist))
    me = np.zeros((shape.n_layers, shape.n_heads, len(used)))
    for j, (a, i) in enumerate(zip(_attention_rows(handle, fe, te, used), used)):
        me[:, :, j] = a[:, :, keywords[i]].sum(-1).numpy()
        np.add.at(counts[j], [te[i].text_last - k for k in keywords[i]], 1)
    expected = np.nanmean(rows, 0)  # [L, H, D]: mean mass at each distance over the target prompts
    mn = np.einsum("lhd,nd->lhn", expected, counts)
    no_keyword = [i for i in excluded if not te[i].keywords]
    return Screen(
        emotion,
        target,
        me,
        mn,
        used,
        excluded,
        no_keyword,
        [len(keywords[i]) for i in used],
        [len(te[i].keywords) - len(keywords[i]) for i in used],
        "pooled",
        rows,
        counts,
    )


def mean_ci(
    result: Screen, *, seed: int, n_resamples: int = 2000, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """95% CI of mean Δattention per head, ``(low, high)`` arrays ``[n_layers, n_heads]``.

    ``paired``: BCa bootstrap over pairs (:func:`harness.stats.bootstrap_mean_ci`). ``pooled``:
    percentile bootstrap resampling the emotion prompts and the target prompts independently
    (the reference is an estimate too), recomputing the per-distance reference each time.
    """

    if result.reference == "paired":
        return bootstrap_mean_ci_grid(result.deltas, seed=seed, confidence=confidence, n_resamples=n_resamples)
    n_layers, n_heads, _ = result.deltas.shape
    rng = np.random.default_rng(seed)
    rows, counts, me = result.target_rows, result.distance_counts, result.emotion_mass
    assert rows is not None and counts is not None  # the pooled reference records both
    stats = np.empty((n_resamples, n_layers, n_heads))
    for b in range(n_resamples):
        e = rng.integers(0, me.shape[-1], me.shape[-1])
        t = rng.integers(0, rows.shape[0], rows.shape[0])
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a distance no resampled target reaches
            expected = np.nanmean(rows[t], 0)
        stats[b] = me[:, :, e].mean(-1) - np.einsum("lhd,d->lh", np.nan_to_num(expected), counts[e].mean(0))
    alpha = (1 - confidence) / 2
    return np.quantile(stats, alpha, axis=0), np.quantile(stats, 1 - alpha, axis=0)


def compare_with_sweep(screen_means: np.ndarray, sweep_doc: dict, top: int = 10) -> dict:
    """Spearman correlation of mean Δattention with a sweep's mean causal Δ, and top-``top`` overlap."""
    from scipy.stats import spearmanr

    causal = np.asarray(sweep_doc["deltas"], dtype=float).mean(-1)
    if causal.shape != screen_means.shape:
        raise ValueError(f"sweep grid {causal.shape} does not match the screen's {screen_means.shape}")
    rho, p = spearmanr(screen_means.ravel(), causal.ravel())
    by_screen = set(np.argsort(-screen_means, axis=None)[:top].tolist())
    by_sweep = set(np.argsort(-causal, axis=None)[:top].tolist())
    return {"spearman_rho": float(rho), "spearman_p": float(p), "top": top, "top_overlap": len(by_screen & by_sweep)}


def check_sweep_matches(sweep_doc: dict, handle: ModelHandle, emotion: str) -> None:
    """A sweep compared with this screen must be of the same emotion, weights and head grid
    (a sweep of other weights with the same grid would give a meaningless correlation)."""
    if sweep_doc["emotion"] != emotion:
        raise ValueError(f"it sweeps emotion {sweep_doc['emotion']!r}, this screen {emotion!r}")
    theirs = (sweep_doc.get("model") or {}).get("weights_sha256")
    if theirs is not None and theirs != handle.weights_sha256:
        raise ValueError(
            f"it comes from other weights ({str(theirs)[:12]}…) than {handle.name}'s ({handle.weights_sha256[:12]}…)"
        )
    grid = np.asarray(sweep_doc["deltas"]).shape[:2]
    if grid != (handle.shape.n_layers, handle.shape.n_heads):
        raise ValueError(
            f"sweep grid {grid} does not match {handle.name}'s "
            f"{(handle.shape.n_layers, handle.shape.n_heads)} (layers, heads)"
        )
