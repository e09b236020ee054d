"""Head specs: which attention heads a patch touches.

Syntax: a comma-separated list of ``LAYER:HEAD`` items, where ``HEAD`` may be ``*`` for every
head of the layer: ``"1:10"``, ``"1:10,0:0"``, ``"1:*"``. :func:`parse_head_spec` checks the
syntax alone; :meth:`HeadSpec.resolve` checks it against a model's shape and expands ``*``.
Heads are query heads (on GQA models several share one KV head).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.core.errors import UserError

_ITEM = re.compile(r"^(\d+):(\d+|\*)$")


@dataclass(frozen=True)
class HeadSpec:
    text: str
    items: tuple[tuple[int, int | None], ...]  # None = every head of the layer

    def resolve(self, n_layers: int, n_heads: int, model: str) -> tuple[tuple[int, int], ...]:
        """Concrete (layer, head) pairs, sorted; out-of-range heads raise a :class:`UserError`."""
        heads: list[tuple[int, int]] = []
        for layer, head in self.items:
            if head is not None and (layer >= n_layers or head >= n_heads):
                raise UserError(
                    f"head {layer}:{head} is out of range for {model} ({n_layers} layers × {n_heads} heads)"
                )
            if layer >= n_layers:
                raise UserError(
                    f"layer {layer} in head spec {self.text!r} is out of range for {model} "
                    f"({n_layers} layers × {n_heads} heads)"
                )
            heads += [(layer, h) for h in (range(n_heads) if head is None else [head])]
        if len(set(heads)) != len(heads):
            dup = next(h for h in heads if heads.count(h) > 1)
            raise UserError(f"head {dup[0]}:{dup[1]} is listed more than once in head spec {self.text!r}")
        return tuple(sorted(heads))

    @property
    def slug(self) -> str:
        """A file- and ``pytest -k``-friendly form: ``1:10,0:*`` -> ``1_10-0_all``."""
        return "-".join(f"{layer}_{'all' if head is None else head}" for layer, head in self.items)


def parse_head_spec(text: str) -> HeadSpec:
    """Parse ``"1:10"``, ``"1:10,0:0"`` or ``"1:*"``; a malformed item is named in the error."""
    if not isinstance(text, str) or not text.strip():
        raise UserError(
            f"head spec {text!r} is empty: expected LAYER:HEAD (e.g. 1:10), LAYER:* or a comma-separated list"
        )
    items = []
    for part in text.split(","):
        m = _ITEM.match(part.strip())
        if not m:
            raise UserError(
                f"malformed head {part.strip()!r} in head spec {text!r}: expected LAYER:HEAD "
                f"(e.g. 1:10), LAYER:* or a comma-separated list"
            )
        items.append((int(m.group(1)), None if m.group(2) == "*" else int(m.group(2))))
    whole = {layer for layer, head in items if head is None}
    for i, (layer, head) in enumerate(items):  # found before any model is loaded (resolve checks again)
        if (layer, head) in items[:i] or head is not None and layer in whole:
            shown = f"{layer}:{'*' if head is None else head}"
            raise UserError(f"head {shown} is listed more than once in head spec {text!r}")
    return HeadSpec(text=text.strip(), items=tuple(items))
