"""One configuration path: command-line flags > profile (``harness/run/profiles.toml``) > defaults.

:func:`resolve_run_config` merges the three into one frozen :class:`RunConfig`, which the
runner uses and every result records. A key in a profile that this code does not know, or
a value of the wrong type, is an error naming the profile, the key and the value.
"""

from __future__ import annotations

import os
import tomllib

from pydantic import ValidationError, model_validator

from harness.core.errors import UnknownNameError, UserError, did_you_mean
from harness.model.device import parse_batch_size, parse_dtype
from harness.run.settings import SamplingSettings

PROFILES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "profiles.toml")


class RunConfig(SamplingSettings):
    """Everything a patching run depends on besides the model, heads, mode and emotion: the shared
    sampling settings (:class:`SamplingSettings`) plus the run's prompts, alignment and batching."""

    profile: str = "baseline"
    n_prompts: int = 70
    alignment: str = "end"
    patch_generated: bool = False
    target: str = "neutral"
    prompt_format: str = "model"
    batch_size: int | str = 128  # rows per forward pass, or "auto" (sized from the device's free memory)
    device: str = "cpu"  # cpu, cuda, cuda:N or auto (harness.model.device)
    dtype: str = "float32"  # float32, bfloat16 or float16

    @model_validator(mode="after")
    def _placement(self):
        if isinstance(self.batch_size, str):
            parse_batch_size(self.batch_size)
        parse_dtype(self.dtype)
        if self.device.strip().lower() not in ("cpu", "cuda", "auto") and not self.device.startswith("cuda:"):
            raise ValueError(f"device {self.device!r}: use cpu, cuda, cuda:N or auto")
        return self

    def to_dict(self) -> dict:
        return self.model_dump()


def read_toml(path: str, what: str) -> dict:
    """Parse a TOML file; unreadable or malformed files are a :class:`UserError` naming ``what``."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise UserError(f"{what} {path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{what} {path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{what} {path}: not UTF-8 text: {exc.reason} at byte {exc.start}") from None


def load_profiles(path: str = PROFILES_FILE) -> dict[str, dict]:
    return read_toml(path, "profiles file")


def _check(profile: str, key: str, value: object) -> None:
    """One profile value, type-checked by :class:`RunConfig` itself (strict: 1 is not a bool)."""
    keys = [k for k in RunConfig.model_fields if k != "profile"]
    if key not in keys:
        raise UserError(f"profile {profile!r}: " + did_you_mean("key", key, keys))
    try:
        RunConfig.model_validate({key: value})
    except ValidationError:
        annotation = RunConfig.model_fields[key].annotation
        raise UserError(
            f"profile {profile!r}: {key} = {value!r} must be of type {getattr(annotation, '__name__', annotation)}"
        ) from None


def profile_values(profile: str, path: str = PROFILES_FILE) -> dict:
    """The settings a profile sets (type-checked), without its description."""
    profiles = load_profiles(path)
    if profile not in profiles:
        raise UnknownNameError(did_you_mean("profile", profile, profiles))
    values = {k: v for k, v in profiles[profile].items() if k != "description"}
    for key, value in values.items():
        _check(profile, key, value)
    return values


def resolve_run_config(profile: str, overrides: dict, path: str = PROFILES_FILE) -> RunConfig:
    """Defaults, then the profile's values, then the non-None ``overrides`` (CLI flags)."""
    values = profile_values(profile, path)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return RunConfig(profile=profile, **values)


def profile_claim_settings(profile: str, path: str = PROFILES_FILE) -> dict:
    """What ``pytest causal_tests --profile NAME`` sets on every claim: the profile's generation
    settings (sampling, samples, n_prompts, max_tokens, alignment, seed, target). ``batch_size``
    does not change results and is dropped; a profile that changes the prompt format or patches
    generated positions describes runs that claims cannot express, and is refused."""
    values = profile_values(profile, path)
    for key in ("batch_size", "device", "dtype"):  # the session's, not a claim's (profile_placement)
        values.pop(key, None)
    default = RunConfig()
    for key in ("prompt_format", "patch_generated"):
        if key in values and values.pop(key) != getattr(default, key):
            raise UserError(
                f"profile {profile!r} sets {key}, which claims cannot take (claims use the model's own "
                f"prompt format and patch prompt positions only); use a profile without it"
            )
    return values


def profile_placement(profile: str | None, path: str = PROFILES_FILE) -> dict:
    """The device, dtype and batch size a profile sets (empty for none): they place a whole run
    and change no claim's settings."""
    if profile is None:
        return {}
    values = profile_values(profile, path)
    return {k: values[k] for k in ("device", "dtype", "batch_size") if k in values}
