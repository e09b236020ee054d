"""Hook point names, built in one place (as TransformerLens's ``get_act_name``).

Every hook point the harness installs on a model (:mod:`harness.model.hooks`) is named
``blocks.{layer}.attn.hook_{v,pattern,z,attn_out}`` or ``blocks.{layer}.hook_resid_{pre,post}``;
code that hooks one asks :func:`act_name` for its name instead of spelling it.
"""

from __future__ import annotations

from typing import Literal

ActKind = Literal["v", "pattern", "z", "attn_out", "resid_pre", "resid_post"]

_PATHS: dict[str, str] = {
    "v": "attn.hook_v",
    "pattern": "attn.hook_pattern",
    "z": "attn.hook_z",
    "attn_out": "attn.hook_attn_out",
    "resid_pre": "hook_resid_pre",
    "resid_post": "hook_resid_post",
}


def act_name(kind: ActKind, layer: int) -> str:
    """The name of hook point ``kind`` of ``layer``: ``act_name("z", 3) == "blocks.3.attn.hook_z"``."""
    if kind not in _PATHS:
        raise ValueError(f"hook point kind {kind!r}: must be one of {', '.join(_PATHS)}")
    return f"blocks.{layer}.{_PATHS[kind]}"


def hook_layer(name: str) -> int:
    """The layer a hook point belongs to: ``blocks.{l}.…`` -> l (``hook_resid_post`` of layer l is
    computed by layer l)."""
    parts = name.split(".")
    if len(parts) < 3 or parts[0] != "blocks" or not parts[1].isdigit():
        raise ValueError(f"hook point {name!r} is not in a block")
    return int(parts[1])


def is_pattern(name: str) -> bool:
    """Whether ``name`` is an attention pattern's hook point (hooking one changes the softmax path)."""
    return name.endswith("." + _PATHS["pattern"])
