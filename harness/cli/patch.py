"""The seed's command: patch heads from emotion prompts into neutral prompts and measure.

    causal-heads patch --model gpt2 --profile baseline --head-spec 1:10 --emotion gratitude \\
        --max-tokens 30 --patch-mode pattern_v --output results/gpt2_gratitude_1_10.pkl

``python -m harness.head_patching`` (the research log's spelling) is the same command. What it
measures is in :mod:`harness.analysis.head_patching`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from harness.analysis.head_patching import SCHEMA, format_summary, generation_config
from harness.analysis.patch_job import PatchRequest, run_patch_job
from harness.cli.placement import add_placement_options
from harness.core.errors import run_cli
from harness.core.results import check_output_path, check_replaceable, check_writable, refuse_inputs_as_outputs
from harness.model.device import parse_batch_size, placement
from harness.patch.heads import parse_head_spec
from harness.patch.hooks import PatchConfig
from harness.patch.modes import get_mode
from harness.run.profiles import resolve_run_config
from harness.run.prompts import load_emotion_prompts, load_prompt_set


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="causal-heads patch", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m", help="registered name, HF id or local directory")
    ap.add_argument("--profile", default="baseline", help="settings bundle from harness/run/profiles.toml")
    ap.add_argument("--head-spec", required=True, help="e.g. 1:10, 1:10,0:0 or 1:*")
    ap.add_argument("--emotion", required=True, help="source emotion (prompts/<emotion>_prompts.json)")
    ap.add_argument("--patch-mode", default="pattern_v", help="z, pattern_v, v_only, pattern_only, zero, mean")
    ap.add_argument("--output", required=True, help="result file, .json or .pkl")
    ap.add_argument("--force", action="store_true", help="replace an --output file that holds another kind of document")
    ap.add_argument("--max-tokens", type=int)
    ap.add_argument("--n-prompts", type=int)
    ap.add_argument("--samples", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--alignment", help="end (default), last or mean_source")
    ap.add_argument(
        "--patch-generated",
        action="store_true",
        default=None,
        help="also patch generated positions (z-valued modes only)",
    )
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
    add_placement_options(ap)
    return ap


def _progress(total: int, label: str) -> tuple[Any, Callable[[], None]]:
    """A tqdm bar on a terminal; silent otherwise. Returns (callback, close)."""
    if not sys.stderr.isatty():
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=label, unit="tok", file=sys.stderr)
    return bar.update, bar.close


def _status(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    # validate everything that needs no model before loading one
    spec = parse_head_spec(args.head_spec)
    mode = get_mode(args.patch_mode)
    check_output_path(args.output)
    if args.plots_dir and not args.no_plots:
        check_writable("--plots-dir", args.plots_dir, folder=True)
    placement(args.device or "cpu", args.dtype)  # flags checked here; a profile's by its own check
    run = resolve_run_config(
        args.profile,
        {
            "do_sample": args.do_sample,
            "temperature": args.temperature,
            "top_k": args.top_k,
            "top_p": args.top_p,
            "samples": args.samples,
            "n_prompts": args.n_prompts,
            "max_tokens": args.max_tokens,
            "alignment": args.alignment,
            "seed": args.seed,
            "patch_generated": args.patch_generated,
            "target": args.target,
            "prompt_format": args.prompt_format,
            "device": args.device,
            "dtype": args.dtype,
            "batch_size": parse_batch_size(args.batch_size),
        },
    )
    placement(run.device, run.dtype)  # a missing GPU: exit 2 before any work
    source_set, target_set = load_emotion_prompts(args.emotion), load_prompt_set(run.target)
    refuse_inputs_as_outputs({"--output": args.output}, [source_set.path, target_set.path])
    check_replaceable("--output", args.output, SCHEMA, args.force)
    generation_config(run)  # settings checks, no model yet
    PatchConfig(((0, 0),), mode.name, run.alignment, run.patch_generated)
    request = PatchRequest(args.model, spec, mode.name, args.emotion, run, source_set, target_set)
    job = run_patch_job(
        request, args.output, plots_dir=args.plots_dir, plots=not args.no_plots, status=_status, progress=_progress
    )
    print(format_summary(job.document))
    return 0


if __name__ == "__main__":
    run_cli(main)
