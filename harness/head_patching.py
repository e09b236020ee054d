"""The seed's command: patch heads from emotion prompts into neutral prompts and measure.

    python -m harness.head_patching --model gpt2 --profile baseline --head-spec "1:10" \\
        --emotion gratitude --max-tokens 30 --patch-mode pattern_v \\
        --output results/baseline/patching/head_patching/gpt2_gratitude_1_10.pkl

Runs target prompts (``neutral`` by default) twice with the same per-(prompt, sample) random
numbers: once plain (baseline) and once with the heads patched from the emotion's prompts
(see :mod:`harness.patching`). Scores every generation with ``sentiment``, ``politeness``
and every emotion's ``<emotion>_keywords``, averages samples per prompt, and reports per
metric the baseline mean, patched mean and Δ with a 95% bootstrap CI over prompts (the
seed's table, with error bars). Writes one result document (``.json`` or ``.pkl``,
atomically) and a per-head plot under ``results/<profile>/plots/heads/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time

from harness.errors import run_cli

SCHEMA = "causal-heads/head-patching"
SCHEMA_VERSION = 1


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m harness.head_patching", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m", help="registered name, HF id or local directory")
    ap.add_argument("--profile", default="baseline", help="settings bundle from harness/profiles.toml")
    ap.add_argument("--head-spec", required=True, help="e.g. 1:10, 1:10,0:0 or 1:*")
    ap.add_argument("--emotion", required=True, help="source emotion (prompts/<emotion>_prompts.json)")
    ap.add_argument("--patch-mode", default="pattern_v", help="z, pattern_v, v_only, pattern_only, zero, mean")
    ap.add_argument("--output", required=True, help="result file, .json or .pkl")
    ap.add_argument("--max-tokens", type=int)
    ap.add_argument("--n-prompts", type=int)
    ap.add_argument("--samples", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--alignment", help="end (default), last or mean_source")
    ap.add_argument("--patch-generated", action="store_true", default=None,
                    help="also patch generated positions (z-valued modes only)")
    ap.add_argument("--target", help="target prompt set (default: neutral)")
    ap.add_argument("--prompt-format", choices=("model", "plain", "chat"))
    dec = ap.add_mutually_exclusive_group()
    dec.add_argument("--greedy", dest="do_sample", action="store_false", default=None)
    dec.add_argument("--sample", dest="do_sample", action="store_true", default=None)
    ap.add_argument("--temperature", type=float)
    ap.add_argument("--top-p", type=float)
    ap.add_argument("--top-k", type=int)
    ap.add_argument("--plots-dir", help="default: results/<profile>/plots/heads")
    ap.add_argument("--no-plots", action="store_true")
    return ap


def _progress(total: int, label: str):
    """A tqdm bar on a terminal; silent otherwise. Returns (callback, close)."""
    if not sys.stderr.isatty():
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=label, unit="step", file=sys.stderr)
    return bar.update, bar.close


def _status(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from harness.config import resolve_run_config
    from harness.heads import parse_head_spec
    from harness.patching import PatchConfig, get_mode
    from harness.prompts import load_emotion_prompts, load_prompt_set
    from harness.results import check_output_path

    # validate everything that needs no model before loading one
    spec = parse_head_spec(args.head_spec)
    mode = get_mode(args.patch_mode)
    check_output_path(args.output)
    run = resolve_run_config(args.profile, {
        "do_sample": args.do_sample, "temperature": args.temperature, "top_k": args.top_k,
        "top_p": args.top_p, "samples": args.samples, "n_prompts": args.n_prompts,
        "max_tokens": args.max_tokens, "alignment": args.alignment, "seed": args.seed,
        "patch_generated": args.patch_generated, "target": args.target, "prompt_format": args.prompt_format})
    source_set, target_set = load_emotion_prompts(args.emotion), load_prompt_set(run.target)
    targets = target_set.head(run.n_prompts)
    sources = source_set.head(min(run.n_prompts, len(source_set.prompts)))
    gen_cfg = generation_config(run)
    PatchConfig(((0, 0),), mode.name, run.alignment, run.patch_generated)  # settings check, no model yet

    from harness.models import load_model

    t0 = time.perf_counter()
    handle = load_model(args.model)
    heads = spec.resolve(handle.shape.n_layers, handle.shape.n_heads, handle.name)
    patch = PatchConfig(heads, mode.name, run.alignment, run.patch_generated)
    fmt = handle.prompt_format if run.prompt_format == "model" else run.prompt_format
    doc = run_patching(handle, patch, gen_cfg, sources, targets, fmt, _status)
    doc.update(_settings_and_provenance(args, run, handle, spec, patch, gen_cfg, fmt, source_set, target_set))
    doc["wall_seconds"] = time.perf_counter() - t0
    from harness.results import file_stem, write_result

    write_result(doc, args.output)
    _status(f"wrote {args.output}")
    if not args.no_plots:
        from harness.plots import head_effect_plot

        folder = args.plots_dir or os.path.join("results", run.profile, "plots", "heads")
        name = f"{file_stem(handle.name)}_{args.emotion}_{spec.slug}_{mode.name}.png"
        _status(f"wrote {head_effect_plot(doc, os.path.join(folder, name))}")
    print(format_summary(doc))
    return 0


def generation_config(run):
    """The :class:`~harness.generation.GenerationConfig` of a resolved :class:`~harness.config.RunConfig`."""
    from harness.generation import GenerationConfig

    return GenerationConfig(max_new_tokens=run.max_tokens, do_sample=run.do_sample, temperature=run.temperature,
                            top_k=run.top_k, top_p=run.top_p, n_samples=run.samples, seed=run.seed,
                            batch_size=run.batch_size)


def run_patching(handle, patch, gen_cfg, sources, targets, prompt_format, status=lambda m: None) -> dict:
    """Baseline and patched generations, per-prompt scores and the summary table."""
    from harness.generation import generate
    from harness.metrics.next_token import keyword_tracks
    from harness.patching import MODES, baseline_hooks, capture_source, patch_hooks

    status(f"capturing source activations: {len(sources)} prompts, layers {sorted(patch.by_layer())}")
    src = capture_source(handle, sources, sorted(patch.by_layer()), MODES[patch.mode].needs,
                         prompt_format=prompt_format)
    chunks = -(-len(targets) * gen_cfg.n_samples // gen_cfg.batch_size)
    results = {}
    for label, hooks in (("baseline", baseline_hooks(patch)), ("patched", patch_hooks(handle, patch, src))):
        status(f"generating {label}: {len(targets)} prompts × {gen_cfg.n_samples} samples × "
               f"{gen_cfg.max_new_tokens} tokens")
        tick, close = _progress(chunks * gen_cfg.max_new_tokens, label)
        try:
            results[label] = generate(handle, targets, gen_cfg, prompt_format=prompt_format, hooks=hooks,
                                      progress=tick, track=keyword_tracks(handle.tokenizer))
        finally:
            close()
    return score_runs(results["baseline"], results["patched"], sources, gen_cfg.seed)


def table_metrics() -> list[str]:
    """The seed's table: sentiment, politeness, every emotion's keywords, then every emotion's log-prob."""
    from harness.prompts import keyword_emotions

    return ["sentiment", "politeness", *(f"{e}_keywords" for e in keyword_emotions()),
            *(f"{e}_logprob" for e in keyword_emotions())]


def score_runs(baseline, patched, sources, seed: int) -> dict:
    """Per-prompt texts and scores, and the summary table with bootstrap CIs over prompts."""
    from harness.metrics import get_metric
    from harness.stats import bootstrap_mean_ci, sign_test

    metrics = table_metrics()
    base, pat = baseline.by_prompt(), patched.by_prompt()
    prompts = []
    for i in sorted(base):
        entry = {"index": i, "target": base[i][0].prompt, "source_index": i % len(sources),
                 "source": sources[i % len(sources)], "seeds": [g.seed for g in base[i]],
                 "baseline": [g.text for g in base[i]], "patched": [g.text for g in pat[i]],
                 "identical": [b.token_ids == p.token_ids for b, p in zip(base[i], pat[i])], "scores": {}}
        for name in metrics:
            m = get_metric(name)
            b, p = [m.score(g) for g in base[i]], [m.score(g) for g in pat[i]]
            bm, pm = sum(b) / len(b), sum(p) / len(p)
            entry["scores"][name] = {"baseline": b, "patched": p, "baseline_mean": bm, "patched_mean": pm,
                                     "delta": pm - bm}
        prompts.append(entry)
    summary = []
    for k, name in enumerate(metrics):
        deltas = [e["scores"][name]["delta"] for e in prompts]
        ci = bootstrap_mean_ci(deltas, seed=seed * 1000 + k) if len(deltas) >= 2 else None
        row = {"metric": name,
               "baseline_mean": _mean(e["scores"][name]["baseline_mean"] for e in prompts),
               "patched_mean": _mean(e["scores"][name]["patched_mean"] for e in prompts),
               "delta": _mean(deltas), "ci_low": ci.ci_low if ci else float("nan"),
               "ci_high": ci.ci_high if ci else float("nan"), "ci_method": ci.method if ci else "n<2",
               "n_prompts": len(deltas),
               "prompts_changed": sum(d != 0 for d in deltas),
               "prompts_up": sum(d > 0 for d in deltas), "prompts_down": sum(d < 0 for d in deltas),
               "sign_p": sign_test(deltas, alternative="two-sided").p_value if len(deltas) >= 2 else float("nan")}
        if name.endswith("_keywords"):
            row["baseline_total"] = sum(sum(e["scores"][name]["baseline"]) for e in prompts)
            row["patched_total"] = sum(sum(e["scores"][name]["patched"]) for e in prompts)
        summary.append(row)
    identical = sum(all(e["identical"]) for e in prompts)
    return {"prompts": prompts, "summary": summary,
            "generations_identical": {"prompts": identical, "of": len(prompts)}}


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def _settings_and_provenance(args, run, handle, spec, patch, gen_cfg, fmt, source_set, target_set) -> dict:
    from harness.results import command_line, environment

    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command_line(),
        "settings": {"model": handle.name, "head_spec": spec.text, "heads": [f"{l}:{h}" for l, h in patch.heads],
                     "patch_mode": patch.mode, "emotion": args.emotion, "n_prompts": len(target_set.head(run.n_prompts)),
                     "patch": patch.to_dict(), "generation": gen_cfg.to_dict(), "run": run.to_dict(),
                     "prompt_format": fmt, "pairing": "target prompt i <- source prompt i mod n_sources"},
        "provenance": {"model": handle.provenance(), **environment(),
                       "prompt_files": {s.name: {"path": os.path.relpath(s.path), "sha256": s.sha256}
                                        for s in (source_set, target_set)}},
    }


def format_summary(doc: dict) -> str:
    s = doc["settings"]
    same = doc["generations_identical"]
    lines = [(f"{s['model']} heads {s['head_spec']} {s['patch_mode']}: {s['emotion']} -> {s['run']['target']}, "
              f"n={s['n_prompts']} prompts × {s['generation']['n_samples']} samples; "
              f"{same['prompts']}/{same['of']} prompts generated identical text"),
             (f"{'metric':22} {'baseline':>9} {'patched':>9} {'delta':>9}  {'95% CI (bootstrap over prompts)':<28} "
              f"up/down  sign p")]
    for r in doc["summary"]:
        ci = f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] {r['ci_method']}"
        lines.append(f"{r['metric']:22} {r['baseline_mean']:9.4f} {r['patched_mean']:9.4f} {r['delta']:+9.4f}  "
                     f"{ci:<28} {r.get('prompts_up', 0):>3}/{r.get('prompts_down', 0):<3} {r.get('sign_p', float('nan')):.3g}")
    return "\n".join(lines)


if __name__ == "__main__":
    run_cli(main)
