"""Pre-register claims files: record each claim, with the time, before it is evaluated.

    causal-heads preregister causal_tests/claims.toml [...] [--findings reports/findings.json]

Writes (or extends) ``<file>.registry.json`` beside each claims file; commit it with the file.
Claims already evaluated (in the registry's ledger, or in the findings document ``--findings``,
default ``reports/findings.json`` when it exists) are registered too, but findings will say they
were registered after their first evaluation. See :mod:`harness.claims.registry`.
"""

from __future__ import annotations

import argparse
import os

from harness.claims.registry import register, registry_path
from harness.claims.spec import load_claims
from harness.core.errors import UserError, run_cli
from harness.core.results import check_writable
from harness.findings.schema import load_document

DEFAULT_FINDINGS = os.path.join("reports", "findings.json")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="causal-heads preregister", description=__doc__.splitlines()[0])
    ap.add_argument("claims", nargs="+", metavar="CLAIMS.toml", help="claims files to register")
    ap.add_argument("--findings", default=None, help="a findings document whose evaluations came first "
                    f"[{DEFAULT_FINDINGS} when it exists]")  # fmt: skip
    ap.add_argument(
        "--already-evaluated",
        action="store_true",
        help="the claims were run before, with no findings to show when: register them as not pre-registered",
    )
    args = ap.parse_args(argv)
    loaded = []
    for path in args.claims:  # every file and its registry checked before anything is written
        if not path.endswith(".toml"):
            raise UserError(f"{path}: a claims file is a .toml file")
        loaded.append((path, load_claims(path)))
        check_writable("registry", registry_path(path))
    findings_path = args.findings or (DEFAULT_FINDINGS if os.path.isfile(DEFAULT_FINDINGS) else None)
    findings = load_document(findings_path) if findings_path else None
    for path, claims in loaded:
        statuses = register(path, claims, findings, already_evaluated=args.already_evaluated)
        late = [s for s in statuses if not s["before_first_evaluation"]]
        print(f"{registry_path(path)}: {len(statuses)} claims registered")
        for s in late:
            print(f"  {s['id']}: first evaluated {s['first_evaluated']}, before this registration: not pre-registered")
    return 0


if __name__ == "__main__":
    run_cli(main)
