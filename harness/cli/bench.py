"""Benchmarks that report ratios against a reference run in the same process.

    causal-heads bench generation --model smollm2-135m --batch 70 --max-tokens 30 --json
    causal-heads bench distributed --model tiny-gpt2 --workers 2 --json
    causal-heads bench claims --model smollm2-135m --n-prompts 20 --random-heads 2 --json
    causal-heads bench attribution --model smollm2-135m --json
    causal-heads bench curve --model smollm2-135m --json

What each benchmark times is in :mod:`harness.analysis.bench`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from harness.analysis.bench import (
    bench_attribution,
    bench_cache,
    bench_claims,
    bench_generation,
    bench_precision,
    bench_sweep,
    bench_sweep_scaling,
)
from harness.analysis.curve import CurveOptions, bench_curve
from harness.cli.placement import add_placement_options, placement_kwargs
from harness.core.errors import UserError, run_cli
from harness.distributed.bench import bench_distributed
from harness.distributed.ray_backend import RayBackend


def _ints(text: str, flag: str, minimum: int = 1) -> list[int]:
    try:
        values = [int(x) for x in text.split(",")]
    except ValueError:
        raise UserError(f"{flag} {text!r}: expected comma-separated integers") from None
    if not values or min(values) < minimum:
        raise UserError(f"{flag} {text!r}: values must be >= {minimum}")
    return values


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="causal-heads bench")
    sub = ap.add_subparsers(dest="what", required=True)
    g = sub.add_parser("generation", help="harness generate vs HF generate, same process")
    g.add_argument("--model", default="smollm2-135m")
    g.add_argument("--batch", type=int, default=70)
    g.add_argument("--max-tokens", type=int, default=30)
    g.add_argument("--repeats", type=int, default=3)
    g.add_argument("--json", action="store_true", help="print one JSON object")
    add_placement_options(g, batch=False)
    w = sub.add_parser("sweep", help="all-heads sweep vs one forward per head, same process")
    w.add_argument("--model", default="smollm2-135m")
    w.add_argument("--n-prompts", type=int, default=20)
    w.add_argument(
        "--layers",
        default=None,
        help="comma-separated layers (all their heads); default every third layer, whose heads "
        "amortise the sweep's fixed cost (source capture, prefix) as a full sweep does",
    )
    w.add_argument("--emotion", default="gratitude")
    w.add_argument("--json", action="store_true")
    at = sub.add_parser("attribution", help="attribution patching vs the causal sweep over every head, same process")
    at.add_argument("--model", default="smollm2-135m")
    at.add_argument("--n-prompts", type=int, default=20)
    at.add_argument("--emotion", default="gratitude")
    at.add_argument("--json", action="store_true")
    sc = sub.add_parser("sweep-scaling", help="sweep time over prompt counts × layer counts")
    sc.add_argument("--model", default="smollm2-135m")
    sc.add_argument("--prompts", default="10,20,40,70", help="comma-separated prompt counts")
    sc.add_argument("--layer-counts", default="10,20,30", help="comma-separated counts of layers (from 0)")
    sc.add_argument("--emotion", default="gratitude")
    sc.add_argument("--json", action="store_true")
    cl = sub.add_parser("claims", help="the shipped claims' runs planned (shared lower layers) vs arm by arm")
    cl.add_argument("--model", default="smollm2-135m")
    cl.add_argument("--n-prompts", type=int, default=20)
    cl.add_argument("--random-heads", type=int, default=2)
    cl.add_argument("--claims", default=None, help="claims TOML file (default causal_tests/claims.toml)")
    cl.add_argument("--json", action="store_true")
    ca = sub.add_parser(
        "cache", help="the shipped claims cold (runs generated, stored) vs warm (read from the run cache)"
    )
    ca.add_argument("--model", default="smollm2-135m")
    ca.add_argument(
        "--n-prompts", type=int, default=None, help="at most this many prompts per claim (default: the claims')"
    )
    ca.add_argument("--claims", default=None, help="claims TOML file (default causal_tests/claims.toml)")
    ca.add_argument("--json", action="store_true")
    d = sub.add_parser("distributed", help="the same claims in this process and on Ray actors")
    d.add_argument("--model", default="tiny-gpt2")
    d.add_argument("--workers", type=int, default=2)
    d.add_argument("--n-prompts", type=int, default=12)
    d.add_argument("--ray-address", default=None, help="auto or HOST:PORT (default: a local cluster of --workers CPUs)")
    d.add_argument("--json", action="store_true")
    _curve_parser(sub)
    pr = sub.add_parser("precision", help="tokens in float32 vs a reduced precision, same seeds")
    pr.add_argument("--model", default="smollm2-135m")
    pr.add_argument("--n-prompts", type=int, default=70)
    pr.add_argument("--max-tokens", type=int, default=30)
    pr.add_argument("--json", action="store_true")
    add_placement_options(pr, batch=False)
    return ap


def _curve_parser(sub: argparse._SubParsersAction) -> None:
    cu = sub.add_parser("curve", help="a 10-point faithfulness curve planned as one run vs one run per size")
    cu.add_argument("--model", default="smollm2-135m")
    cu.add_argument("--emotion", default="gratitude")
    cu.add_argument("--sweep", default="causal_tests/discovery/smollm2-135m_gratitude.json")
    cu.add_argument("--sizes", default="1,2,3,5,8,13,21,34,55,89")
    cu.add_argument("--ablations", default="mean")
    cu.add_argument("--n-prompts", type=int, default=20)
    cu.add_argument("--json", action="store_true")


Result = tuple[dict, str]  # the benchmark's JSON object, and its one-look summary


def _precision(args: argparse.Namespace) -> Result:
    place = placement_kwargs(args)
    if place["dtype"] == "float32":
        raise UserError("--dtype: give the reduced precision to compare with float32 (bfloat16 or float16)")
    res = bench_precision(args.model, place["dtype"], args.n_prompts, args.max_tokens, place["device"])
    return res, json.dumps({k: res[k] for k in ("greedy", "sampled")})


def _distributed(args: argparse.Namespace) -> Result:
    if args.workers < 1 or args.n_prompts < 2:
        raise UserError("--workers must be >= 1 and --n-prompts >= 2")
    RayBackend.from_options(args.ray_address, args.workers)  # Ray installed, the address answers
    res = bench_distributed(args.model, args.workers, args.n_prompts, args.ray_address)
    return res, f"local {res['local_s']:.1f} s, ray {res['ray_s']:.1f} s, identical: {str(res['identical']).lower()}"


def _claims(args: argparse.Namespace) -> Result:
    if args.n_prompts < 2 or args.random_heads < 0:
        raise UserError("--n-prompts must be >= 2 and --random-heads >= 0")
    res = bench_claims(args.model, args.n_prompts, args.random_heads, args.claims)
    return res, (
        f"planned {res['planned_s']:.1f} s, arm by arm {res['arm_by_arm_s']:.1f} s, "
        f"speedup {res['speedup']:.2f}x, identical: {str(res['identical']).lower()}"
    )


def _cache(args: argparse.Namespace) -> Result:
    if args.n_prompts is not None and args.n_prompts < 2:
        raise UserError(f"--n-prompts {args.n_prompts}: must be >= 2")
    res = bench_cache(args.model, args.n_prompts, args.claims)
    return res, (
        f"cold {res['cold_s']:.1f} s, warm {res['warm_s']:.2f} s ({res['warm_share']:.1%} of cold), "
        f"identical: {str(res['identical']).lower()}"
    )


def _attribution(args: argparse.Namespace) -> Result:
    if args.n_prompts < 2:
        raise UserError(f"--n-prompts {args.n_prompts}: must be >= 2")
    res = bench_attribution(args.model, args.n_prompts, args.emotion)
    return res, (
        f"attribution {res['attribution_s']:.1f} s, sweep {res['sweep_s']:.1f} s ({res['ratio']:.0f}x), "
        f"Spearman {res['spearman']:+.3f}, top-{res['top']} overlap {res['top_overlap']}, "
        f"signs agree {res['sign_agreement']:.0%}"
    )


def _sweep_scaling(args: argparse.Namespace) -> Result:
    res = bench_sweep_scaling(
        args.model, _ints(args.prompts, "--prompts"), _ints(args.layer_counts, "--layer-counts"), args.emotion
    )
    lines = ["prompts  layers  heads  seconds  ms per head·prompt"] + [
        f"{r['n_prompts']:>7}  {r['layers']:>6}  {r['heads']:>5}  {r['seconds']:>7.1f}  {r['ms_per_head_prompt']:>8.2f}"
        for r in res["rows"]
    ]
    return res, "\n".join(lines)


def _sweep(args: argparse.Namespace) -> Result:
    layers = None if args.layers is None else _ints(args.layers, "--layers", minimum=0)
    res = bench_sweep(args.model, args.n_prompts, layers, args.emotion)
    return res, f"sweep {res['harness_s']:.1f} s, reference {res['reference_s']:.1f} s, speedup {res['speedup']:.1f}x"


def _generation(args: argparse.Namespace) -> Result:
    if args.batch < 1 or args.max_tokens < 1 or args.repeats < 1:
        raise UserError("--batch, --max-tokens and --repeats must be >= 1")
    res = bench_generation(args.model, args.batch, args.max_tokens, args.repeats, **placement_kwargs(args))
    return res, (
        f"harness {res['harness_tokens_per_s']:.1f} tok/s, HF generate "
        f"{res['hf_generate_tokens_per_s']:.1f} tok/s, ratio {res['ratio']:.3f}, "
        f"tokens match: {res['tokens_match']}"
    )


def _curve(args: argparse.Namespace) -> Result:
    opts = CurveOptions(
        emotion=args.emotion,
        sizes=tuple(_ints(args.sizes, "--sizes")),
        model=args.model,
        sweep=args.sweep,
        ablations=tuple(a.strip() for a in args.ablations.split(",") if a.strip()),
        n_prompts=args.n_prompts,
    )
    res = bench_curve(opts)
    return res, (
        f"{len(opts.sizes)}-point curve: planned {res['planned_s']:.1f} s, one run per size {res['separate_s']:.1f} s "
        f"({res['ratio']:.2f}x); identical: {res['identical']}"
    )


BENCHMARKS: dict[str, Callable[[argparse.Namespace], Result]] = {
    "curve": _curve,
    "generation": _generation,
    "sweep": _sweep,
    "attribution": _attribution,
    "sweep-scaling": _sweep_scaling,
    "claims": _claims,
    "cache": _cache,
    "distributed": _distributed,
    "precision": _precision,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    res, summary = BENCHMARKS[args.what](args)
    print(json.dumps(res, indent=1) if args.json else summary)
    return 0


if __name__ == "__main__":
    run_cli(main)
