"""Batched generation with the KV cache and TransformerLens hooks active at every step.

The decode loop is ours (see :mod:`harness.model.hooks` for why not TransformerBridge.generate);
the model forward and the ``DynamicCache`` are Hugging Face's, driven the way
``transformers.GenerationMixin.generate`` drives them (left padding, position ids from the
attention mask's cumulative sum, ``logits_to_keep=1``, finished rows fed the pad token), so
greedy output equals HF ``generate`` token for token (tested against a subprocess that never
imports TransformerLens).

Rows and randomness. Each prompt is expanded into ``samples`` rows. A row samples from its
own ``torch.Generator`` seeded from ``(seed, sample index, prompt text)`` (:func:`row_seed`),
so a prompt's sample does not depend on its batch neighbours or its position in the list, and
a baseline run and a patched run of the same prompt draw the same random numbers: the patch
is the only difference between them.

Hooks. ``hooks`` is a list of ``(hook_name, fn)`` pairs, or a callable that receives the
chunk's :class:`BatchInfo` and returns such a list (a patch that needs to know which prompt
sits in which row, or how much left padding it has, uses this). The hooks are active at
prefill and at every decode step; ``BatchInfo.step`` is 0 during prefill and ``k`` during the
k-th decode step. What each hook point sees at each step is documented in
:mod:`harness.model.hooks`.

Tracked log-probabilities. ``track={name: token ids}`` records, for every generated token,
``log sum_{t in ids} p(t | prefix)`` from the step's logits before temperature and filtering
(the model's own distribution, patched when the run is): ``Generation.tracked[name]`` holds
one value per generated token. Model-side metrics over 30 tokens read it (see
:mod:`harness.metrics.next_token`); it costs one log-softmax per step and changes no token.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import ConfigDict, model_validator

from harness.core.errors import UserError
from harness.model.loading import ModelHandle
from harness.run.kvcache import growing_cache
from harness.run.settings import MIN_TEMPERATURE, SamplingSettings
from harness.run.templating import format_prompts

HookList = list[tuple[str | Callable, Callable]]


class HookSet(list):
    """A hook list plus hooks on the model's own modules, for a run that reshapes the batch inside
    the model (path patching runs several copies of the residual stream above a layer):
    ``install(handle)`` registers them and returns their removable handles; they are removed when
    the chunk ends. Such runs share a batch (:func:`generate_together`) only when they have the
    same ``pack_key``: ``together(sets, n)`` then makes the one hook set of their batch (run
    ``a``'s rows ``a*n..(a+1)*n``); without a key a run runs alone."""

    def __init__(
        self,
        hooks: Iterable[tuple[str | Callable, Callable]] = (),
        install: Callable[[ModelHandle], list] | None = None,
        *,
        pack_key: tuple | None = None,
        together: Callable[[list[HookSet], int], HookSet] | None = None,
        width: int = 1,
    ) -> None:
        super().__init__(hooks)
        self.install = install
        self.width = width  # rows inside the model per row of the run (a path run's streams)
        self.pack_key = pack_key if together is not None else None
        self.together = together


class GenerationConfig(SamplingSettings):
    """Decoding settings of one ``generate`` call: the shared :class:`SamplingSettings` (greedy
    by default here) plus how rows are batched and whether a row stops at EOS."""

    model_config = ConfigDict(frozen=True, strict=False, extra="forbid")  # numpy ints from callers are fine

    do_sample: bool = False
    batch_size: int = 128  # rows per forward pass
    stop_at_eos: bool = True

    @classmethod
    def from_settings(cls, settings: SamplingSettings, **extra: Any) -> GenerationConfig:
        """The decoder's settings for a claim or a run configuration (``extra``: batch_size, ...)."""
        return cls(**settings.sampling(), **extra)

    @model_validator(mode="after")
    def _check(self) -> GenerationConfig:
        checks = [
            (self.max_tokens >= 1, "max_tokens", self.max_tokens, "an integer >= 1"),
            (
                MIN_TEMPERATURE <= self.temperature < math.inf,
                "temperature",
                self.temperature,
                f"finite and >= {MIN_TEMPERATURE} (use greedy decoding for 0)",
            ),
            (self.top_k >= 0, "top_k", self.top_k, ">= 0 (0 disables top-k)"),
            (0 < self.top_p <= 1, "top_p", self.top_p, "in (0, 1]"),
            (self.samples >= 1, "samples", self.samples, "an integer >= 1"),
            (self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1"),
            (self.seed >= 0, "seed", self.seed, "an integer >= 0"),
        ]
        for ok, name, value, allowed in checks:
            if not ok:
                raise UserError(f"{name}={value!r} is invalid: must be {allowed}")
        if not self.do_sample and self.samples > 1:
            raise UserError(
                f"samples={self.samples} with greedy decoding gives identical samples; enable sampling or use samples=1"
            )
        return self

    def to_dict(self) -> dict:
        return self.model_dump()


@dataclass
class BatchInfo:
    """What a hook factory knows about the chunk being generated."""

    rows: tuple[tuple[int, int], ...]  # (prompt_index, sample_index) of each batch row
    prompt_lengths: torch.Tensor  # [batch] unpadded prompt lengths in tokens
    attention_mask: torch.Tensor  # [batch, padded_prompt_len], 0 on left padding
    step: int = 0  # 0 = prefill; k = k-th decode step

    @property
    def padded_length(self) -> int:
        return self.attention_mask.shape[1]

    @property
    def pad_lengths(self) -> torch.Tensor:
        return self.padded_length - self.prompt_lengths


@dataclass(frozen=True)
class Generation:
    prompt_index: int
    sample_index: int
    seed: int
    prompt: str  # as given, before templating
    prompt_token_ids: tuple[int, ...]
    token_ids: tuple[int, ...]  # generated tokens, up to and including EOS if it came
    text: str  # generated text, special tokens removed
    stopped_at_eos: bool
    tracked: dict[str, tuple[float, ...]] = field(default_factory=dict)  # per generated token (see above)


@dataclass
class GenerationResult:
    config: GenerationConfig
    prompt_format: str
    generations: list[Generation] = field(default_factory=list)

    def by_prompt(self) -> dict[int, list[Generation]]:
        out: dict[int, list[Generation]] = {}
        for g in self.generations:
            out.setdefault(g.prompt_index, []).append(g)
        return out


def row_seed(seed: int, sample_index: int, prompt: str) -> int:
    """The 63-bit seed of one (prompt, sample) row; independent of batch and order."""
    digest = hashlib.sha256(f"{seed}\x1f{sample_index}\x1f{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    """Position ids as HF ``generate`` makes them for left padding: cumsum(mask) − 1, 0 on padding."""
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)


def _filter_logits(logits: torch.Tensor, cfg: GenerationConfig) -> torch.Tensor:
    """Temperature, then top-k, then top-p, in HF's order and with HF's tie rules."""
    x = logits if cfg.temperature == 1.0 else logits / cfg.temperature  # x / 1.0 == x, bit for bit
    if cfg.top_k and cfg.top_k < x.shape[-1]:
        kth = torch.topk(x, cfg.top_k, dim=-1).values[..., -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    if cfg.top_p < 1.0:
        sorted_x, order = torch.sort(x, dim=-1, descending=False)
        cum = sorted_x.softmax(dim=-1).cumsum(dim=-1)
        drop_sorted = cum <= (1 - cfg.top_p)
        drop_sorted[..., -1] = False  # always keep the most likely token
        x = x.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    return x


# rows sampled (and tracked) at a time: each row's result is the same in any block (measured
# bit for bit), and 64-row blocks of a 490-row step take 255 us a row against 405 us in one piece
SAMPLE_BLOCK = 64


def _blocks(rows: int, period: int) -> list[tuple[int, int]]:
    """``[start, stop)`` blocks of at most :data:`SAMPLE_BLOCK` rows that never cross a multiple of ``period``."""
    return [
        (s, min(s + SAMPLE_BLOCK, run + period, rows))
        for run in range(0, rows, period)
        for s in range(run, min(run + period, rows), SAMPLE_BLOCK)
    ]


def _next_tokens(
    logits: torch.Tensor, cfg: GenerationConfig, gens: list[torch.Generator], noise: Callable | None = None
) -> torch.Tensor:
    if not cfg.do_sample:
        return logits.argmax(dim=-1)
    rows, vocab = logits.shape

    def probs_of(start: int, stop: int) -> torch.Tensor:
        # on the CPU in float32 whatever the model's device and dtype: each row's generator draws
        # the same numbers everywhere (a no-op for a CPU float32 model)
        return _filter_logits(logits[start:stop].float().cpu(), cfg).softmax(dim=-1)

    if noise is None:
        return torch.cat(
            [
                torch.cat(
                    [
                        torch.multinomial(row, 1, generator=gens[start + r])
                        for r, row in enumerate(probs_of(start, stop))
                    ]
                )
                for start, stop in _blocks(rows, rows)
            ]
        )
    # torch.multinomial's own draw for one sample (see exponential_draws), with the exponentials
    # from ``noise``: a planned arm takes the baseline's, which its rows' generators would repeat.
    # ``noise`` may give one row per run of a batch of k runs (the same draws for every run)
    q = noise(gens, torch.empty(1, vocab).expand(len(gens), vocab))  # (the draws need only a row's shape)
    period = q.shape[0]
    return torch.cat(
        [
            (probs_of(start, stop) / q[start % period : start % period + stop - start]).argmax(dim=-1)
            for start, stop in _blocks(rows, period)
        ]
    )


def exponential_draws(gens: list[torch.Generator], probs: torch.Tensor) -> torch.Tensor:
    """The exponentials ``torch.multinomial(probs[r], 1, generator=gens[r])`` draws, one row per
    generator: it returns ``argmax(probs[r] / q)`` with ``q ~ Exp(1)`` drawn by ``exponential_``
    (PyTorch's one-sample path; :func:`multinomial_is_exponential_argmax` checks it)."""
    return torch.stack([torch.empty_like(probs[r]).exponential_(1, generator=g) for r, g in enumerate(gens)])


@functools.cache
def multinomial_is_exponential_argmax() -> bool:
    """Whether this torch's one-sample ``multinomial`` is ``argmax(p / Exp(1) draws)`` on the same
    generator (so that its random draws can be computed once and shared by several runs)."""
    probs = torch.rand(4096, generator=torch.Generator().manual_seed(1))
    probs[probs < 0.9] = 0
    probs = probs / probs.sum()
    a, b = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    for _ in range(4):
        mine = (probs / exponential_draws([b], probs[None])[0]).argmax()
        if int(torch.multinomial(probs, 1, generator=a)) != int(mine):
            return False
    return True


def _resolve_hooks(hooks: HookList | Callable[[BatchInfo], HookList] | None, info: BatchInfo) -> HookList:
    if hooks is None:
        return []
    resolved = hooks(info) if callable(hooks) else hooks
    return resolved if isinstance(resolved, HookSet) else list(resolved)


StepLogits = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]


def plain_steps(handle: ModelHandle) -> StepLogits:
    """One model forward per step on a fresh KV cache (:func:`harness.run.kvcache.growing_cache`): ``(inputs, mask, position, step)``
    -> the last position's logits. :mod:`harness.run.shared` supplies others; a step function
    with a ``noise(gens, probs)`` attribute supplies the exponentials sampling uses (see
    :func:`exponential_draws`) instead of ``torch.multinomial`` drawing them."""
    model = handle.model
    cache = growing_cache(model.config)
    extra = {"logits_to_keep": 1} if model._supports_logits_to_keep() else {}

    def step_logits(inputs, mask, position, step):
        out = model(input_ids=inputs, attention_mask=mask, position_ids=position, cache=cache, use_cache=True, **extra)
        return out.logits[:, -1, :]

    step_logits.cache = cache  # type: ignore[attr-defined]
    return step_logits


def _generate_chunk(
    handle: ModelHandle,
    enc: Mapping[str, torch.Tensor],
    info: BatchInfo,
    seeds: Sequence[int],
    cfg: GenerationConfig,
    hooks: HookList | Callable[[BatchInfo], HookList] | None,
    progress: Callable[[int], None] | None,
    track: Mapping[str, torch.Tensor],
    steps: StepLogits,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    tok = handle.tokenizer
    ids, mask = enc["input_ids"], enc["attention_mask"]
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    eos = set(_eos_ids(handle))
    pad = tok.pad_token_id
    position = position_ids(mask)
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    eos_ids = torch.tensor(sorted(eos), device=ids.device)
    track = {name: t.to(ids.device) for name, t in track.items()}
    out_tokens: list[torch.Tensor] = []
    tracked: dict[str, list[torch.Tensor]] = {name: [] for name in track}
    resolved = _resolve_hooks(hooks, info)
    with installed(handle, resolved):
        inputs = ids
        for step in range(cfg.max_tokens):
            info.step = step
            logits = steps(inputs, mask, position, step)
            if track:
                parts: dict[str, list[torch.Tensor]] = {name: [] for name in track}
                for start, stop in _blocks(logits.shape[0], logits.shape[0]):
                    logp = logits[start:stop].float().log_softmax(dim=-1)
                    for name, token_ids in track.items():
                        parts[name].append(torch.logsumexp(logp[:, token_ids], dim=-1))
                for name in track:
                    tracked[name].append(torch.cat(parts[name]))
            nxt = _next_tokens(logits, cfg, gens, getattr(steps, "noise", None)).to(ids.device)
            nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
            out_tokens.append(nxt)
            if cfg.stop_at_eos:
                done |= torch.isin(nxt, eos_ids)
            if progress:
                progress(ids.shape[0])  # one token per row (a finished row's pad included)
            if bool(done.all()):
                if progress:
                    progress((cfg.max_tokens - step - 1) * ids.shape[0])
                break
            inputs = nxt[:, None]
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
            position = position[:, -1:] + 1
    return torch.stack(out_tokens, dim=1), {name: torch.stack(v, dim=1) for name, v in tracked.items()}


@contextlib.contextmanager
def installed(handle: ModelHandle, hooks: HookList) -> Iterator[None]:
    """A resolved hook list (or :class:`HookSet`) on the model while the block runs."""
    with handle.hooked.hooks(fwd_hooks=list(hooks)), _module_hooks(hooks, handle):
        yield


@contextlib.contextmanager
def _module_hooks(hooks: HookList, handle: ModelHandle) -> Iterator[None]:
    """A :class:`HookSet`'s hooks on the model's modules, installed for the chunk and removed after."""
    installed = hooks.install(handle) if isinstance(hooks, HookSet) and hooks.install else []
    try:
        yield
    finally:
        for h in installed:
            h.remove()


def _eos_ids(handle: ModelHandle) -> list[int]:
    eos = handle.model.generation_config.eos_token_id
    if eos is None:
        eos = handle.tokenizer.eos_token_id
    return [eos] if isinstance(eos, int) else list(eos)


def _trim(tokens: list[int], eos: set[int]) -> tuple[tuple[int, ...], bool]:
    for i, t in enumerate(tokens):
        if t in eos:
            return tuple(tokens[: i + 1]), True
    return tuple(tokens), False


def generate(
    handle: ModelHandle,
    prompts: Sequence[str],
    config: GenerationConfig = GenerationConfig(),
    *,
    prompt_format: str | None = None,
    hooks: HookList | Callable[[BatchInfo], HookList] | None = None,
    progress: Callable[[int], None] | None = None,
    track: Mapping[str, Sequence[int]] | None = None,
    steps: Callable[[int, dict], StepLogits] | None = None,
) -> GenerationResult:
    """Generate ``config.samples`` continuations per prompt with ``hooks`` active.

    ``track`` (optional) names token-id sets whose log-probability mass is recorded per
    generated token in ``Generation.tracked`` (see the module docstring).
    ``progress`` (optional) is called after each decode step with the tokens it generated (one
    per row; a row that ended is fed padding and counted), adding up to ``rows * max_tokens``
    (``rows``: prompts × samples, times the runs of :func:`generate_together`).
    ``steps`` (optional) makes each chunk's step function from the chunk's first row index and
    its encoding (default :func:`plain_steps`); :mod:`harness.run.shared` uses it to compute the
    layers below a patch once for several runs.
    """
    return generate_together(
        handle, prompts, config, [hooks], prompt_format=prompt_format, progress=progress, track=track, steps=steps
    )[0]


def generate_together(
    handle: ModelHandle,
    prompts: Sequence[str],
    config: GenerationConfig,
    hook_sets: Sequence[HookList | Callable[[BatchInfo], HookList] | None],
    *,
    prompt_format: str | None = None,
    progress: Callable[[int], None] | None = None,
    track: Mapping[str, Sequence[int]] | None = None,
    steps: Callable[..., StepLogits] | None = None,
    parts: Sequence[int] | None = None,
) -> list[GenerationResult]:
    """One run per hook set over the same prompts and settings, in one batch: each chunk's rows
    once per run (run ``a`` in block ``a``), each hook applied to its own run's block only. A run
    equals its own :func:`generate` call wherever the batch size does not change the rounding of
    a row's matrix products (see :func:`harness.run.shared.exact_batch_sizes`); hooks on
    ``hook_pattern`` must be on the same layers in every run (they change how a layer computes).

    ``parts`` (with ``steps``): the runs in consecutive parts of these sizes, each part's hooks
    combined on their own and handed to the step function (``steps(start, enc, part_hooks)``),
    which runs each part's forward with them; nothing is installed for the whole batch. Runs of
    different parts may then hook patterns on different layers or reshape the batch."""
    prompts = list(prompts)
    if not prompts:
        raise UserError("no prompts to generate from (the prompt list is empty)")
    fmt = format_prompts(handle.tokenizer, prompts, prompt_format or handle.prompt_format)
    fmt.check_fits(handle, config.max_tokens, prompts=prompts)
    rows = [(p, s) for p in range(len(prompts)) for s in range(config.samples)]
    k = len(hook_sets)
    if parts is not None and (steps is None or sum(parts) != k or min(parts, default=0) < 1):
        raise ValueError(f"parts {list(parts)} must split the {k} runs, for a step function that runs them")
    results = [GenerationResult(config=config, prompt_format=fmt.format) for _ in range(k)]
    eos = set(_eos_ids(handle))
    track_ids = {name: _token_ids(handle, name, ids) for name, ids in (track or {}).items()}
    with torch.no_grad():
        for start in range(0, len(rows), config.batch_size):
            chunk = rows[start : start + config.batch_size]
            texts = [fmt.texts[p] for p, _ in chunk]
            enc_cpu = fmt.encode(handle.tokenizer, texts)
            enc = _on_device(enc_cpu, handle)
            mask = enc["attention_mask"]
            info = BatchInfo(rows=tuple(chunk), prompt_lengths=enc_cpu["attention_mask"].sum(-1), attention_mask=mask)
            seeds = [row_seed(config.seed, s, prompts[p]) for p, s in chunk]
            batch = enc if k == 1 else {"input_ids": enc["input_ids"].repeat(k, 1), "attention_mask": mask.repeat(k, 1)}
            if parts is not None:
                assert steps is not None  # checked above: parts come with a step function
                runner = steps(start, enc, _part_hooks(hook_sets, parts, info, len(chunk)))
                hooks = None
            else:
                runner = steps(start, enc) if steps is not None else plain_steps(handle)
                hooks = hook_sets[0] if k == 1 else _blockwise([_resolve_hooks(h, info) for h in hook_sets], len(chunk))
            tokens, tracked = _generate_chunk(
                handle, batch, info, seeds * k, config, hooks, progress, track_ids, runner
            )
            tokens, tracked = tokens.cpu(), {name: v.cpu() for name, v in tracked.items()}
            for a, result in enumerate(results):
                block = slice(a * len(chunk), (a + 1) * len(chunk))
                _collect(
                    handle,
                    result,
                    chunk,
                    enc_cpu,
                    seeds,
                    prompts,
                    tokens[block],
                    {name: v[block] for name, v in tracked.items()},
                    eos,
                    config,
                )
    return results


def _on_device(enc: Mapping[str, torch.Tensor], handle: ModelHandle) -> Mapping[str, torch.Tensor]:
    """The tokenizer's tensors on the model's device (as they are on the CPU)."""
    device = getattr(handle, "device", "cpu")
    if device == "cpu":
        return enc
    return {key: value.to(device) for key, value in enc.items()}


def _part_hooks(hook_sets: Sequence[Any], parts: Sequence[int], info: BatchInfo, n: int) -> list[HookList]:
    """Each part's runs' hooks, combined for that part's batch (run ``a`` of a part in its block ``a``)."""
    resolved = [_resolve_hooks(h, info) for h in hook_sets]
    out, start = [], 0
    for size in parts:
        own = resolved[start : start + size]
        out.append(own[0] if size == 1 else _blockwise(own, n))
        start += size
    return out


def _blockwise(per_run: list[HookList], n: int) -> HookList:
    """One hook per hook point for a batch of runs: run ``a``'s hooks see rows ``a*n..(a+1)*n``."""
    by_name: dict[str, list[tuple[int, Callable]]] = {}
    if any(isinstance(hooks, HookSet) and hooks.install for hooks in per_run):
        keys = {hooks.pack_key if isinstance(hooks, HookSet) else None for hooks in per_run}
        first = per_run[0]
        if None in keys or len(keys) > 1 or not isinstance(first, HookSet) or first.together is None:
            raise ValueError(
                "runs that reshape the batch inside the model (HookSet.install) share a batch only "
                "with runs of the same pack_key"
            )
        return first.together([h for h in per_run if isinstance(h, HookSet)], n)
    for a, hooks in enumerate(per_run):
        for name, fn in hooks:
            if not isinstance(name, str):
                raise ValueError("hooks named by a predicate cannot run in a batch of runs")
            by_name.setdefault(name, []).append((a, fn))

    def combined(entries):
        def hook(t, hook):
            parts = list(t.split(n))
            for a, fn in entries:
                out = fn(parts[a], hook)
                if out is not None:
                    parts[a] = out
            return torch.cat(parts)

        return hook

    return [(name, combined(entries)) for name, entries in by_name.items()]


def _collect(
    handle: ModelHandle,
    result: GenerationResult,
    chunk: Sequence[tuple[int, int]],
    enc: Mapping[str, torch.Tensor],
    seeds: Sequence[int],
    prompts: Sequence[str],
    tokens: torch.Tensor,
    tracked: Mapping[str, torch.Tensor],
    eos: set[int],
    config: GenerationConfig,
) -> None:
    """Append one chunk's generations (trimmed at EOS, with their tracked values) to ``result``."""
    for r, (p, s) in enumerate(chunk):
        prompt_ids = enc["input_ids"][r][enc["attention_mask"][r].bool()].tolist()
        gen, hit = _trim(tokens[r].tolist(), eos if config.stop_at_eos else set())
        result.generations.append(
            Generation(
                prompt_index=p,
                sample_index=s,
                seed=seeds[r],
                prompt=prompts[p],
                prompt_token_ids=tuple(prompt_ids),
                token_ids=gen,
                text=handle.tokenizer.decode(gen, skip_special_tokens=True),
                stopped_at_eos=hit,
                tracked={name: tuple(v[r, : len(gen)].tolist()) for name, v in tracked.items()},
            )
        )


def _token_ids(handle: ModelHandle, name: str, ids: Sequence[int]) -> torch.Tensor:
    out = torch.tensor(sorted({int(i) for i in ids}), dtype=torch.long)
    vocab = handle.model.get_output_embeddings().weight.shape[0]
    if out.numel() == 0 or int(out.min()) < 0 or int(out.max()) >= vocab:
        raise UserError(f"track {name!r}: token ids must be a non-empty set in [0, {vocab}), got {list(ids)[:8]}")
    return out


def forward(
    handle: ModelHandle,
    prompts: Sequence[str],
    hooks: HookList | Callable[[BatchInfo], HookList] | None = None,
    *,
    prompt_format: str | None = None,
    last_only: bool = False,
    first_index: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass over the templated, left-padded prompts with ``hooks`` (list or factory).

    Returns ``(logits, attention_mask)``; logits are ``[batch, pos, vocab]`` (``pos`` = 1 with
    ``last_only``). Hook factories get a :class:`BatchInfo` with ``step == 0`` whose rows are
    prompt indices ``first_index, first_index + 1, ...`` (for callers that chunk a prompt list).
    """
    fmt = format_prompts(handle.tokenizer, list(prompts), prompt_format or handle.prompt_format)
    fmt.check_fits(handle, prompts=list(prompts))
    enc = _on_device(fmt.encode(handle.tokenizer), handle)
    mask = enc["attention_mask"]
    info = BatchInfo(
        rows=tuple((first_index + i, 0) for i in range(len(prompts))), prompt_lengths=mask.sum(-1), attention_mask=mask
    )
    position = position_ids(mask)
    extra = {"logits_to_keep": 1} if last_only else {}
    with torch.no_grad(), handle.hooked.hooks(fwd_hooks=_resolve_hooks(hooks, info)):
        logits = handle.model(input_ids=enc["input_ids"], attention_mask=mask, position_ids=position, **extra).logits
    return logits, mask
