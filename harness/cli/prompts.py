"""``causal-heads prompts``: list the shipped prompt sets with token-length statistics."""

from __future__ import annotations

from harness.cli.placement import add_placement_options, placement_kwargs
from harness.model.loading import load_model
from harness.run.prompts import (
    PROMPT_SUFFIX,
    check_prompt_folder,
    data_names,
    load_prompt_set,
    token_length_stats,
)


def main(argv: list[str] | None = None) -> int:
    """``python -m harness prompts stats --model M``: validate every set and print token lengths."""
    import argparse

    ap = argparse.ArgumentParser(prog="causal-heads prompts")
    sub = ap.add_subparsers(dest="command", required=True)
    st = sub.add_parser("stats", help="validate all prompt sets and print their token-length distribution")
    st.add_argument("--model", default="smollm2-135m")
    st.add_argument(
        "--prompt-format",
        choices=("plain", "chat", "model"),
        default="model",
        help="'model' = the model's default format (chat for smollm2-135m)",
    )
    add_placement_options(st, batch=False)
    args = ap.parse_args(argv)
    check_prompt_folder()  # before the model loads: a missing or empty folder is not an empty table
    handle = load_model(args.model, **placement_kwargs(args))
    fmt = handle.prompt_format if args.prompt_format == "model" else args.prompt_format
    print(
        f"{'set':10} {'n':>3} {'format':6} {'min':>4} {'q1':>6} {'median':>6} {'q3':>6} {'mean':>6} {'max':>4}"
        f"   ({handle.name} tokenizer)"
    )
    for name in data_names(PROMPT_SUFFIX):
        s = token_length_stats(handle.tokenizer, load_prompt_set(name), fmt)
        print(
            f"{s['set']:10} {s['n']:>3} {s['format']:6} {s['min']:>4} {s['q1']:>6.1f} {s['median']:>6.1f} "
            f"{s['q3']:>6.1f} {s['mean']:>6.1f} {s['max']:>4}"
        )
    return 0


if __name__ == "__main__":
    from harness.core.errors import run_cli

    run_cli(main)
