"""The how-to pages' examples run, so they cannot rot.

Conventions for a page under docs/how-to/: a ```toml file=NAME block is written to NAME; each
```python block runs in order in one namespace per page; each ``$ command`` line of a
```console block runs in a shell and must exit 0. Everything runs in an empty folder.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys

import pytest

from harness import metrics
from harness.patch.interventions import INTERVENTIONS
from harness.patch.modes import MODES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = sorted(glob.glob(os.path.join(ROOT, "docs", "how-to", "*.md")))
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```$", re.M | re.S)


def blocks(page: str) -> list[tuple[str, str]]:
    return [(info.strip(), body) for info, body in FENCE.findall(open(page).read())]


def test_every_how_to_the_issue_names_exists_and_has_a_runnable_example():
    names = {os.path.basename(p) for p in PAGES}
    assert {"add-a-claim.md", "add-an-emotion.md", "add-a-metric.md", "add-a-patch-mode.md",
            "add-a-model-architecture.md", "add-an-intervention.md", "claim-a-head-does-nothing.md"} <= names
    for page in PAGES:
        assert any(info.split()[0] in ("python", "console") for info, _ in blocks(page) if info), page


@pytest.mark.parametrize("page", PAGES, ids=os.path.basename)
def test_how_to_examples_run(page, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CAUSAL_HEADS_PROMPTS", raising=False)
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    namespace: dict = {"__name__": "__howto__"}
    registered = dict(metrics._REGISTERED)  # a page may register a metric or mode: not for the tests after it
    modes, interventions = dict(MODES), dict(INTERVENTIONS)
    try:
        for info, body in blocks(page):
            kind, _, rest = info.partition(" ")
            if kind == "toml" and rest.startswith("file="):
                (tmp_path / rest.removeprefix("file=")).write_text(body)
            elif kind == "python":
                exec(compile(body, f"{os.path.basename(page)}:python", "exec"), namespace)
            elif kind == "console":
                for line in body.splitlines():
                    if line.startswith("$ "):
                        proc = subprocess.run(line[2:], shell=True, cwd=tmp_path, env=env, capture_output=True,
                                              text=True, timeout=600, check=False)
                        assert proc.returncode == 0, f"{line}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    finally:
        os.environ.pop("CAUSAL_HEADS_PROMPTS", None)  # a page may point the prompt folder at its own
        metrics._REGISTERED.clear()
        metrics._REGISTERED.update(registered)
        MODES.clear()
        MODES.update(modes)
        INTERVENTIONS.clear()
        INTERVENTIONS.update(interventions)


def test_the_claim_field_table_is_the_claim_models_own():
    """Issue 40: claims.md had no field table. It is generated from the Claim model; a field
    without a line in FIELD_HELP, or a stale table, fails here."""
    import os

    from harness.claims.field_table import FIELD_HELP, with_table
    from harness.claims.spec import Claim

    assert set(Claim.model_fields) == set(FIELD_HELP)
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "claims.md")
    text = open(path, encoding="utf-8").read()
    assert text == with_table(text), "regenerate: python -m harness.claims.field_table (docs/claims.md)"
