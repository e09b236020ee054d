"""Interventions: a claim whose patch is the researcher's own TransformerLens-style hook function.

A patch mode (:mod:`harness.patch.modes`) computes a head's value from *source* prompts. An
intervention needs no source: it is any ``fn(activation, hook) -> activation`` (a steering
vector added to the residual stream, a head scaled ×2, a direction projected out), registered
under a name so that a claims file can use it as well as a Python claim::

    @register_intervention("steer_gratitude")
    def steer(resid, hook):                      # at the claim's hook_points
        return resid + 4.0 * GRATITUDE_DIRECTION

    @register_intervention("double", per_head=True)
    def double(z, hook):                         # one claimed head's z: [batch, pos, d_head]
        return 2.0 * z

A claim names it with ``intervention = "steer_gratitude"`` and where it applies:

- ``hook_points = ["blocks.3.hook_resid_post"]`` for an intervention on whole activations (any
  hook point of :mod:`harness.model.hooks`); such a claim has no heads, so it cannot have a
  random-head control.
- ``heads = "1:10"`` for a ``per_head`` intervention: the function receives each claimed head's
  slice of ``blocks.L.attn.hook_z`` and the other heads are untouched, so K random heads of the
  same layers take the same function as a control.

The function runs at every forward pass of the generation: over the prompt at prefill and
over the newest token at each decode step (so a steering vector acts on every position, and
later decode steps see its effect through the KV cache). It must return a tensor of the
activation's shape (or ``None`` after editing in place, as TransformerLens allows); a
different shape is an error naming the intervention, the hook point and both shapes. A result
of another dtype is cast back to the activation's.

Parameters: a function with keyword parameters after ``(activation, hook)`` (``def steer(resid,
hook, scale=1.0)``) takes them from the claim, ``intervention = {name = "steer", scale = 4}``,
so one registration serves a sweep of values; a parameter the function does not take (or one
it needs and is not given) is refused when the claim is read, naming the function's parameters.
Each set of values is a run of its own (and a key of its own in the run cache).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

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
from harness.model.names import act_name, hook_layer, is_pattern

HookFn = Callable[[torch.Tensor, object], torch.Tensor | None]


@dataclass(frozen=True)
class Intervention:
    """A registered intervention (see :func:`register_intervention`)."""

    name: str
    fn: HookFn
    per_head: bool = False
    description: str = ""

    @property
    def origin(self) -> str:
        return origin(self.fn)

    def parameter_problem(self, params: Mapping[str, object]) -> str | None:
        """Why ``fn(activation, hook, **params)`` cannot be called (None: it can): a parameter the
        function does not take, or one it needs that is not given."""
        try:
            signature = inspect.signature(self.fn)
        except (TypeError, ValueError):  # a callable without a signature: its call will say
            return None
        try:
            signature.bind(None, None, **params)
        except TypeError as exc:
            takes = [p for p in list(signature.parameters)[2:]]
            return f"intervention {self.name!r} ({self.origin}): {exc}; its parameters: " + (
                ", ".join(takes) if takes else "none (it takes only the activation and the hook)"
            )
        return None


INTERVENTIONS: dict[str, Intervention] = {}
ENTRY_POINT_GROUP = "causal_heads.interventions"
# a hook point name as TransformerLens spells them: "blocks.3.hook_resid_post", "blocks.1.attn.hook_z"
HOOK_POINT = re.compile(r"^blocks\.\d+\.(attn\.)?hook_[a-z_]+$")


def register_intervention(name: str, *, per_head: bool = False, description: str = "") -> Callable[[HookFn], HookFn]:
    """Register ``fn(activation, hook) -> activation`` as the intervention ``name``.

    ``per_head``: the function takes one head's ``z`` (``[batch, pos, d_head]``) and the claim
    names heads; otherwise it takes the whole activation at the claim's ``hook_points``. A name
    that is taken (by another function) is an error."""
    check_name("intervention", name)

    def decorate(fn: HookFn) -> HookFn:
        check_registration("intervention", name, fn)
        taken = INTERVENTIONS.get(name)
        if taken is not None and not same_definition(taken.fn, fn):
            raise UserError(
                f"intervention {name!r} is registered twice: by {taken.origin} and {origin(fn)}; use another name"
            )
        text = description or (fn.__doc__ or name).strip().splitlines()[0]
        INTERVENTIONS[name] = Intervention(name, fn, per_head, text)
        return fn

    return decorate


def available_interventions() -> dict[str, Intervention]:
    """Every registered intervention: those of installed packages (entry-point group
    ``causal_heads.interventions``) and of the user's conftest or module."""
    load_entry_points(ENTRY_POINT_GROUP)
    return INTERVENTIONS


def get_intervention(name: str) -> Intervention:
    found = available_interventions()
    if name not in found:
        hint = "" if found else " (none is registered: register one with @register_intervention in a conftest.py)"
        raise UnknownNameError(
            did_you_mean("intervention", name, found) + hint + broken_entry_points(ENTRY_POINT_GROUP)
        )
    return found[name]


def _checked(iv: Intervention, point: str, act: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    if out is None:  # TransformerLens' convention: edited in place
        return act
    if not isinstance(out, torch.Tensor):
        raise UserError(
            f"intervention {iv.name!r} ({iv.origin}) at {point} returned {type(out).__name__}, not a tensor"
        )
    if out.shape != act.shape:
        raise UserError(
            f"intervention {iv.name!r} ({iv.origin}) at {point} changed the activation's shape "
            f"from {tuple(act.shape)} to {tuple(out.shape)}: an intervention must keep the shape"
        )
    return out.to(act.dtype)


def intervention_hooks(
    name: str,
    *,
    heads: Sequence[tuple[int, int]] = (),
    hook_points: Sequence[str] = (),
    available: Sequence[str] | None = None,
    params: Mapping[str, object] | None = None,
) -> list[tuple[str, Callable]]:
    """The ``(hook_name, fn)`` pairs that apply intervention ``name``: at ``hook_points``, or
    (``per_head``) at each of ``heads``' slice of ``blocks.L.attn.hook_z``. ``available``: the
    model's hook point names, to refuse a point the model does not have. ``params``: keyword
    arguments for the function (a claim's ``intervention = {name = "steer", scale = 4}``)."""
    iv = get_intervention(name)
    kw = dict(params or {})
    problem = iv.parameter_problem(kw)
    if problem:
        raise UserError(problem)
    if iv.per_head != bool(heads) or bool(heads) == bool(hook_points):
        need = "heads (it is per_head)" if iv.per_head else "hook_points (it is not per_head)"
        raise UserError(f"intervention {name!r} is applied at {need}")
    if available is not None:
        for point in hook_points:
            if point not in available:
                raise UnknownNameError(did_you_mean("hook point", point, available))
    if not iv.per_head:

        def whole(act, hook):
            return _checked(iv, hook.name, act, iv.fn(act, hook, **kw))

        return [(point, whole) for point in hook_points]

    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)

    def per_layer(layer_heads: list[int]) -> Callable:
        def hook(z, hook):
            z = z.clone()
            for h in layer_heads:
                z[:, :, h] = _checked(iv, f"{hook.name}[head {h}]", z[:, :, h], iv.fn(z[:, :, h], hook, **kw))
            return z

        return hook

    return [(act_name("z", layer), per_layer(hs)) for layer, hs in sorted(by_layer.items())]


def eager_layers(hook_points: Sequence[str]) -> tuple[int, ...]:
    """Layers whose attention pattern an intervention hooks: the baseline takes the same explicit
    softmax there (see :func:`harness.patch.hooks.baseline_hooks`)."""
    return tuple(sorted({hook_layer(p) for p in hook_points if is_pattern(p)}))
