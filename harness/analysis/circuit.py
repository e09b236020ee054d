"""How one head acts: direct logit attribution (DLA), its OV circuit and its QK behaviour.

All three read one head ``L:H`` (on GQA models its values come from KV head ``H // group``).

**DLA** (direct logit attribution). The target prompts are generated greedily (the baseline
of a claim, ``max_tokens`` tokens); one forward pass over prompt + generation then gives, at
every position that predicts a generated token, the head's write into the residual stream
``w = z_H · W_O[H]`` (bias excluded; on Gemma 2/3 through the attention-output norm with its
scale frozen) and the final residual stream ``x``. The head's direct effect on the logits is
``a = W_U · (g ⊙ c(w) / s(x))``: the final norm's scale ``s(x)`` is **frozen** at the run's
value (the standard linearisation; ``c`` centres for LayerNorm, ``g`` is the gain). ``a`` is
exactly the logit change if ``w`` alone were removed from the direct path with the scale
held, which a test checks against the model's own modules on every tiny architecture. From
``a`` and the run's next-token distribution ``p``, the head's direct contribution to the
log-probability of the emotion's keyword first-tokens ``K`` (the quantity the claims' log-prob
metrics track) is, to first order, ``Σ_{k∈K} p_k a_k / p(K) − Σ_v p_v a_v`` (reported per
generated position and per prompt, with a bootstrap CI over prompts). The same is reported
at the final position of the source (emotion) prompts: what the head writes when it reads
them. Logits are before any final soft-capping (Gemma 2).

**OV**. For every token of the source prompts' own text (no template): the token's embedding
through layer ``L``'s input norm, the head's value map (its KV head's slice of the value
projection, bias included) and output map, the attention-output norm where there is one,
and the final norm's gain, then the unembedding; each row is centred over the vocabulary.
Reported: the tokens the head writes most, averaged over the source tokens' occurrences (what
it writes if it attends to the source prompts' words), the same for the target prompts'
tokens, the mean centred logit of the keyword tokens in both, and the share of source tokens
whose own token is among their top 10 outputs (a copying score). This is the usual
"full OV circuit" approximation (positional embeddings and earlier layers ignored).

**QK** (where the head looks; from its attention pattern, since rotary positions make the
weights alone position-dependent). In the same greedy runs, from every query position that
predicts a generated token: the attention mass on the first token (a frequent attention
sink), on the prompt's own text (after the first token), on the text positions a z-patch with ``end`` alignment
overwrites from source prompt ``i`` (the last ``min(Lt, Ls)`` prompt positions), on the rest
of the prompt (the template), on the tokens generated so far, and on keyword tokens (prompt
words matching the emotion's keyword list, generated tokens that are keyword first-tokens).
Also from the final position of each source prompt: its mass on that prompt's keyword tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from harness.analysis.screen import prompt_tokens, template_suffix
from harness.metrics.next_token import keyword_token_ids
from harness.metrics.text import PhraseMatcher
from harness.model.loading import ModelHandle
from harness.model.names import act_name
from harness.model.weights import (
    FrozenNorm,
    final_norm,
    head_output,
    input_norm,
    output_norm,
    residual_write,
    unembed,
    value_vectors,
)
from harness.patch.source import aligned_positions
from harness.run.generation import GenerationConfig, generate, position_ids
from harness.run.prompts import load_keywords
from harness.run.templating import format_prompts
from harness.stats import bootstrap_mean_ci

ANALYSES = ("dla", "ov", "qk")


@dataclass
class Runs:
    """Greedy runs of the target prompts as one left-padded batch of prompt + generated tokens
    (the last generated token left out: nothing predicts beyond it)."""

    ids: torch.Tensor  # [n, T]
    mask: torch.Tensor  # [n, T]
    pads: list[int]
    prompt_lengths: list[int]
    generated: list[list[int]]  # per row, the generated token ids

    def query_positions(self, row: int) -> list[int]:
        """Padded positions whose logits predict the row's generated tokens, in order."""
        start = self.pads[row] + self.prompt_lengths[row] - 1
        return [start + k for k in range(len(self.generated[row]))]


def greedy_runs(handle: ModelHandle, prompts: Sequence[str], max_tokens: int) -> Runs:
    result = generate(handle, list(prompts), GenerationConfig(max_tokens=max_tokens))
    rows = [list(g.prompt_token_ids) + list(g.token_ids[:-1]) for g in result.generations]
    width = max(len(r) for r in rows)
    pad = handle.tokenizer.pad_token_id or 0
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return Runs(
        ids,
        mask,
        [width - len(r) for r in rows],
        [len(g.prompt_token_ids) for g in result.generations],
        [list(g.token_ids) for g in result.generations],
    )


def _forward(
    handle: ModelHandle, ids: torch.Tensor, mask: torch.Tensor, hook_names: Sequence[str]
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    store: dict[str, torch.Tensor] = {}
    hooks = [(name, lambda t, hook, name=name: store.__setitem__(name, t.detach())) for name in hook_names]
    device = handle.model.device
    with torch.no_grad(), handle.hooked.hooks(fwd_hooks=hooks):
        logits = handle.model(
            input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=position_ids(mask).to(device)
        ).logits
    return store, logits.detach()


def direct_logits(
    handle: ModelHandle, layer: int, head: int, z: torch.Tensor, attn_out: torch.Tensor, resid: torch.Tensor
) -> torch.Tensor:
    """``a``: the head's direct effect on the logits at each position (see the module docstring):
    ``z`` ``[..., d_head]`` its output, ``attn_out`` ``[..., d_model]`` its layer's attention output
    (for models that normalise it), ``resid`` ``[..., d_model]`` the final residual stream."""
    hooked = handle.hooked
    frozen = FrozenNorm.of(final_norm(hooked))
    write = residual_write(hooked, layer, head, z, attn_out)
    return unembed(hooked, frozen.linear(write, frozen.scale(resid)))


def keyword_share(a: torch.Tensor, logits: torch.Tensor, keyword_ids: torch.Tensor) -> torch.Tensor:
    """First-order change of log p(K) when the logits move by ``a`` (both ``[..., vocab]``)."""
    logp = logits.float().log_softmax(-1)
    p = logp.exp()
    q = (logp[..., keyword_ids] - torch.logsumexp(logp[..., keyword_ids], -1, keepdim=True)).exp()
    return (q * a[..., keyword_ids]).sum(-1) - (p * a).sum(-1)


def _summary(per_prompt: np.ndarray, seed: int) -> dict:
    ci = bootstrap_mean_ci(per_prompt, seed=seed)
    return {"mean": ci.mean, "ci_low": ci.ci_low, "ci_high": ci.ci_high, "n_prompts": int(per_prompt.size)}


def _decode(handle: ModelHandle, ids: Iterable[int] | torch.Tensor) -> list[str]:
    return [handle.tokenizer.decode([int(i)]) for i in ids]


def dla(
    handle: ModelHandle,
    targets: Sequence[str],
    sources: Sequence[str],
    emotion: str,
    layer: int,
    head: int,
    *,
    max_tokens: int = 30,
    seed: int = 0,
    top: int = 10,
) -> dict:
    """Direct logit attribution of head ``layer:head`` (see the module docstring)."""
    shape = handle.shape
    kw = torch.tensor(keyword_token_ids(handle.tokenizer, emotion))
    names = [
        act_name("z", layer),
        act_name("attn_out", layer),
        act_name("resid_post", shape.n_layers - 1),
    ]
    runs = greedy_runs(handle, targets, max_tokens)
    store, logits = _forward(handle, runs.ids, runs.mask, names)
    z, attn_out, resid = (store[n].float().cpu() for n in names)
    logits = logits.float().cpu()
    per_prompt: list[float] = []
    by_step: list[list[float]] = [[] for _ in range(max_tokens)]
    promoted = torch.zeros(logits.shape[-1])
    count = 0
    for r in range(runs.ids.shape[0]):
        pos = runs.query_positions(r)
        a = direct_logits(handle, layer, head, z[r, pos, head], attn_out[r, pos], resid[r, pos])
        share = keyword_share(a, logits[r, pos], kw)
        per_prompt.append(float(share.mean()))
        for k, v in enumerate(share.tolist()):
            by_step[k].append(v)
        promoted += (a - a.mean(-1, keepdim=True)).sum(0)
        count += len(pos)
    promoted /= max(count, 1)
    order = promoted.argsort(descending=True)[:top]
    fs = format_prompts(handle.tokenizer, list(sources), handle.prompt_format)
    enc = fs.encode(handle.tokenizer)
    s_store, s_logits = _forward(handle, enc["input_ids"], enc["attention_mask"], names)
    sz, sa, sr = (s_store[n].float().cpu()[:, -1] for n in names)
    s_share = keyword_share(direct_logits(handle, layer, head, sz[:, head], sa, sr), s_logits[:, -1].float().cpu(), kw)
    return {
        "measure": "first-order change of the keyword first-tokens' log-probability from the head's direct path "
        "(final norm scale frozen), nats",
        "target_generated": {
            **_summary(np.array(per_prompt), seed),
            "per_prompt": per_prompt,
            "per_step_mean": [float(np.mean(v)) for v in by_step if v],
        },
        "source_final_position": {**_summary(s_share.numpy(), seed), "per_prompt": s_share.tolist()},
        "promoted_tokens": [
            {"token": t, "logit": float(promoted[i])}
            for t, i in zip(_decode(handle, order), order.tolist(), strict=True)
        ],
    }


def _text_tokens(handle: ModelHandle, prompts: Iterable[str]) -> list[int]:
    return [t for p in prompts for t in handle.tokenizer(p, add_special_tokens=False).input_ids]


def ov_logits(handle: ModelHandle, layer: int, head: int, token_ids: torch.Tensor) -> torch.Tensor:
    """Centred logits ``[n, vocab]`` the head writes when it attends fully to each token (see the
    module docstring: input norm, value and output maps, output norm, final norm's gain)."""
    hooked = handle.hooked
    group = handle.shape.group_size
    dev = handle.model.device
    with torch.no_grad():
        emb = handle.model.get_input_embeddings()(token_ids.to(dev))
        v = value_vectors(hooked, layer, input_norm(hooked, layer)(emb))[:, head // group]
        out = head_output(hooked, layer, head, v)
        post = output_norm(hooked, layer)
        if post is not None:
            out = post(out)
        frozen = FrozenNorm.of(final_norm(hooked))
        logits = unembed(hooked, frozen.linear(out, torch.ones(1, 1, device=out.device))).cpu()
    return logits - logits.mean(-1, keepdim=True)


def ov(
    handle: ModelHandle,
    targets: Sequence[str],
    sources: Sequence[str],
    emotion: str,
    layer: int,
    head: int,
    *,
    top: int = 10,
) -> dict:
    """The head's OV circuit on the source and target prompts' tokens (see the module docstring)."""
    kw = torch.tensor(keyword_token_ids(handle.tokenizer, emotion))
    out: dict = {"measure": "centred logits the head writes when it attends fully to a token (full OV circuit)"}
    for name, prompts in (("source", sources), ("target", targets)):
        tokens = _text_tokens(handle, prompts)
        unique, counts = torch.tensor(tokens).unique(return_counts=True)
        total: torch.Tensor | None = None
        copied = 0
        for start in range(0, unique.numel(), 256):
            part = unique[start : start + 256]
            logits = ov_logits(handle, layer, head, part)
            weighted = (logits * counts[start : start + 256, None].float()).sum(0)
            total = weighted if total is None else total + weighted
            tops = logits.topk(top, dim=-1).indices
            copied += int(((tops == part[:, None]).any(-1).float() * counts[start : start + 256].float()).sum())
        assert total is not None  # every prompt has a token
        mean = total / counts.sum()
        order = mean.argsort(descending=True)[:top]
        rank = (mean[None, :] > mean[kw][:, None]).sum(-1).float()  # 0 = the top token
        out[name] = {
            "n_tokens": int(counts.sum()),
            "n_unique": int(unique.numel()),
            "top_tokens": [
                {"token": t, "logit": float(mean[i])}
                for t, i in zip(_decode(handle, order), order.tolist(), strict=True)
            ],
            "keyword_mean_logit": float(mean[kw].mean()),
            "keyword_median_rank": float(rank.median()),
            "copying_share": copied / int(counts.sum()),
        }
    out["keyword_logit_source_minus_target"] = out["source"]["keyword_mean_logit"] - out["target"]["keyword_mean_logit"]
    return out


# first_token, prompt_text, template and generated partition the context (their masses sum to 1);
# aligned_with_source and keywords are views across them
QK_PARTS = ("first_token", "prompt_text", "aligned_with_source", "template", "generated", "keywords")


def qk(
    handle: ModelHandle,
    targets: Sequence[str],
    sources: Sequence[str],
    emotion: str,
    layer: int,
    head: int,
    *,
    max_tokens: int = 30,
    seed: int = 0,
) -> dict:
    """Where the head attends, from generated positions and from the source prompts' final position."""
    tok = handle.tokenizer
    fmt = handle.prompt_format
    matcher = PhraseMatcher(load_keywords(emotion).keywords)
    kw = set(keyword_token_ids(tok, emotion))
    suffix = template_suffix(tok, fmt)
    ft, fs = format_prompts(tok, list(targets), fmt), format_prompts(tok, list(sources), fmt)
    t_tokens = [
        prompt_tokens(tok, t, p, matcher, ft.add_special_tokens, suffix) for t, p in zip(ft.texts, targets, strict=True)
    ]
    s_tokens = [
        prompt_tokens(tok, t, p, matcher, fs.add_special_tokens, suffix) for t, p in zip(fs.texts, sources, strict=True)
    ]
    runs = greedy_runs(handle, targets, max_tokens)
    name = act_name("pattern", layer)
    store, _ = _forward(handle, runs.ids, runs.mask, [name])
    pattern = store[name][:, head].float().cpu()  # [n, q, k]
    per_part: dict[str, list[float]] = {p: [] for p in QK_PARTS}
    by_step: dict[str, list[list[float]]] = {p: [[] for _ in range(max_tokens)] for p in QK_PARTS}
    for r, pt in enumerate(t_tokens):
        pad, lt = runs.pads[r], runs.prompt_lengths[r]
        ls = s_tokens[r % len(s_tokens)].n_tokens
        aligned = (aligned_positions("end", lt, ls)[0] + pad).tolist()
        text = [t for t in range(pad + pt.text_first, pad + pt.text_last + 1) if t != pad]  # parts disjoint
        prompt = set(range(pad, pad + lt))
        kw_prompt = [pad + k for k in pt.keywords]
        rows: dict[str, list[float]] = {p: [] for p in QK_PARTS}
        for k, q in enumerate(runs.query_positions(r)):
            att = pattern[r, q]
            gen = list(range(pad + lt, q + 1))
            kw_gen = [g for g in gen if int(runs.ids[r, g]) in kw]
            parts = {
                "first_token": att[pad].item(),
                "prompt_text": att[text].sum().item(),
                "aligned_with_source": att[aligned].sum().item(),
                "template": att[sorted(prompt - set(text) - {pad})].sum().item()
                if len(prompt) > len(text) + 1
                else 0.0,
                "generated": att[gen].sum().item() if gen else 0.0,
                "keywords": att[kw_prompt + kw_gen].sum().item() if kw_prompt or kw_gen else 0.0,
            }
            for p, v in parts.items():
                rows[p].append(v)
                by_step[p][k].append(v)
        for p in QK_PARTS:
            per_part[p].append(float(np.mean(rows[p])))
    enc = fs.encode(tok)
    s_store, _ = _forward(handle, enc["input_ids"], enc["attention_mask"], [name])
    s_pattern = s_store[name][:, head, -1].float().cpu()  # [n, k] from the final position
    width = enc["input_ids"].shape[1]
    source_kw = [
        float(s_pattern[i, [width - st.n_tokens + k for k in st.keywords]].sum()) for i, st in enumerate(s_tokens)
    ]
    return {
        "measure": "attention mass of the head from each query position",
        "from_generated_positions": {
            p: {**_summary(np.array(v), seed), "per_step_mean": [float(np.mean(s)) for s in by_step[p] if s]}
            for p, v in per_part.items()
        },
        "source_final_position_on_keywords": {
            **_summary(np.array(source_kw), seed),
            "prompts_with_keywords": sum(1 for st in s_tokens if st.keywords),
        },
    }
