"""List the metrics, or score texts with one: ``causal-heads metrics list``, ``causal-heads metrics score --metric NAME TEXT...``."""

from __future__ import annotations

import argparse
import json

from harness.core.errors import UserError, run_cli
from harness.metrics import get_metric, registry


def main(argv: list[str] | None = None) -> int:

    ap = argparse.ArgumentParser(prog="causal-heads metrics")
    sub = ap.add_subparsers(dest="command", required=True)
    sc = sub.add_parser("score", help="score texts with one or more metrics")
    sc.add_argument("--metric", action="append", required=True, help="metric name (repeatable)")
    sc.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sc.add_argument("texts", nargs="+")
    sub.add_parser("list", help="list the metrics with their ranges and directions")
    args = ap.parse_args(argv)
    if args.command == "list":
        for m in registry().values():
            state = f"  (unavailable: {m.needs})" if m.needs else ""
            print(f"{m.name:22} [{m.lower}, {m.upper}]  higher = {m.higher_means}: {m.description}{state}")
        return 0
    metrics = [get_metric(n) for n in args.metric]
    model_side = [m.name for m in metrics if m.on != "text"]
    if model_side:
        raise UserError(
            f"metric {model_side[0]!r} is model-side: it scores generations (claims, "
            f"causal-heads patch), not text; text metrics: "
            f"{', '.join(m.name for m in registry().values() if m.on == 'text')}"
        )
    rows = [{"text": t, **{m.name: m(t) for m in metrics}} for t in args.texts]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
    else:
        for row in rows:
            vals = "  ".join(f"{m.name}={row[m.name]:g}" for m in metrics)
            print(f"{vals}  {row['text']!r}" if len(rows) > 1 or len(metrics) > 1 else f"{row[metrics[0].name]:g}")
    return 0


if __name__ == "__main__":
    run_cli(main)
