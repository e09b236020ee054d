"""The seed's command: patch heads from emotion prompts into neutral prompts and measure.

    python -m harness.head_patching --model gpt2 --profile baseline --head-spec "1:10" \\
        --emotion gratitude --max-tokens 30 --patch-mode pattern_v \\
        --output results/baseline/patching/head_patching/gpt2_gratitude_1_10.pkl

Runs target prompts (``neutral`` by default) twice with the same per-(prompt, sample) random
numbers: once plain (baseline) and once with the heads patched from the emotion's prompts
(see :mod:`harness.patch.hooks`). Scores every generation with ``sentiment``, ``politeness``
and every emotion's ``<emotion>_keywords``, averages samples per prompt, and reports per
metric the baseline mean, patched mean and Δ with a 95% bootstrap CI over prompts (the
seed's table, with error bars). Writes one result document (``.json`` or ``.pkl``,
atomically) and a per-head plot under ``results/<profile>/plots/heads/``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from harness.metrics import get_metric
from harness.metrics.next_token import keyword_tracks
from harness.model.loading import ModelHandle
from harness.patch.hooks import PatchConfig, baseline_hooks, patch_hooks
from harness.patch.modes import MODES
from harness.patch.source import capture_source
from harness.run.generation import GenerationConfig, GenerationResult, generate
from harness.run.prompts import keyword_emotions
from harness.stats import bootstrap_mean_ci, sign_test

SCHEMA = "causal-heads/head-patching"
SCHEMA_VERSION = 2  # 2: settings.generation says samples / max_tokens (was n_samples / max_new_tokens)


def generation_config(run):
    """The :class:`~harness.run.generation.GenerationConfig` of a resolved :class:`~harness.run.profiles.RunConfig`."""

    # "auto" is sized once the model is loaded (harness.cli.patch); until then, the default
    return GenerationConfig.from_settings(run, batch_size=run.batch_size if isinstance(run.batch_size, int) else 128)


def _no_progress(total: int, label: str) -> tuple[Any, Callable[[], None]]:
    return None, lambda: None


def run_patching(
    handle: ModelHandle,
    patch: PatchConfig,
    gen_cfg: GenerationConfig,
    sources: Sequence[str],
    targets: Sequence[str],
    prompt_format: str,
    status: Callable[[str], None] = lambda m: None,
    progress: Callable[[int, str], tuple[Any, Callable[[], None]]] = _no_progress,
) -> dict:
    """Baseline and patched generations, per-prompt scores and the summary table. ``status`` gets
    one line per step; ``progress(total, label)`` returns ``(tick, close)`` for a progress bar."""

    status(f"capturing source activations: {len(sources)} prompts, layers {sorted(patch.by_layer())}")
    src = capture_source(
        handle, sources, sorted(patch.by_layer()), MODES[patch.mode].needs, prompt_format=prompt_format
    )
    results = {}
    for label, hooks in (("baseline", baseline_hooks(patch)), ("patched", patch_hooks(handle, patch, src))):
        status(f"generating {label}: {len(targets)} prompts × {gen_cfg.samples} samples × {gen_cfg.max_tokens} tokens")
        tick, close = progress(len(targets) * gen_cfg.samples * gen_cfg.max_tokens, label)
        try:
            results[label] = generate(
                handle,
                targets,
                gen_cfg,
                prompt_format=prompt_format,
                hooks=hooks,
                progress=tick,
                track=keyword_tracks(handle.tokenizer),
            )
        finally:
            close()
    return score_runs(results["baseline"], results["patched"], sources, gen_cfg.seed)


def table_metrics() -> list[str]:
    """The seed's table: sentiment, politeness, every emotion's keywords, then every emotion's log-prob."""

    return [
        "sentiment",
        "politeness",
        *(f"{e}_keywords" for e in keyword_emotions()),
        *(f"{e}_logprob" for e in keyword_emotions()),
    ]


def score_runs(baseline: GenerationResult, patched: GenerationResult, sources: Sequence[str], seed: int) -> dict:
    """Per-prompt texts and scores, and the summary table with bootstrap CIs over prompts."""

    metrics = table_metrics()
    base, pat = baseline.by_prompt(), patched.by_prompt()
    prompts: list[dict[str, Any]] = []
    for i in sorted(base):
        entry: dict[str, Any] = {
            "index": i,
            "target": base[i][0].prompt,
            "source_index": i % len(sources),
            "source": sources[i % len(sources)],
            "seeds": [g.seed for g in base[i]],
            "baseline": [g.text for g in base[i]],
            "patched": [g.text for g in pat[i]],
            "identical": [b.token_ids == p.token_ids for b, p in zip(base[i], pat[i])],
            "scores": {},
        }
        for name in metrics:
            m = get_metric(name)
            b, p = [m.score(g) for g in base[i]], [m.score(g) for g in pat[i]]
            bm, pm = sum(b) / len(b), sum(p) / len(p)
            entry["scores"][name] = {
                "baseline": b,
                "patched": p,
                "baseline_mean": bm,
                "patched_mean": pm,
                "delta": pm - bm,
            }
        prompts.append(entry)
    summary = []
    for k, name in enumerate(metrics):
        deltas = [e["scores"][name]["delta"] for e in prompts]
        ci = bootstrap_mean_ci(deltas, seed=seed * 1000 + k) if len(deltas) >= 2 else None
        row = {
            "metric": name,
            "baseline_mean": _mean(e["scores"][name]["baseline_mean"] for e in prompts),
            "patched_mean": _mean(e["scores"][name]["patched_mean"] for e in prompts),
            "delta": _mean(deltas),
            "ci_low": ci.ci_low if ci else float("nan"),
            "ci_high": ci.ci_high if ci else float("nan"),
            "ci_method": ci.method if ci else "n<2",
            "n_prompts": len(deltas),
            "prompts_changed": sum(d != 0 for d in deltas),
            "prompts_up": sum(d > 0 for d in deltas),
            "prompts_down": sum(d < 0 for d in deltas),
            "sign_p": sign_test(deltas, alternative="two-sided").p_value if len(deltas) >= 2 else float("nan"),
        }
        if name.endswith("_keywords"):
            row["baseline_total"] = sum(sum(e["scores"][name]["baseline"]) for e in prompts)
            row["patched_total"] = sum(sum(e["scores"][name]["patched"]) for e in prompts)
        summary.append(row)
    identical = sum(all(e["identical"]) for e in prompts)
    return {"prompts": prompts, "summary": summary, "generations_identical": {"prompts": identical, "of": len(prompts)}}


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values)


def format_summary(doc: dict) -> str:
    s = doc["settings"]
    same = doc["generations_identical"]
    lines = [
        (
            f"{s['model']} heads {s['head_spec']} {s['patch_mode']}: {s['emotion']} -> {s['run']['target']}, "
            f"n={s['n_prompts']} prompts × {s['generation']['samples']} samples; "
            f"{same['prompts']}/{same['of']} prompts generated identical text"
        ),
        (
            f"{'metric':22} {'baseline':>9} {'patched':>9} {'delta':>9}  {'95% CI (bootstrap over prompts)':<28} "
            f"up/down  sign p"
        ),
    ]
    for r in doc["summary"]:
        ci = f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] {r['ci_method']}"
        lines.append(
            f"{r['metric']:22} {r['baseline_mean']:9.4f} {r['patched_mean']:9.4f} {r['delta']:+9.4f}  "
            f"{ci:<28} {r.get('prompts_up', 0):>3}/{r.get('prompts_down', 0):<3} {r.get('sign_p', float('nan')):.3g}"
        )
    return "\n".join(lines)
