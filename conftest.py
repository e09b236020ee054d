"""Shared fixtures: models are loaded once per session.

Tiers (see README): unit tests use the tiny random models (seconds, no weights); tests
marked ``model`` load the real default model once (a few seconds from the local cache, ~30 s
on the very first run, which converts the GGUF); ``slow`` tests are not in the per-commit
suite. Skips and xfails are listed in README.md ("Skipped tests").
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import subprocess
import sys

import pytest

# The pytester fixture restores sys.modules after each test, dropping what a test imported first;
# torch, pyarrow (via TransformerLens -> datasets) and scipy's extensions then refuse a second
# import in the same process. So the suite imports them before any test starts.
import statsmodels.stats.multitest
import statsmodels.stats.power
import statsmodels.stats.weightstats  # noqa: F401

import harness.model.hooks
import harness.model.loading  # noqa: F401  (torch, transformers)

# claims options and shared state (causal_tests/); pytester runs the plugin's own tests
pytest_plugins = ["pytester"]  # the claims plugin itself comes in through its pytest11 entry point

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = os.path.dirname(os.path.abspath(__file__))


# every architecture the hook adapters support, as a tiny random model (harness/model/tiny.py)
TINY_MODELS = ("tiny-gpt2", "tiny-gpt-neox", "tiny-llama-gqa", "tiny-qwen2", "tiny-qwen3", "tiny-mistral-swa",
               "tiny-phi3", "tiny-gemma", "tiny-gemma2", "tiny-gemma3")
TINY_GQA_MODELS = TINY_MODELS[2:]
# per-commit tier of a check parametrized by architecture: three that span the adapters' differences
# (GPT-2: learned positions, LayerNorm, fused Conv1D qkv; GQA Llama; Gemma 2: sliding windows,
# soft-capping, attention-output norms); the slow tier runs all ten
FAST_TINY = ("tiny-gpt2", "tiny-llama-gqa", "tiny-gemma2")


def tiny_params(names=TINY_MODELS) -> list:
    """``names`` as pytest params, those outside :data:`FAST_TINY` in the slow tier."""
    return [pytest.param(n, marks=() if n in FAST_TINY else pytest.mark.slow) for n in names]
_TINY: dict = {}


def load_tiny(name: str):
    """A tiny model, loaded once per session (fixtures and parametrized tests share it)."""
    if name not in _TINY:
        from harness.model.loading import load_model

        _TINY[name] = load_model(name)
    return _TINY[name]


@pytest.fixture(scope="session")
def tiny_gpt2():
    return load_tiny("tiny-gpt2")


@pytest.fixture(scope="session")
def tiny_llama():
    return load_tiny("tiny-llama-gqa")


@pytest.fixture(scope="session")
def smollm2():
    from harness.model.loading import load_model

    return load_model("smollm2-135m")


@pytest.fixture(scope="session", params=TINY_MODELS)
def tiny_model(request):
    """Each tiny model in turn: one per supported architecture (see TINY_MODELS)."""
    return load_tiny(request.param)


@pytest.fixture(scope="session", params=TINY_GQA_MODELS)
def tiny_gqa_model(request):
    return load_tiny(request.param)


def run_module(module: str, *args: str, stdin: str | None = None, timeout: int = 600, cwd: str = ROOT):
    """Run ``python -m module args`` in a fresh interpreter (from the repo root unless ``cwd``)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", module, *args], input=stdin, capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=timeout, check=False)


def run_main(module: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``module.main(args)`` in this process as ``python -m module`` would (same ``run_cli``
    wrapper: a user error is one line on stderr and exit 2), capturing stdout and stderr.

    It saves an interpreter start (~10 s: torch, transformers, TransformerLens) per call, so the
    error paths of a command use it; each command keeps one real-process test, which also
    proves that no traceback reaches the terminal. An unexpected exception propagates and fails
    the test instead of being printed.
    """
    from harness.core.errors import run_cli

    # ``python -m harness COMMAND``: the console script's dispatcher
    main = importlib.import_module("harness.cli.main" if module == "harness" else module).main
    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            run_cli(main, list(args))
        except SystemExit as exc:
            code = exc.code
    code = 0 if code is None else code if isinstance(code, int) else 1
    return subprocess.CompletedProcess([module, *args], code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def main_in_process():
    """``main_in_process("harness", "sweep", "--model", "x")`` runs a command's ``main`` in this process."""
    return run_main


@pytest.fixture(scope="session")
def hf_reference():
    """Greedy tokens from untouched HF ``generate`` in a subprocess (never imports TransformerLens)."""
    def reference(model: str, prompts: list[str], max_new_tokens: int, prompt_format: str | None = None):
        req = {"model": model, "prompts": prompts, "max_new_tokens": max_new_tokens,
               "prompt_format": prompt_format}
        proc = run_module("harness.run.hf_reference", stdin=json.dumps(req))
        assert proc.returncode == 0, proc.stderr[-3000:]
        out = json.loads(proc.stdout)
        assert out["transformer_lens_imported"] is False
        return out
    return reference


@pytest.fixture(scope="session")
def cli():
    """``cli("harness", "demo", "--model", "x")`` runs a module in a subprocess."""
    return run_module
