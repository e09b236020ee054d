"""Generation settings: one set of names, types and defaults for claims, profiles and the decoder.

:class:`SamplingSettings` holds what a claim row, a settings profile and the decode loop all
say about decoding (``do_sample``, ``temperature``, ``top_k``, ``top_p``, ``samples``,
``max_tokens``, ``seed``). :class:`~harness.claims.spec.Claim`,
:class:`~harness.run.profiles.RunConfig` and :class:`~harness.run.generation.GenerationConfig`
extend it, so a field means the same thing under the same name everywhere, and
:meth:`SamplingSettings.sampling` hands one type's settings to another.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

# The smallest sampling temperature: logits / T must stay finite in float32 (|logits| < 3e34 T);
# greedy decoding is do_sample = false, not T -> 0.
MIN_TEMPERATURE = 1e-4


class SamplingSettings(BaseModel):
    """Decoding settings; defaults mirror HF's sampling defaults (temperature 1, top-k 50, top-p 1)."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")

    do_sample: bool = True
    temperature: float = 1.0
    top_k: int = 50  # 0 disables
    top_p: float = 1.0
    samples: int = 1  # continuations per prompt (the paired design averages them per prompt)
    max_tokens: int = 30  # new tokens per continuation
    seed: int = 0

    def sampling(self) -> dict:
        """These settings as keyword arguments for another settings type."""
        return {name: getattr(self, name) for name in SamplingSettings.model_fields}


SAMPLING_FIELDS = tuple(SamplingSettings.model_fields)
