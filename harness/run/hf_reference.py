"""Untouched Hugging Face ``generate``, for comparison with the harness.

Run it in a separate process (``python -m harness.hf_reference``): the harness process has
hook points and a custom attention function installed, and TransformerLens' bridge, if ever
booted, patches transformers process-wide. This module imports neither TransformerLens nor
:mod:`harness.model.hooks` and says so in its output (``transformer_lens_imported``).

Input (JSON on stdin): ``{"model", "prompts", "prompt_format", "max_new_tokens",
"repeats"}``. Output (JSON on stdout): per row the generated token ids (trimmed after EOS)
and the wall time of each ``generate`` call.
"""

from __future__ import annotations

import json
import sys
import time

import torch

from harness.model.loading import load_model
from harness.run.templating import format_prompts


def reference_generate(handle, prompts, prompt_format, max_new_tokens):
    """Greedy HF ``generate`` on one left-padded batch; returns (token lists, seconds)."""

    fmt = format_prompts(handle.tokenizer, prompts, prompt_format)
    enc = {k: v.to(handle.model.device) for k, v in fmt.encode(handle.tokenizer).items()}
    if handle.model.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.no_grad():
        out = handle.model.generate(
            **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=handle.tokenizer.pad_token_id
        )
    if handle.model.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    eos = handle.model.generation_config.eos_token_id
    eos = {eos} if isinstance(eos, int) else set(eos or [])
    rows = []
    for row in out[:, enc["input_ids"].shape[1] :].tolist():
        cut = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
        rows.append(row[:cut])
    return rows, seconds


def main() -> int:

    req = json.load(sys.stdin)
    handle = load_model(req["model"], device=req.get("device", "cpu"), dtype=req.get("dtype", "float32"))
    fmt = req.get("prompt_format") or handle.prompt_format
    times, rows = [], []
    for _ in range(int(req.get("repeats", 1))):
        rows, seconds = reference_generate(handle, req["prompts"], fmt, int(req["max_new_tokens"]))
        times.append(seconds)
    json.dump(
        {
            "rows": rows,
            "seconds": times,
            "prompt_format": fmt,
            "weights_sha256": handle.weights_sha256,
            "transformer_lens_imported": "transformer_lens" in sys.modules,
        },
        sys.stdout,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
