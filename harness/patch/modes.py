"""Patch modes: what value a patched head takes, per query head, from source and target activations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, cast

import torch

from harness.core.errors import UnknownNameError, UserError, did_you_mean
from harness.core.extensions import (
    broken_entry_points,
    check_name,
    check_registration,
    load_entry_points,
    origin,
    same_definition,
)
from harness.patch.source import SourceActivations

ALIGNMENTS = ("end", "last", "mean_source")


@dataclass
class Row:
    """Everything one (target row, source prompt, head) replacement needs.

    ``source`` exposes only the activations the mode declared (``needs``); ``tgt_pattern`` and
    ``tgt_v`` are the target run's own, present when the mode declared ``target_pattern`` /
    ``target_v``. ``qs_t`` are the target positions written, ``qs_s`` the aligned source
    positions (``None``: alignment ``mean_source``, the mean over source positions)."""

    layer: int
    head: int
    kv: int
    d_head: int
    qs_t: torch.Tensor
    qs_s: torch.Tensor | None
    source: SourceActivations
    index: int  # source prompt index
    tgt_pattern: torch.Tensor | None  # [head, Lt, Lt]
    tgt_v: torch.Tensor | None  # [Lt, kv_head, d_head]


ModeValue = Callable[[Row], torch.Tensor]  # -> [len(qs_t), d_head], the new z of head r.head


@dataclass(frozen=True)
class PatchMode:
    """A registered patch mode: its value function and what it reads (see :func:`register_mode`)."""

    name: str
    value: ModeValue
    needs: frozenset[str]  # source activations: "z", "pattern", "v"
    target_pattern: bool = False
    target_v: bool = False
    z_valued: bool = True  # its value does not depend on the target run (so it extends to generated positions)
    alignments: tuple[str, ...] = ALIGNMENTS
    description: str = ""

    def __call__(self, row: Row) -> torch.Tensor:
        """The mode's value for ``row``. It sees only the source kinds it declared; a mode defined
        outside harness reads copies (editing them in place cannot reach the run's activations,
        which later claims read too); its value is checked: a tensor of ``[len(qs_t), d_head]``,
        finite, never broadcast from a vector or a scalar."""
        own = getattr(self.value, "__module__", "").startswith("harness.")
        guarded = DeclaredSource(row.source, self, copies=not own)
        seen = replace(row, source=cast(SourceActivations, guarded))
        if not own:
            seen.tgt_pattern = None if row.tgt_pattern is None else row.tgt_pattern.clone()
            seen.tgt_v = None if row.tgt_v is None else row.tgt_v.clone()
            seen.qs_t = row.qs_t.clone()
            seen.qs_s = None if row.qs_s is None else row.qs_s.clone()
        out = self.value(seen)
        want = (len(row.qs_t), row.d_head)
        if not isinstance(out, torch.Tensor):
            raise UserError(
                f"patch mode {self.name!r} ({origin(self.value)}) returned {type(out).__name__}, not a tensor"
            )
        if tuple(out.shape) != want:
            raise UserError(
                f"patch mode {self.name!r} ({origin(self.value)}) returned shape {tuple(out.shape)} at layer "
                f"{row.layer} head {row.head}; it must be [len(row.qs_t), d_head] = {list(want)}"
            )
        if not own and not bool(torch.isfinite(out).all()):
            raise UserError(
                f"patch mode {self.name!r} ({origin(self.value)}) returned values that are not finite (NaN or inf) "
                f"at layer {row.layer} head {row.head}"
            )
        return out


MODES: dict[str, PatchMode] = {}
SOURCE_KINDS = ("z", "pattern", "v")


def register_mode(
    name: str,
    *,
    needs: tuple[str, ...] | frozenset[str] = (),
    target_pattern: bool = False,
    target_v: bool = False,
    alignments: tuple[str, ...] = ALIGNMENTS,
    description: str = "",
) -> Callable[[ModeValue], ModeValue]:
    """Register ``fn(row: Row) -> Tensor[len(row.qs_t), d_head]`` as the patch mode ``name``.

    ``needs``: the source activations it reads (``z``, ``pattern``, ``v``; only these are captured,
    and reading another is an error naming it). ``target_pattern``/``target_v``: it also reads the
    target run's own pattern or values (then its value depends on the target run, so it cannot
    extend to generated positions). ``alignments``: the alignments it is defined for. A name that
    is taken is an error."""
    check_name("patch mode", name)
    unknown = sorted(set(needs) - set(SOURCE_KINDS))
    if unknown:
        raise UserError(f"patch mode {name!r}: needs {unknown[0]!r} is not one of {', '.join(SOURCE_KINDS)}")
    bad = sorted(set(alignments) - set(ALIGNMENTS))
    if bad or not alignments:
        raise UserError(f"patch mode {name!r}: alignments must be some of {', '.join(ALIGNMENTS)}")

    def decorate(fn: ModeValue) -> ModeValue:
        check_registration("patch mode", name, fn)
        taken = MODES.get(name)
        if taken is not None and not same_definition(taken.value, fn):
            raise UserError(
                f"patch mode {name!r} is registered twice: by {origin(taken.value)} and {origin(fn)}; use another name"
            )
        MODES[name] = PatchMode(
            name,
            fn,
            frozenset(needs),
            target_pattern,
            target_v,
            not (target_pattern or target_v),
            tuple(alignments),
            description or (fn.__doc__ or name).strip().splitlines()[0],
        )
        return fn

    return decorate


class DeclaredSource:
    """The source activations as a mode sees them: only the kinds it declared in ``needs``."""

    def __init__(self, source: SourceActivations, mode: PatchMode, *, copies: bool = False) -> None:
        self._source, self._mode, self._copies = source, mode, copies

    def _check(self, kind: str) -> None:
        if kind not in self._mode.needs:
            declared = ", ".join(sorted(self._mode.needs)) or "nothing"
            raise UserError(
                f"patch mode {self._mode.name!r} reads source {kind!r} but declared needs=({declared}): "
                f"add {kind!r} to its register_mode(needs=...)"
            )

    def __getattr__(self, name: str) -> Any:
        if name in SOURCE_KINDS:
            self._check(name)
        value = getattr(self._source, name)
        return CopyOnRead(value) if self._copies and name in SOURCE_KINDS else value

    def mean_z(self, layer: int) -> torch.Tensor:
        self._check("z")
        return self._source.mean_z(layer)  # a new tensor


class CopyOnRead:
    """A read-only view of nested dicts and lists of tensors: every tensor read is a copy."""

    def __init__(self, data: Any) -> None:
        self._data = data

    def __getitem__(self, key: Any) -> Any:
        value = self._data[key]
        if isinstance(value, torch.Tensor):
            return value.clone()
        return CopyOnRead(value) if isinstance(value, (dict, list, tuple)) else value

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Any:
        keys = self._data if isinstance(self._data, dict) else range(len(self._data))
        return (k if isinstance(self._data, dict) else self[k] for k in keys)

    def __contains__(self, key: Any) -> bool:
        return key in self._data

    def keys(self) -> Any:
        return self._data.keys()

    def items(self) -> Any:
        return ((k, self[k]) for k in self._data)

    def values(self) -> Any:
        return (self[k] for k in self._data)


ENTRY_POINT_GROUP = "causal_heads.modes"


def available_modes() -> dict[str, PatchMode]:
    """Every patch mode: the built-in ones, then those of installed packages and users."""
    load_entry_points(ENTRY_POINT_GROUP)
    return MODES


def get_mode(name: str) -> PatchMode:
    modes = available_modes()
    if name not in modes:
        raise UnknownNameError(did_you_mean("patch mode", name, modes) + broken_entry_points(ENTRY_POINT_GROUP))
    return modes[name]


# -- the built-in modes (each one registered function; the sweep and claims use them by name) --


def _at_source_positions(z: torch.Tensor, r: Row) -> torch.Tensor:
    return z.mean(0).expand(len(r.qs_t), -1) if r.qs_s is None else z[r.qs_s]


@register_mode("z", needs=("z",), description="head output z from the source")
def _z(r: Row) -> torch.Tensor:
    return _at_source_positions(r.source.z[r.layer][r.index][:, r.head], r)


@register_mode("pattern_v", needs=("pattern", "v"), description="source pattern times source values")
def _pattern_v(r: Row) -> torch.Tensor:
    src, i = r.source, r.index
    return _at_source_positions(src.pattern[r.layer][i][r.head] @ src.v[r.layer][i][:, r.kv], r)


@register_mode(
    "v_only", needs=("v",), target_pattern=True, target_v=True, description="target pattern times source values"
)
def _v_only(r: Row) -> torch.Tensor:
    tgt_v, tgt_pattern = r.tgt_v, r.tgt_pattern
    assert tgt_v is not None and tgt_pattern is not None  # declared: target_pattern, target_v
    v_s = r.source.v[r.layer][r.index][:, r.kv]
    lt, ls = tgt_v.shape[0], v_s.shape[0]
    n = min(lt, ls)
    values = tgt_v[:, r.kv].clone()
    if r.qs_s is None:
        values[:] = v_s.mean(0)
    else:
        values[lt - n :] = v_s[ls - n :]
    return tgt_pattern[r.head][r.qs_t] @ values


@register_mode(
    "pattern_only",
    needs=("pattern",),
    target_v=True,
    alignments=("end", "last"),
    description="source pattern times target values",
)
def _pattern_only(r: Row) -> torch.Tensor:
    """A pattern row is renormalised over the keys both runs have; it cannot be averaged onto
    another prompt's keys, so ``mean_source`` is not defined for it."""
    tgt_v = r.tgt_v
    assert tgt_v is not None  # declared: target_v
    pattern = r.source.pattern[r.layer][r.index]
    lt, ls = tgt_v.shape[0], pattern.shape[-1]
    n = min(lt, ls)
    rows = pattern[r.head][r.qs_s][:, ls - n :]
    rows = rows / rows.sum(-1, keepdim=True)
    return rows @ tgt_v[lt - n :, r.kv]


@register_mode("zero", description="control: z set to 0")
def _zero(r: Row) -> torch.Tensor:
    return torch.zeros(len(r.qs_t), r.d_head)


@register_mode("mean", needs=("z",), description="control: mean source z over prompts and positions")
def _mean(r: Row) -> torch.Tensor:
    return r.source.mean_z(r.layer)[r.head].expand(len(r.qs_t), -1)


# the claims give a resample run, as its sources, another prompt of the target set per target
# prompt (harness.patch.resample); its value is then exactly the z mode's
RESAMPLE = "resample"
register_mode(
    RESAMPLE,
    needs=("z",),
    description="ablation: z from another prompt of the target set, drawn with the seed",
)(_z)
ABLATIONS = ("zero", "mean", RESAMPLE)  # what a claim's ``ablations`` may list
