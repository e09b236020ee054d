"""``causal-heads cache info|clear``: the run cache (:mod:`harness.claims.run_cache`)."""

from __future__ import annotations

import argparse
import json

from harness.claims.run_cache import ENV, RunCache, check_root
from harness.core.errors import UserError


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="causal-heads cache", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="where the run cache is, how many runs it holds and their size")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    sub.add_parser("clear", help="delete every stored run")
    args = ap.parse_args(argv)
    cache = RunCache.default()
    if cache is None:
        raise UserError(f"the run cache is off (${ENV}=off): nothing to show or clear")
    check_root(str(cache.root))
    if args.command == "clear":
        n = cache.clear()
        print(f"run cache {cache.root}: {n} run{'s' * (n != 1)} deleted")
        return 0
    data = cache.info()
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(f"run cache  {data['root']}")
        print(f"runs       {data['entries']} ({_size(data['bytes'])})")
        print(f"code       {data['code_sha256'][:16]} (entries of other code versions are never read)")
    return 0


if __name__ == "__main__":
    from harness.core.errors import run_cli

    run_cli(main)
