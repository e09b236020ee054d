"""Several runs over the same prompts, with the layers below their patches computed once.

A claim's arms (baseline, patched, random heads, the versus condition) generate from the same
target prompts with the same settings; they differ only at and above the lowest layer any of
their hooks touches. Below that layer ``L`` an arm's row computes exactly what the baseline's
row computed, at the prompt and at every generated position, for as long as the row's tokens
equal the baseline's. :func:`generate_arms` therefore runs the baseline once, recording for each
row the residual stream entering layer ``L`` and the lower layers' keys and values, and then
runs each arm with its lower layers *replayed*: they are skipped, and layer ``L`` receives the
baseline's residual stream. A row whose token differs from the baseline's leaves the shared
path: from then on its lower layers are computed for it (in a small batch of such rows, whose
cache starts from the baseline's keys and values of the positions before the divergence,
identical by construction), and only its residual stream entering ``L`` comes from there. The
lower layers see only tokens, so diverged rows of a pack's arms that hold the same continuation
(the same prompt, the same tokens so far) are one row of that batch: random heads often flip
the same token the same way. Packs that cannot share a batch (one takes the explicit softmax on
its layer, one is a path patch) but share the same layers run in lockstep, with one side batch
per step for all of them: on this 2-core CPU a small batch's forward costs about the same for 1
row as for 30 (it streams the weights), so what counts is the number of forward passes.

Exactness. Every arm runs its layers ``>= L`` on the same batch of rows as a run of its own
(same chunking), and every row keeps its own random stream (common random numbers with the
baseline). The one difference in float arithmetic is the batch size of the diverged rows'
lower layers: a matrix product over ``m`` rows gives each row bit-identical results for most
``m``, but BLAS libraries take other code paths for a few small ``m`` (on this machine's MKL:
1-3, 5-7 and 9-11). :func:`exact_batch_sizes` measures which sizes agree with a large batch,
once per process, and the diverged rows are padded (with copies of one of them) to such a size,
so the arms' tokens equal arm-by-arm generation token for token; the tests check this on every
architecture, with rows that diverge at the first token, later, and never.

Not shared (each arm then runs as a run of its own, exactly): an arm whose lowest hooked layer
is 0, and any row of an arm at a step the baseline did not reach (the baseline stopped early
because all its rows ended).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.core.memory import give_back
from harness.model.device import bytes_per_row, memory_in_use
from harness.model.loading import ModelHandle
from harness.model.names import act_name, is_pattern
from harness.run.generation import (
    BatchInfo,
    GenerationConfig,
    GenerationResult,
    HookList,
    HookSet,
    StepLogits,
    exponential_draws,
    generate,
    generate_together,
    installed,
    multinomial_is_exponential_argmax,
    plain_steps,
)
from harness.run.kvcache import growing_cache

Hooks = HookList | Callable[[BatchInfo], HookList] | None


@dataclass(frozen=True)
class Arm:
    """One run that shares the baseline's prompts and settings: its hooks, and the lowest layer
    any hook of it or of the baseline touches (nothing below it differs from the baseline)."""

    hooks: Hooks
    lowest_layer: int


@dataclass
class Sharing:
    """What one arm shared with the baseline: per row, the step whose fed token first differed
    from the baseline's (None: never), and the layer below which rows were shared.
    ``side_rows``: the lower layers' row computations for diverged rows, summed over steps (one
    per distinct continuation: fewer than :attr:`diverged_steps` when arms' rows continue alike),
    split evenly between the arms that ran in lockstep; ``seconds``: the arm's share of its pack's
    forwards above the shared layers, plus an even share of the rest (side batch, sampling)."""

    layer: int
    diverged_at: list[int | None] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    side_rows: float = 0

    @property
    def diverged_steps(self) -> int:
        """Steps the arm's rows were fed their own tokens (each row from its divergence on)."""
        return sum(self.steps - d for d in self.diverged_at if d is not None)

    @property
    def share_diverged(self) -> float:
        return sum(d is not None for d in self.diverged_at) / max(len(self.diverged_at), 1)

    def to_dict(self) -> dict:
        return {
            "layer": self.layer,
            "rows": len(self.diverged_at),
            "diverged": self.share_diverged,
            "seconds": self.seconds,
            "diverged_steps": self.diverged_steps,
            "side_rows": self.side_rows,
        }


@functools.cache
def exact_batch_sizes(d_model: int, limit: int = 32, dtype: str = "float32", device: str = "cpu") -> frozenset[int]:
    """Row counts ``m`` for which a linear layer gives each row exactly what it gives that row in a
    batch of ``limit`` rows (measured once per process, device and dtype on random weights of the
    model's width)."""
    gen = torch.Generator().manual_seed(0)
    kind = getattr(torch, dtype)
    weights = [
        torch.randn(4 * d_model, d_model, generator=gen).to(device, kind),
        torch.randn(d_model, 4 * d_model, generator=gen).to(device, kind),
    ]
    exact = set()
    for m in range(1, limit + 1):
        ok = True
        for w in weights:
            x = torch.randn(limit, 1, w.shape[1], generator=gen).to(device, kind)
            ok &= torch.equal(torch.nn.functional.linear(x[:m], w), torch.nn.functional.linear(x, w)[:m])
        if ok:
            exact.add(m)
    return frozenset(exact)


def _probe_args(handle: ModelHandle) -> tuple:
    return (handle.shape.d_model, 32, getattr(handle, "dtype", "float32"), getattr(handle, "device", "cpu"))


def _padded_size(n: int, exact: frozenset[int], limit: int, total: int) -> int:
    if n >= limit:
        return n
    return min((m for m in exact if m >= n), default=max(n, total))


def _packs(
    handle: ModelHandle, prompts: Sequence[str], config: GenerationConfig, arms: Sequence[Arm], max_rows: int
) -> list[list[int]]:
    """Arm indices in packs that can run as one batch: the same shared layers, hooks named by
    strings, explicit softmax on the same layers, and batch sizes whose rounding is exact. Runs
    that reshape the batch (path patches) pack only with runs of their ``pack_key``."""
    rows = min(len(prompts) * config.samples, config.batch_size)
    exact = exact_batch_sizes(*_probe_args(handle))

    def ok(n: int) -> bool:
        return _padded_size(n, exact, 32, n) == n

    probe = BatchInfo(rows=((0, 0),), prompt_lengths=torch.ones(1, dtype=torch.long), attention_mask=torch.ones(1, 1))
    packs: dict[tuple, list[list[int]]] = {}
    for i, arm in enumerate(arms):
        resolved = arm.hooks(probe) if callable(arm.hooks) else arm.hooks
        reshapes = isinstance(resolved, HookSet) and resolved.install is not None  # e.g. a path patch
        pack_key = resolved.pack_key if isinstance(resolved, HookSet) else None
        pairs = list(resolved or [])
        names = [name for name, _fn in pairs]
        if arm.lowest_layer <= 0 or (reshapes and pack_key is None) or not all(isinstance(n, str) for n in names):
            packs.setdefault(("alone", i), []).append([i])
            continue
        eager = frozenset(str(n) for n in names if is_pattern(str(n)))
        key = (arm.lowest_layer, eager, pack_key)  # (None unless the run reshapes the batch)
        width = resolved.width if isinstance(resolved, HookSet) else 1  # e.g. a path run's streams
        groups = packs.setdefault(key, [[]])
        size = (len(groups[-1]) + 1) * rows
        if size * width > max_rows or not ok(size) or not ok(rows):
            groups.append([])
        groups[-1].append(i)
    return [p for groups in packs.values() for p in groups if p]


def _lockstep(packs: list[list[int]], arms: Sequence[Arm], rows: int, limit: int) -> list[list[list[int]]]:
    """Packs that share the same layers, in sets that run in lockstep (one step of every pack at a
    time, their diverged rows in one side batch), of up to ``limit`` rows; a layer-0 arm alone."""
    sets: dict[int, list[list[list[int]]]] = {}
    alone = []
    for pack in packs:
        layer = arms[pack[0]].lowest_layer
        if layer <= 0:
            alone.append([pack])
            continue
        by_layer = sets.setdefault(layer, [[]])
        if by_layer[-1] and (sum(map(len, by_layer[-1])) + len(pack)) * rows > limit:
            by_layer.append([])
        by_layer[-1].append(pack)
    return [s for by_layer in sets.values() for s in by_layer] + alone


class _Stop(Exception):
    def __init__(self, output: torch.Tensor) -> None:
        super().__init__()
        self.output = output


class _Record:
    """The baseline's chunk, as the arms need it: fed tokens, residual stream entering each layer
    of ``layers``, and the keys/values of the layers below the highest of them."""

    def __init__(self, handle: ModelHandle, layers: Sequence[int]) -> None:
        self.handle = handle
        self.layers = sorted(set(layers))
        self.kv_layers = max(self.layers, default=0)
        self.fed: list[torch.Tensor] = []  # step t >= 1: the token each row was fed
        self.resid: dict[int, list[torch.Tensor]] = {layer: [] for layer in self.layers}
        self.keys: list[list[torch.Tensor]] = [[] for _ in range(self.kv_layers)]
        self.values: list[list[torch.Tensor]] = [[] for _ in range(self.kv_layers)]
        self.first_position: list[int] = [0] * self.kv_layers  # sliding-window layers keep only the window
        self.noise: list[torch.Tensor] = []  # per step: the exponentials each row's sampling drew

    def hooks(self, base: Hooks) -> Callable[[BatchInfo], HookList]:
        def factory(info: BatchInfo) -> HookList:
            own = list(base(info)) if callable(base) else list(base or [])
            return own + [(act_name("resid_pre", layer), self._keep(layer)) for layer in self.layers]

        return factory

    def _keep(self, layer: int) -> Callable:
        def hook(t, hook):
            self.resid[layer].append(t)
            return t

        return hook

    def steps(self) -> StepLogits:
        plain = plain_steps(self.handle)
        cache = plain.cache  # type: ignore[attr-defined]

        def step_logits(inputs, mask, position, step):
            if step > 0:
                self.fed.append(inputs[:, 0])
            logits = plain(inputs, mask, position, step)
            n_new = inputs.shape[1]
            for layer in range(self.kv_layers):
                kv = cache.layers[layer]
                stored = min(n_new, kv.keys.shape[-2])
                if step == 0:
                    self.first_position[layer] = n_new - stored
                # copies: a view would keep each step's whole (replaced) cache tensor alive
                self.keys[layer].append(kv.keys[:, :, -stored:].clone())
                self.values[layer].append(kv.values[:, :, -stored:].clone())
            return logits

        if multinomial_is_exponential_argmax():

            def noise(gens, probs):
                self.noise.append(exponential_draws(gens, probs))
                return self.noise[-1]

            step_logits.noise = noise  # type: ignore[attr-defined]
        return step_logits

    @property
    def steps_run(self) -> int:
        return len(self.fed) + 1

    def resid_at(self, layer: int, start: int, stop: int) -> torch.Tensor:
        return _joined(self.resid[layer], 1)[:, start:stop]

    def history(self, layer: int, n: int, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Every row's keys and values of ``layer`` at the last ``keep`` of positions ``[0, n)``."""
        k, v = _joined(self.keys[layer], 2), _joined(self.values[layer], 2)
        stop = n - self.first_position[layer]
        return k[:, :, stop - keep : stop], v[:, :, stop - keep : stop]


def _joined(parts: list[torch.Tensor], dim: int) -> torch.Tensor:
    """The recorded steps of one tensor as one tensor, which then replaces them in ``parts`` (the
    record is complete when the arms read it: the steps are joined once, never held twice)."""
    if len(parts) > 1:
        parts[:] = [torch.cat(parts, dim=dim)]
    return parts[0]


class _ArmSteps:
    """The step function of one arm's chunk: lower layers replayed from the baseline's record for
    shared rows, computed in a padded side batch for diverged rows.

    The lower layers see only a row's tokens, so rows of the pack's arms that hold the same
    tokens (the same prompt and the same continuation so far) compute the same lower layers: the
    side batch holds one *node* per distinct continuation, not one row per diverged row. A node
    is created when rows leave the baseline's continuation (one per baseline row and new token)
    or when the rows of a node are fed different tokens (the token of its first row keeps the
    node, each other token starts a node with the node's keys and values so far)."""

    def __init__(
        self,
        handle: ModelHandle,
        record: _Record,
        layer: int,
        sharing: Sharing,
        n_rows: int,
        parts: Sequence[int],
        part_hooks: Sequence[HookList],
    ) -> None:
        """``n_rows`` rows: ``sum(parts)`` runs of the chunk's rows (row j is baseline row j % rows
        per run), in consecutive parts (packs) whose layers from ``layer`` up run as forwards of
        their own, each with its part's hooks installed for it; the diverged rows of every part
        share one side batch."""
        self.handle, self.record, self.layer, self.sharing = handle, record, layer, sharing
        self.model = handle.model
        self.blocks = handle.hooked.decoder_layers()
        self.parts, self.part_hooks = list(parts), list(part_hooks)
        self.caches = [growing_cache(self.model.config) for _ in self.parts]
        self.part_seconds = [0.0] * len(self.parts)  # each part's forwards above the shared layers
        self.extra = {"logits_to_keep": 1} if self.model._supports_logits_to_keep() else {}
        self.device = next(self.model.parameters()).device
        self.dtype = next(self.model.parameters()).dtype
        self.shared = torch.ones(n_rows, dtype=torch.bool, device=self.device)
        self.node_of: dict[int, int] = {}  # diverged row -> its node (its place in the side batch)
        self.first_row: list[int] = []  # per node: the row that made it (it keeps the node's token)
        self.side_cache: Any = None
        self.n_rows, self.copies = n_rows, sum(parts)
        self.per_run = n_rows // self.copies
        sharing.diverged_at = [None] * n_rows
        self.exact = exact_batch_sizes(*_probe_args(handle))
        self.step = 0
        self.drawn = 0  # steps for which this arm's own generators have drawn
        if record.noise:  # sampled, and torch samples as exponential_draws says
            self.noise = self._noise  # (a cycle: :meth:`release` breaks it when the set is done)

    def release(self) -> None:
        """Drop the caches and the bound method this object holds of itself (a reference cycle,
        which would otherwise keep the caches alive until the cyclic collector ran)."""
        self.__dict__.pop("noise", None)
        self.caches, self.side_cache = [], None

    def _noise(self, gens: list[torch.Generator], probs: torch.Tensor) -> torch.Tensor:
        """The baseline's exponentials for this step (each row's generator would draw exactly
        these); past the baseline's last step, the arm's own generators, first advanced past the
        steps whose draws were borrowed."""
        if self.step < len(self.record.noise):
            return self.record.noise[self.step]  # every copy's rows draw these (broadcast)
        while self.drawn < self.step:
            exponential_draws(gens, probs)
            self.drawn += 1
        self.drawn += 1
        return exponential_draws(gens, probs)

    # -- the side batch: one node per distinct continuation of the diverged rows -------
    def _side_rows(self) -> list[int]:
        size = _padded_size(len(self.first_row), self.exact, 32, self.n_rows)
        return self.first_row + [self.first_row[0]] * (size - len(self.first_row))

    def _regroup(self, leaving: list[int], tokens: list[int]) -> list[tuple[str, int]]:
        """Rows ``leaving`` the shared path and the rows of nodes fed different tokens join new
        nodes; returns each new node's origin: ``("base", baseline row)`` or ``("node", node)``."""
        origins: list[tuple[str, int]] = []
        new: dict[tuple, int] = {}
        by_node: dict[int, list[int]] = {}
        for r, node in self.node_of.items():
            by_node.setdefault(node, []).append(r)
        for node, rows in sorted(by_node.items()):
            kept = tokens[self.first_row[node]]
            for r in rows:
                if tokens[r] != kept:
                    self.node_of[r] = self._node(new, origins, ("node", node), tokens[r], r)
        for r in leaving:
            self.node_of[r] = self._node(new, origins, ("base", r % self.per_run), tokens[r], r)
        return origins

    def _node(self, new: dict, origins: list, origin: tuple[str, int], token: int, row: int) -> int:
        key = (*origin, token)
        if key not in new:
            new[key] = len(self.first_row)
            origins.append(origin)
            self.first_row.append(row)
        return new[key]

    def _extend(self, origins: list[tuple[str, int]], n: int) -> None:
        """New nodes take the keys and values of positions ``[0, n)`` from their origin: the
        baseline's record (identical up to there) or the node they split from. Nodes keep the order
        they were made in (a row's results do not depend on its place in a batch of an exact size)."""
        old = self.side_cache
        before = len(self.first_row) - len(origins)
        pad = len(self._side_rows()) - len(self.first_row)
        base = torch.tensor([i if kind == "base" else 0 for kind, i in origins], device=self.device)
        parent = torch.tensor([i if kind == "node" else 0 for kind, i in origins], device=self.device)
        from_base = torch.tensor([kind == "base" for kind, _ in origins], device=self.device)[:, None, None, None]
        cache = growing_cache(self.model.config)
        for layer in range(self.layer):
            kv: Any = cache.layers[layer]  # a DynamicLayer or DynamicSlidingWindowLayer
            window = getattr(kv, "sliding_window", None)
            keep = n if window is None else min(n, window - 1)
            base_k, base_v = self.record.history(layer, n, keep)
            new_k, new_v = base_k[base], base_v[base]
            if before:
                old_k, old_v = old.layers[layer].keys[:before, :, -keep:], old.layers[layer].values[:before, :, -keep:]
                if not bool(from_base.all()):
                    new_k = torch.where(from_base, new_k, old_k[parent])
                    new_v = torch.where(from_base, new_v, old_v[parent])
                ks, vs = [old_k, new_k], [old_v, new_v]
            else:
                ks, vs = [new_k], [new_v]
            if pad:  # copies of the first node, to an exact batch size
                ks.append(ks[0][:1].expand(pad, -1, -1, -1))
                vs.append(vs[0][:1].expand(pad, -1, -1, -1))
            kv.update(torch.cat(ks), torch.cat(vs))
            if window is not None:
                kv.cumulative_length = n
        self.side_cache = cache

    def _lower(self, inputs: torch.Tensor, mask: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """Residual stream entering ``self.layer`` for each node (the model stops there)."""
        idx = torch.tensor(self._side_rows(), device=self.device)
        self.sharing.side_rows += len(self.first_row)
        stop = self.blocks[self.layer - 1].register_forward_hook(lambda _m, _i, out: _raise(out))
        try:
            self.model(
                input_ids=inputs[idx], attention_mask=mask[idx], position_ids=position[idx], cache=self.side_cache
            )
        except _Stop as s:
            return s.output[: len(self.first_row)]
        finally:
            stop.remove()
        raise RuntimeError("the forward pass did not reach the shared layer")

    # -- one step -----------------------------------------------------------------------
    def __call__(self, inputs, mask, position, step):
        n_new = inputs.shape[1]
        n = mask.shape[1] - n_new  # positions already cached
        have = step < self.record.steps_run
        if step > 0:
            fed = self.record.fed[step - 1].repeat(self.copies) if have else None
            leaving = self.shared & ((inputs[:, 0] != fed) if fed is not None else True)
            rows = leaving.nonzero().flatten().tolist() if bool(leaving.any()) else []
            for r in rows:
                self.sharing.diverged_at[r] = step
            self.shared &= ~leaving
            if rows or self.node_of:
                origins = self._regroup(rows, inputs[:, 0].tolist())
                if origins:
                    self._extend(origins, n)
        if have:
            feed = self.record.resid_at(self.layer, n, n + n_new).repeat(self.copies, 1, 1)
        else:
            feed = torch.zeros(self.n_rows, n_new, self.handle.shape.d_model, dtype=self.dtype, device=self.device)
        if self.node_of:
            node_rows = torch.tensor(list(self.node_of), device=self.device)
            nodes = torch.tensor(list(self.node_of.values()), device=self.device)
            feed[node_rows] = self._lower(inputs, mask, position).to(feed.dtype)[nodes]
        self.sharing.steps = step + 1
        self.step = step
        logits, first = [], 0
        for p, size in enumerate(self.parts):
            part = slice(first * self.per_run, (first + size) * self.per_run)
            first += size
            began = time.perf_counter()
            with (
                installed(self.handle, self.part_hooks[p]),
                _replayed(self.blocks, self.layer, self.caches[p], feed[part]),
            ):
                out = self.model(
                    input_ids=inputs[part],
                    attention_mask=mask[part],
                    position_ids=position[part],
                    cache=self.caches[p],
                    use_cache=True,
                    **self.extra,
                )
            logits.append(out.logits[:, -1, :])
            self.part_seconds[p] += time.perf_counter() - began
        return logits[0] if len(logits) == 1 else torch.cat(logits)


def _raise(output):
    raise _Stop(output)


class _replayed:
    """Lower blocks skipped: each only advances its cache layer's length (for the attention
    masks), and block ``layer - 1`` returns ``feed``, the residual stream entering ``layer``."""

    def __init__(self, blocks: Sequence[Any], layer: int, cache: Any, feed: torch.Tensor) -> None:
        self.blocks, self.layer, self.cache, self.feed = blocks, layer, cache, feed

    def __enter__(self):
        for index in range(self.layer):
            self.blocks[index].forward = self._skip(index)

    def _skip(self, index: int) -> Callable:
        def forward(hidden_states, *args, **kwargs):
            n = hidden_states.shape[1]
            placeholder = torch.zeros(1, 1, n, 1, dtype=hidden_states.dtype, device=hidden_states.device)
            self.cache.layers[index].update(placeholder, placeholder)
            return self.feed if index == self.layer - 1 else hidden_states

        return forward

    def __exit__(self, *exc):
        for index in range(self.layer):
            del self.blocks[index].forward


def generate_arms(
    handle: ModelHandle,
    prompts: Sequence[str],
    config: GenerationConfig,
    arms: Sequence[Arm],
    *,
    baseline_hooks: Hooks = None,
    prompt_format: str | None = None,
    track: Mapping[str, Sequence[int]] | None = None,
    max_rows: int = 512,
    progress: Callable[[int], None] | None = None,
    memory_budget: int | None = None,
) -> tuple[GenerationResult, list[GenerationResult], list[Sharing]]:
    """The baseline run (with ``baseline_hooks``) and each arm's run, as :func:`generate` would
    give them one by one, with each arm's layers below ``arm.lowest_layer`` computed once (see the
    module docstring). Arms that share the same layers and take the explicit softmax on the same
    layers run together in batches (packs) of up to ``max_rows`` rows (:func:`generate_together`),
    where the batch size keeps every row's rounding (:func:`exact_batch_sizes`); the packs that
    share the same layers run in lockstep, up to ``max_rows`` rows in all: one step of each at a
    time, each pack's upper layers a forward of its own, the diverged rows of all of them in one
    side batch (larger sets sampled their concatenated logits slower than separate packs: with
    ``4 * max_rows`` the main job's 70-prompt group took 338 s instead of 297 s). Returns
    (baseline, the arms' results in order, what each arm shared). ``progress`` gets the tokens
    generated after each step, baseline and arms (as :func:`generate`'s). ``memory_budget``
    (bytes): packs and lockstep sets hold at most the rows that fit in what the budget leaves once
    the baseline is recorded (:func:`budget_rows`; never fewer than one run's rows); the rows a
    run is computed in do not change its tokens (see the module docstring): the budget changes
    speed and memory, and tracked log-probs only as a pack's batch size rounds them (~1e-6)."""
    layers = [a.lowest_layer for a in arms if a.lowest_layer > 0]
    chunk_of: dict[int, _Record] = {}  # chunk's first row -> the baseline's record of that chunk

    def base_steps(start: int, enc: Mapping[str, torch.Tensor]) -> StepLogits:
        chunk_of[start] = _Record(handle, layers)
        return chunk_of[start].steps()

    def base_hooks(info: BatchInfo) -> HookList:
        first = info.rows[0][0] * config.samples + info.rows[0][1]
        return chunk_of[first].hooks(baseline_hooks)(info)

    base = generate(
        handle,
        prompts,
        config,
        prompt_format=prompt_format,
        hooks=base_hooks,
        track=track,
        steps=base_steps,
        progress=progress,
    )
    results: list[GenerationResult | None] = [None] * len(arms)
    shares: list[Sharing | None] = [None] * len(arms)
    rows = min(len(prompts) * config.samples, config.batch_size)
    if memory_budget is not None and layers:
        positions = max(len(g.prompt_token_ids) for g in base.generations) + config.max_tokens
        max_rows = budget_rows(handle, memory_budget, positions, min(layers), rows, max_rows)
    for together in _lockstep(_packs(handle, prompts, config, arms, max_rows), arms, rows, max_rows):
        start = time.perf_counter()
        runs = [i for pack in together for i in pack]
        layer = arms[runs[0]].lowest_layer
        if layer <= 0:  # nothing below its patch: a run of its own (a pack of one: see _packs)
            (i,) = runs
            results[i] = generate(
                handle,
                prompts,
                config,
                prompt_format=prompt_format,
                hooks=arms[i].hooks,
                track=track,
                progress=progress,
            )
            shares[i] = Sharing(0, seconds=time.perf_counter() - start)
            continue
        outs, set_shares = _run_set(handle, prompts, config, arms, together, chunk_of, prompt_format, track, progress)
        for i, share, out in zip(runs, set_shares, outs, strict=True):
            results[i], shares[i] = out, share
        give_back(collect=False)
    return base, [r for r in results if r is not None], [s for s in shares if s is not None]


def _run_set(
    handle: ModelHandle,
    prompts: Sequence[str],
    config: GenerationConfig,
    arms: Sequence[Arm],
    together: list[list[int]],
    chunk_of: Mapping[int, _Record],
    prompt_format: str | None,
    track: Mapping[str, Sequence[int]] | None,
    progress: Callable[[int], None] | None,
) -> tuple[list[GenerationResult], list[Sharing]]:
    """One lockstep set of packs (see :func:`generate_arms`): its runs' results and what each
    shared, in the set's run order; the step functions' caches released when it is done."""
    start = time.perf_counter()
    runs = [i for pack in together for i in pack]
    layer = arms[runs[0]].lowest_layer
    per_chunk: list[_ArmSteps] = []
    parts = [len(pack) for pack in together]

    def lockstep_steps(first: int, enc: Mapping[str, torch.Tensor], part_hooks: list[HookList]) -> StepLogits:
        n_rows = sum(parts) * enc["input_ids"].shape[0]
        runner = _ArmSteps(handle, chunk_of[first], layer, Sharing(layer), n_rows, parts, part_hooks)
        per_chunk.append(runner)
        return runner

    outs = generate_together(
        handle,
        prompts,
        config,
        [arms[i].hooks for i in runs],
        prompt_format=prompt_format,
        track=track,
        steps=lockstep_steps,
        parts=parts,
        progress=progress,
    )
    shares = _lockstep_shares(together, per_chunk, layer, start)
    for runner in per_chunk:  # this set's caches, freed before the next set allocates its own
        runner.release()
    return outs, shares


def budget_rows(handle: ModelHandle, budget: int, positions: int, lowest: int, rows: int, most: int) -> int:
    """Rows of a pack or lockstep set (at most ``most``, at least one run's ``rows``) whose upper
    layers' caches and step tensors (:func:`harness.model.device.bytes_per_row` over the layers
    from ``lowest`` up) fit in what ``budget`` leaves beyond the memory in use now (the model, the
    baseline's record, source activations)."""
    s = handle.shape
    vocab = handle.model.get_output_embeddings().weight.shape[0]
    dtype = str(getattr(handle, "dtype", "float32"))
    per_row = bytes_per_row(s, vocab, positions, dtype, layers=s.n_layers - lowest)
    free = budget - memory_in_use(str(getattr(handle, "device", "cpu")))
    return max(rows, min(most, free // per_row))


def _lockstep_shares(together: list[list[int]], per_chunk: list[_ArmSteps], layer: int, start: float) -> list[Sharing]:
    """What each run of a lockstep set shared, in the set's run order. An arm's seconds: its pack's
    forwards above the shared layers, split between the pack's arms, plus an even share of the
    rest (the side batch, sampling)."""
    n_runs = sum(len(pack) for pack in together)
    own = [sum(r.part_seconds[p] for r in per_chunk) for p in range(len(together))]
    rest = (time.perf_counter() - start - sum(own)) / n_runs
    steps = max((r.sharing.steps for r in per_chunk), default=0)
    side_rows = sum(r.sharing.side_rows for r in per_chunk) / n_runs
    out: list[Sharing] = []
    for p, pack in enumerate(together):
        for _ in pack:
            a = len(out)
            diverged: list[int | None] = []
            for r in per_chunk:  # each chunk's rows are the runs in blocks
                n = len(r.sharing.diverged_at) // n_runs
                diverged += r.sharing.diverged_at[a * n : (a + 1) * n]
            out.append(Sharing(layer, diverged, steps, own[p] / len(pack) + rest, side_rows))
    return out
