"""What decides a model's runs besides its weights: hashes of its config, tokenizer and chat
template, and the manifest that lets a cached model copy be verified before it is trusted.

An edited ``rope_theta`` or a replaced chat template changes every generation while the weights
hash stays the same; findings therefore record all four digests and ``causal-heads regress``
names a change in any of them. The hashes are of the objects as loaded, canonicalised, so the
same model loaded from its GGUF, from the converted cache or from another folder hashes alike:

- ``config_sha256``: the config's fields as sorted JSON, without the bookkeeping ones that
  name where it came from (``_name_or_path``, ``transformers_version``, the GGUF
  ``quantization_config``, ``architectures``, which save_pretrained() fills in; the model class
  is recorded on its own).
- ``tokenizer_sha256``: the fast tokenizer's definition (vocabulary, merges, normalizer,
  pre-tokenizer, added tokens, post-processor; not its padding or truncation state) and the
  special tokens; a slow tokenizer's vocabulary and special tokens.
- ``chat_template_sha256``: the template's text, ``None`` for a model without one.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

# config fields that say where or how a config was loaded, not what the model computes
_CONFIG_BOOKKEEPING = {"transformers_version", "quantization_config", "dtype", "torch_dtype", "architectures"}
MANIFEST = "causal-heads-manifest.json"
MANIFEST_SCHEMA = "causal-heads/model-cache"


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def config_sha256(config: Any) -> str:
    fields = {k: v for k, v in config.to_dict().items() if not k.startswith("_") and k not in _CONFIG_BOOKKEEPING}
    return _sha256_text(_canonical(fields))


def tokenizer_sha256(tok: Any) -> str:
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        definition = json.loads(backend.to_str())
        definition.pop("padding", None)  # set by the loader (left padding), not part of the tokenizer
        definition.pop("truncation", None)
    else:
        definition = sorted(tok.get_vocab().items())
    special = {k: str(v) for k, v in sorted(getattr(tok, "special_tokens_map", {}).items())}
    return _sha256_text(_canonical({"definition": definition, "special_tokens": special}))


def chat_template_sha256(tok: Any) -> str | None:
    template = getattr(tok, "chat_template", None)
    if not template:
        return None
    return _sha256_text(template if isinstance(template, str) else _canonical(template))


def describe(config: Any, tok: Any) -> dict[str, str | None]:
    """The three digests, keyed as findings record them."""
    return {
        "config_sha256": config_sha256(config),
        "tokenizer_sha256": tokenizer_sha256(tok),
        "chat_template_sha256": chat_template_sha256(tok),
    }


# ------------------------------------------------------------- the converted-model cache


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(folder: str, source_sha256: str) -> None:
    """Record the sha256 and size of every file of ``folder`` (written last, once the copy is
    complete: a folder without it is a half-written cache entry)."""
    files = {
        name: {"sha256": file_sha256(os.path.join(folder, name)), "bytes": os.path.getsize(os.path.join(folder, name))}
        for name in sorted(os.listdir(folder))
        if name != MANIFEST and os.path.isfile(os.path.join(folder, name))
    }
    doc = {"schema": MANIFEST_SCHEMA, "version": 1, "source_sha256": source_sha256, "files": files}
    with open(os.path.join(folder, MANIFEST), "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1, sort_keys=True)


def manifest_problem(folder: str, source_sha256: str) -> str | None:
    """Why ``folder`` is not a trustworthy cache entry for the source ``source_sha256`` (a
    missing or unreadable manifest, a file missing, added, of another size or another hash),
    or ``None`` when every file is exactly as written at conversion."""
    try:
        with open(os.path.join(folder, MANIFEST), encoding="utf-8") as fh:
            doc = json.load(fh)
        files = doc["files"]
        if doc.get("schema") != MANIFEST_SCHEMA or doc.get("source_sha256") != source_sha256:
            return "its manifest belongs to another source"
    except (OSError, ValueError, KeyError, TypeError):
        return f"no readable {MANIFEST} (a half-written or older copy)"
    present = {n for n in os.listdir(folder) if n != MANIFEST}
    if not isinstance(files, dict) or present != set(files):
        extra, lost = sorted(present - set(files)), sorted(set(files) - present)
        return f"files differ from its manifest (missing {lost or 'none'}, unexpected {extra or 'none'})"
    for name, want in sorted(files.items()):
        path = os.path.join(folder, name)
        if not isinstance(want, dict) or os.path.getsize(path) != want.get("bytes"):
            return f"{name} has another size than when it was written"
        if file_sha256(path) != want.get("sha256"):
            return f"{name} differs from the copy written at conversion"
    return None
