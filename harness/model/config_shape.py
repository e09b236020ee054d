"""A model's layer and head counts from its config alone, before any weights load.

The plugin checks every claim's heads and hook points against these at collection, so a head
outside the model (``40:1`` on a 30-layer model) is one line in a second, not an error found
after the model loaded and the other claims generated. ``None`` where the config cannot be read
without loading (then the check happens at resolution, as before).
"""

from __future__ import annotations

import functools
import os

from harness.model import groundtruth
from harness.model.loading import GPT2_IDS, smollm2_gguf_path


@functools.lru_cache(maxsize=32)
def config_heads(name: str, path: str | None = None) -> tuple[int, int] | None:
    """``(n_layers, n_heads)`` of model ``name`` (or of the directory ``path`` it runs on)."""
    try:
        folder = path or _folder(name)
        if folder is not None:
            from transformers import AutoConfig

            cfg = AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
            return int(cfg.num_hidden_layers), int(cfg.num_attention_heads)
        if name == "smollm2-135m":
            return _gguf_heads()
    except Exception:  # unreadable here: loading the model reports it properly
        return None
    return None


def _folder(name: str) -> str | None:
    shipped = name.removeprefix(groundtruth.PREFIX)
    if shipped != name and shipped in groundtruth.MODELS:
        return groundtruth.model_dir(shipped)
    if os.path.isdir(name):
        return name
    if "/" in name or name == "gpt2":
        from huggingface_hub import try_to_load_from_cache

        for repo in GPT2_IDS if name == "gpt2" else (name,):
            found = try_to_load_from_cache(repo, "config.json")
            if isinstance(found, str):
                return os.path.dirname(found)
    return None


def _gguf_heads() -> tuple[int, int] | None:
    """SmolLM2's counts from its GGUF's metadata (memory-mapped: no tensor is read)."""
    from gguf import GGUFReader

    reader = GGUFReader(smollm2_gguf_path())
    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()

    def value(key: str) -> int:
        field = reader.fields[f"{arch}.{key}"]
        return int(field.parts[field.data[0]][0])

    return value("block_count"), value("attention.head_count")
