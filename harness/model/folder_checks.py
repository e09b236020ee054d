"""The loader's policy for model folders: load all of a model or none of it, and say why in one line.

A folder is refused (:class:`~harness.core.errors.ModelUnavailableError`, exit 2 in every
command) when loading it would run its own code (handled where it is loaded:
``trust_remote_code=False``), leave weights initialised at random (tensors missing, or of
another shape than the config asks), read a damaged weights file (truncated, empty, not
safetensors), give weights that are not finite (NaN, inf), or come without a working tokenizer
(transformers otherwise builds a one-token tokenizer from nothing). Nothing here loads weights.
"""

from __future__ import annotations

from typing import Any

import torch

from harness.core.errors import ModelUnavailableError

_PROBE = "Thank you so much, 42 times!"


def load_error(model_id: str, exc: BaseException) -> ModelUnavailableError | None:
    """The one-line refusal for an exception raised while loading ``model_id``'s weights, or
    ``None`` when it is not about a damaged or mismatched checkpoint."""
    text = str(exc)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if type(exc).__name__ == "SafetensorError" or "safetensors" in type(exc).__module__:
        return ModelUnavailableError(
            f"--model {model_id!r}: its weights file is damaged (truncated, empty or not safetensors: {first}); "
            "copy it again or save the model again with save_pretrained()"
        )
    if isinstance(exc, RuntimeError) and "mismatch" in text:
        return ModelUnavailableError(
            f"--model {model_id!r}: a weight's shape differs from what its config asks (transformers would "
            "initialise it at random); check that config.json and the weights files belong together"
        )
    return None


def check_weights(model_id: str, model: Any) -> None:
    """Every parameter and buffer finite: a NaN or inf weight is refused, naming the first."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and tensor.numel() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ModelUnavailableError(
                f"--model {model_id!r}: weight {name} holds {bad} value(s) that are not finite (NaN or inf); "
                "the checkpoint is damaged"
            )


def check_tokenizer(model_id: str, tok: Any, model: Any) -> None:
    """A tokenizer that encodes text, with no token id past the model's embedding rows."""
    try:
        ids = tok(_PROBE).input_ids
        size = len(tok)
    except Exception as exc:  # a tokenizer that cannot encode at all
        raise ModelUnavailableError(f"--model {model_id!r}: its tokenizer cannot encode text ({exc})") from None
    if size < 2 or not ids:
        raise ModelUnavailableError(
            f"--model {model_id!r}: no tokenizer in the folder (transformers built one of {size} token(s)); "
            "save the tokenizer beside the weights (tokenizer.save_pretrained(folder))"
        )
    rows = model.get_input_embeddings().weight.shape[0]
    if max(ids) >= rows:
        raise ModelUnavailableError(
            f"--model {model_id!r}: its tokenizer gives token id {max(ids)} but the model has {rows} embedding "
            "rows; the tokenizer belongs to another model"
        )
