"""The options every command takes to place its model: ``--device``, ``--dtype``, ``--batch-size``
(and, for the commands that run claims, ``--backend``, ``--ray-address``, ``--workers``)."""

from __future__ import annotations

import argparse

from harness.core.errors import UserError
from harness.distributed.ray_backend import RayBackend
from harness.model.device import merged_placement, parse_memory


def add_placement_options(ap: argparse.ArgumentParser, *, batch: bool = True, backend: bool = False) -> None:
    g = ap.add_argument_group("device and precision")
    g.add_argument("--device", default=None, help="cpu (default), cuda, cuda:N or auto (a GPU where there is one)")
    g.add_argument("--dtype", default=None, help="float32 (default), bfloat16 or float16")
    if batch:
        g.add_argument("--batch-size", default=None, help="rows per forward pass: an integer or auto (free memory)")
    if backend:
        g.add_argument("--backend", default=None, choices=("local", "ray"), help="where runs are generated")
        g.add_argument("--ray-address", default=None, help="auto or HOST:PORT of a Ray cluster (--backend ray)")
        g.add_argument("--workers", type=int, default=None, help="Ray actors, each holding the model (--backend ray)")
        g.add_argument("--no-cache", action="store_true", help="generate every run instead of reading the run cache")
        g.add_argument("--max-memory", default=None, metavar="SIZE", help="memory budget for batches of runs, e.g. 4GB")


def placement_kwargs(args: argparse.Namespace, defaults: dict | None = None) -> dict:
    """``device``/``dtype`` (checked: a missing GPU or an unknown dtype is a UserError now) and
    ``batch_size`` (None where not given), over ``defaults`` (e.g. a profile's)."""
    return merged_placement(vars(args), defaults, batch=hasattr(args, "batch_size"))


def forwarded_pytest_options(args: argparse.Namespace) -> list[str]:
    """The placement options as pytest options (for the commands that run claims through pytest)."""
    out: list[str] = []
    for name in ("device", "dtype", "batch_size", "backend", "ray_address", "workers", "max_memory"):
        value = getattr(args, name, None)
        if value is not None:
            out += ["--" + name.replace("_", "-"), str(value)]
    if getattr(args, "no_cache", False):
        out.append("--no-cache")
    return out


def check_placement(args: argparse.Namespace) -> dict:
    """Everything the placement options say, checked before any work: the device and dtype, the
    batch size, and a Ray cluster's address. Returns :func:`placement_kwargs`."""
    place = placement_kwargs(args)
    parse_memory(getattr(args, "max_memory", None))  # a bad size: exit 2 before anything runs
    backend = getattr(args, "backend", None)
    if backend == "ray":
        RayBackend.from_options(args.ray_address, args.workers)
    elif getattr(args, "ray_address", None) or getattr(args, "workers", None) is not None:
        raise UserError("--ray-address and --workers need --backend ray")
    return place
