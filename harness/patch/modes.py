"""Patch modes: what value a patched head takes, per query head, from source and target activations."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.errors import UnknownNameError, did_you_mean
from harness.patch.source import SourceActivations

ALIGNMENTS = ("end", "last", "mean_source")


@dataclass(frozen=True)
class PatchMode:
    name: str
    needs: frozenset[str]  # source activations: "z", "pattern", "v"
    target_pattern: bool = False
    target_v: bool = False
    z_valued: bool = True  # its value does not depend on the target run
    description: str = ""


MODES: dict[str, PatchMode] = {
    m.name: m
    for m in [
        PatchMode("z", frozenset({"z"}), description="head output z from the source"),
        PatchMode("pattern_v", frozenset({"pattern", "v"}), description="source pattern times source values"),
        PatchMode(
            "v_only",
            frozenset({"v"}),
            target_pattern=True,
            target_v=True,
            z_valued=False,
            description="target pattern times source values",
        ),
        PatchMode(
            "pattern_only",
            frozenset({"pattern"}),
            target_v=True,
            z_valued=False,
            description="source pattern times target values",
        ),
        PatchMode("zero", frozenset(), description="control: z set to 0"),
        PatchMode("mean", frozenset({"z"}), description="control: mean source z over prompts and positions"),
    ]
}


def get_mode(name: str) -> PatchMode:
    if name not in MODES:
        raise UnknownNameError(did_you_mean("patch mode", name, MODES))
    return MODES[name]


@dataclass
class Row:
    """Everything one (target row, source prompt, head) replacement needs."""

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


def mode_value(mode: str, r: Row) -> torch.Tensor:
    """Replacement z for head ``r.head`` at target positions ``r.qs_t``: [len(qs_t), d_head]."""
    src, i, h, g, n_q = r.source, r.index, r.head, r.kv, len(r.qs_t)
    if mode == "zero":
        return torch.zeros(n_q, r.d_head)
    if mode == "mean":
        return src.mean_z(r.layer)[h].expand(n_q, -1)
    if mode == "z":
        z = src.z[r.layer][i][:, h]
        return z.mean(0).expand(n_q, -1) if r.qs_s is None else z[r.qs_s]
    if mode == "pattern_v":
        z = src.pattern[r.layer][i][h] @ src.v[r.layer][i][:, g]
        return z.mean(0).expand(n_q, -1) if r.qs_s is None else z[r.qs_s]
    v_s = src.v[r.layer][i][:, g] if "v" in mode else None
    lt, ls = r.tgt_v.shape[0], (v_s.shape[0] if v_s is not None else src.pattern[r.layer][i].shape[-1])
    n = min(lt, ls)
    if mode == "v_only":
        values = r.tgt_v[:, g].clone()
        if r.qs_s is None:
            values[:] = v_s.mean(0)
        else:
            values[lt - n :] = v_s[ls - n :]
        return r.tgt_pattern[h][r.qs_t] @ values
    if mode == "pattern_only":
        rows = src.pattern[r.layer][i][h][r.qs_s][:, ls - n :]
        rows = rows / rows.sum(-1, keepdim=True)
        return rows @ r.tgt_v[lt - n :, g]
    raise AssertionError(f"unhandled mode {mode}")
