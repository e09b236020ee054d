"""Where a model runs and in what precision: ``--device``, ``--dtype`` and ``--batch-size auto``.

A :class:`Placement` is parsed once from the command line, a pytest option or a profile, checked
against the machine before any model is loaded (``--device cuda`` without a GPU is one clear
error, exit 2), and handed to :func:`harness.model.loading.load_model`, which loads the weights
as today (fp32, hashed as loaded) and then moves and casts them. Generation keeps the random
streams on the CPU in float32 (each row's ``torch.Generator``), so a sampled run draws the same
numbers on every device and in every precision; what changes with the device or the dtype is only
the model's arithmetic.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from harness.core.errors import UserError
from harness.core.memory import rss_mb

# torch is imported by the functions that need it: the pytest plugin checks these options at
# start-up, in every pytest run of an environment that has the package
DEVICES = ("cpu", "cuda", "cuda:N", "auto")
DTYPES = ("float32", "bfloat16", "float16")
_WIDTH = {"float32": 4, "bfloat16": 2, "float16": 2}


def torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, name)


MAX_AUTO_BATCH = 512


@dataclass(frozen=True)
class Placement:
    """A checked device (``cpu``, ``cuda:0`` ...) and dtype name (``float32`` ...)."""

    device: str = "cpu"
    dtype: str = "float32"

    @property
    def is_default(self) -> bool:
        return self.device == "cpu" and self.dtype == "float32"

    def to_dict(self) -> dict:
        return {"device": self.device, "dtype": self.dtype}


def parse_device(spec: str | None) -> str:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` -> a device this machine has (``cuda`` -> ``cuda:0``;
    ``auto`` -> ``cuda:0`` where a GPU is visible, else ``cpu``)."""
    value = (spec or "cpu").strip().lower()
    if value == "cpu":  # the default: decided without importing torch (the plugin's start-up)
        return "cpu"
    import torch

    if value == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if value == "cuda" or value.startswith("cuda:"):
        index = value.partition(":")[2] or "0"
        if not index.isdigit():
            raise UserError(f"--device {spec!r}: the GPU index must be a number (cuda:0, cuda:1 ...)")
        if not torch.cuda.is_available():
            raise UserError(f"--device {spec!r}: this machine has no CUDA GPU visible to torch; use --device cpu")
        if int(index) >= torch.cuda.device_count():
            raise UserError(
                f"--device {spec!r}: this machine has {torch.cuda.device_count()} GPU(s), cuda:0 to "
                f"cuda:{torch.cuda.device_count() - 1}"
            )
        return f"cuda:{int(index)}"
    raise UserError(f"--device {spec!r}: use one of {', '.join(DEVICES)}")


def parse_dtype(name: str | None) -> str:
    value = (name or "float32").strip().lower()
    aliases = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
    value = aliases.get(value, value)
    if value not in DTYPES:
        raise UserError(f"--dtype {name!r}: use one of {', '.join(DTYPES)}")
    return value


def placement(device: str | None = None, dtype: str | None = None) -> Placement:
    return Placement(parse_device(device), parse_dtype(dtype))


def free_memory_bytes(device: str) -> int:
    """Memory a run may still use on ``device``: the GPU's free memory, or the host's available."""
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def bytes_per_row(shape: Any, vocab: int, positions: int, dtype: str, layers: int | None = None) -> int:
    """Memory one generation row holds at its peak: the keys and values of ``layers`` layers
    (default every layer; a planned arm caches only those above its shared ones) over
    ``positions`` (doubled: the cache grows into spare room), the prefill's activations (a few
    ``d_model``/MLP-wide tensors per position) and the step's logits, log-probs, sampling
    probabilities and random draws (float32, the vocabulary wide)."""
    width = _WIDTH[dtype]
    n_layers = shape.n_layers if layers is None else layers
    kv = 2 * 2 * n_layers * shape.n_kv_heads * shape.d_head * positions * width
    activations = 12 * max(shape.d_model, shape.n_heads * shape.d_head) * positions * width
    attention = 2 * shape.n_heads * positions * positions * 4
    return kv + activations + attention + 6 * vocab * 4


def auto_batch_size(shape: Any, vocab: int, positions: int, dtype: str, device: str, *, share: float = 0.5) -> int:
    """Rows per batch that fit in ``share`` of the device's free memory (1 to :data:`MAX_AUTO_BATCH`)."""
    per_row = bytes_per_row(shape, vocab, positions, dtype)
    return max(1, min(MAX_AUTO_BATCH, int(free_memory_bytes(device) * share) // per_row))


def parse_batch_size(value: str | int | None) -> int | str | None:
    """``--batch-size``: a positive integer or ``auto``."""
    if value is None or isinstance(value, int):
        if isinstance(value, int) and value < 1:
            raise UserError(f"--batch-size {value}: must be a positive integer or auto")
        return value
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if not text.isdigit() or int(text) < 1:
        raise UserError(f"--batch-size {value!r}: must be a positive integer or auto")
    return int(text)


def merged_placement(flags: dict[str, Any], defaults: dict[str, Any] | None = None, *, batch: bool = True) -> dict:
    """``device`` and ``dtype`` (checked: a missing GPU or an unknown dtype is a UserError) and,
    with ``batch``, ``batch_size``: each the flag where given, else its default (a profile's).
    The one merge the commands and the pytest plugin share."""
    defaults = defaults or {}

    def pick(key: str) -> Any:
        return flags[key] if flags.get(key) is not None else defaults.get(key)

    where = placement(pick("device"), pick("dtype"))
    out: dict[str, Any] = {"device": where.device, "dtype": where.dtype}
    if batch:
        out["batch_size"] = parse_batch_size(pick("batch_size"))
    return out


_UNITS = {
    "": 1,
    "b": 1,
    "k": 2**10,
    "kb": 2**10,
    "m": 2**20,
    "mb": 2**20,
    "g": 2**30,
    "gb": 2**30,
    "t": 2**40,
    "tb": 2**40,
}
MIN_MEMORY = 2**28  # 256 MB: below it no model of ours loads, and a budget is surely a typo


def parse_memory(value: str | int | None) -> int | None:
    """``--max-memory``: ``4GB``, ``512MB``, ``1.5g`` or a byte count (binary units) -> bytes; None: not given."""
    number: float | None
    if value is None or isinstance(value, int):
        number, unit = value, ""
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
        if m is None or m.group(2).lower() not in _UNITS:
            raise UserError(f"--max-memory {value!r}: give a size such as 4GB, 512MB or 1.5GB")
        number, unit = float(m.group(1)), m.group(2).lower()
    if number is None:
        return None
    size = int(number * _UNITS[unit])
    if size < MIN_MEMORY:
        raise UserError(f"--max-memory {value!r}: at least 256MB")
    return size


def default_memory_budget(device: str) -> int:
    """The budget when ``--max-memory`` is not given: half the host's memory on the CPU (the rest
    for the system and other work), 90% of the GPU's on a GPU."""
    if device.startswith("cuda"):
        import torch

        _free, total = torch.cuda.mem_get_info(torch.device(device))
        return int(total * 0.9)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.5)
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def memory_in_use(device: str) -> int:
    """What this process holds now where the runs' tensors live: the GPU's allocated memory, or
    the resident set on the CPU."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.memory_allocated(torch.device(device)))
    return int(rss_mb() * 2**20)
