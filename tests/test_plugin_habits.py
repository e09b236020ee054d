"""pytest as researchers drive it (reliability round 2, classes 3 and 9): xdist, --lf, -k, outputs
that name the run's inputs, failed writes, skipif and SIGTERM. Every run is a real pytest
process on the tiny model (pytester, subprocess)."""

from __future__ import annotations

import json

import pytest

from harness.claims.spec import claims_toml

CLAIM = {"model": "tiny-gpt2", "heads": "1:10", "patch_mode": "z", "source": "gratitude",
         "metric": "gratitude_logprob", "direction": "increase", "n_prompts": 6, "max_tokens": 3,
         "tier": "fast"}  # fmt: skip
COMMON = ["-q", "-p", "no:randomly"]


def _claims(path, *ids, **extra):
    path.write_text(claims_toml([{**CLAIM, "id": i, "heads": f"1:{n}", **extra} for n, i in enumerate(ids)]))
    return path


@pytest.mark.slow  # three pytest -n runs (~15 s)
def test_xdist_is_refused_before_any_work_and_other_suites_keep_it(pytester):
    """`pytest -n 2` on two claim files: workers evaluated and skipped writing, the controller wrote
    nothing, exit 0 with an older findings document left in place. Now: exit 2, one message, no
    model loaded, the old findings untouched; a suite without claims runs under -n as before."""
    pytest.importorskip("xdist")
    _claims(pytester.path / "claims.toml", "a")
    _claims(pytester.path / "more_claims.toml", "b")
    old = pytester.path / "findings.json"
    old.write_text('{"schema": "causal-heads/findings", "schema_version": 1, "claims": []}')
    res = pytester.runpytest_subprocess("-n", "2", "--findings", str(old), *COMMON)
    assert res.ret == 2, res.stdout.str()
    assert "claims cannot run under pytest-xdist (-n)" in res.stdout.str()
    assert json.loads(old.read_text())["claims"] == []
    # a test function marked with a claim: fails before any generation, exit 2
    (pytester.path / "claims.toml").unlink()
    (pytester.path / "more_claims.toml").unlink()
    pytester.makepyfile(test_marked=f"""
        import pytest
        from harness import Claim
        @pytest.mark.claim(Claim(**{dict(CLAIM, id="m")!r}))
        def test_m(claim_result):
            assert claim_result.supported
        def test_plain():
            pass
    """)
    res = pytester.runpytest_subprocess("-n", "2", "--findings", str(old), *COMMON)
    assert res.ret == 2 and "claims cannot run under pytest-xdist" in res.stdout.str()
    assert json.loads(old.read_text())["claims"] == []
    (pytester.path / "test_marked.py").unlink()
    pytester.makepyfile(test_other="def test_a():\n    pass\ndef test_b():\n    pass\n")
    res = pytester.runpytest_subprocess("-n", "2", *COMMON)
    assert res.ret == 0 and "2 passed" in res.stdout.str()


@pytest.mark.slow  # four pytest runs (~33 s)
def test_last_failed_and_node_ids_write_a_partial_document_that_regress_refuses(pytester, main_in_process):
    """`--lf` rewrote reports/findings.json as complete: true with a subset (files without a failure
    are not even collected), so regress reported a false LOST. The selection is now recorded and
    the document is not complete; regress refuses it in one line."""
    _claims(pytester.path / "claims.toml", "up")  # not supported on the tiny model: it fails
    _claims(pytester.path / "other_claims.toml", "same", source="neutral", metric="sentiment",
            direction="equivalent", margin=0.05)  # the identity patch: supported, passes
    findings = pytester.path / "findings.json"
    first = pytester.runpytest_subprocess("--findings", str(findings), *COMMON)
    doc = json.loads(findings.read_text())
    assert doc["complete"] is True and "selection" not in doc
    assert first.ret == 1  # one of the two directions is not supported: it fails, and --lf reruns it
    failed = [c["claim"]["id"] for c in doc["claims"] if c["verdict"] != "supported"]
    assert len(failed) == 1
    partial = pytester.path / "lf.json"
    pytester.runpytest_subprocess("--lf", "--findings", str(partial), *COMMON)
    lf = json.loads(partial.read_text())
    assert lf["complete"] is False and lf["selection"] == {"last_failed": True}
    assert [c["claim"]["id"] for c in lf["claims"]] == failed
    refused = main_in_process("harness", "regress", str(findings), str(partial))
    assert refused.returncode == 2 and "chose part of its claims (last-failed=True" in refused.stderr
    node = pytester.path / "node.json"
    pytester.runpytest_subprocess("claims.toml::up-head_1_0", "--findings", str(node), "-p", "no:cacheprovider", *COMMON)
    nodes = json.loads(node.read_text())
    assert nodes["selection"] == {"node_ids": ["claims.toml::up-head_1_0"]} and nodes["complete"] is False


@pytest.mark.parametrize("case", [
    "findings is the claims file", "html is the findings",
    pytest.param("findings is other json", marks=pytest.mark.slow),  # its --force-outputs run evaluates (~13 s)
    "reports is a file", "findings is a prompt set"])  # fmt: skip
def test_outputs_that_would_destroy_inputs_or_other_files_are_refused_before_work(pytester, case):
    """`--findings` naming the claims file or a prompt set, or an unrelated JSON file, replaced it;
    `--html X --findings X` let the report replace the findings; a findings location that cannot be
    written was a red line at the end with exit 0. All are one line, exit 2, before any model loads."""
    claims = _claims(pytester.path / "claims.toml", "c")
    before = claims.read_text()
    other = pytester.path / "notes.json"
    other.write_text('{"mine": 1}')
    args = {
        "findings is the claims file": ["--findings", str(claims)],
        "html is the findings": ["--findings", "f.json", "--html", "f.json"],
        "findings is other json": ["--findings", str(other)],
        "reports is a file": [],
        "findings is a prompt set": [],
    }[case]
    if case == "reports is a file":
        (pytester.path / "reports").write_text("a file where the default findings folder goes")
    if case == "findings is a prompt set":
        prompts = pytester.path / "myprompts"
        prompts.mkdir()
        import shutil

        from harness.run.prompts import PROMPTS_DIR

        for name in ("neutral_prompts.json", "gratitude_prompts.json", "gratitude_keywords.json"):
            shutil.copy(f"{PROMPTS_DIR}/{name}", prompts / name)
        args = ["--findings", str(prompts / "neutral_prompts.json")]
        pytester.makeini(f"[pytest]\ncausal_heads_prompts = {prompts.name}\n")
    res = pytester.runpytest_subprocess(str(claims), *args, "-p", "no:cacheprovider", *COMMON)
    out = res.stdout.str() + res.stderr.str()
    assert res.ret == 2, out
    assert "Traceback" not in out and "passed" not in out and "failed" not in out
    assert claims.read_text() == before and json.loads(other.read_text()) == {"mine": 1}
    if case == "findings is other json":
        assert "pass --force-outputs to replace it" in out
        forced = pytester.runpytest_subprocess(str(claims), *args, "--force-outputs", "-p", "no:cacheprovider",
                                               *COMMON)  # fmt: skip
        assert forced.ret in (0, 1) and json.loads(other.read_text())["schema"] == "causal-heads/findings"


@pytest.mark.slow  # a whole claims run (~9 s)
def test_a_findings_write_that_fails_at_the_end_is_a_non_zero_exit(pytester):
    """The destination became a folder during the run: a red line and exit 0 before; now exit 3,
    no temporary left beside it."""
    pytester.makepyfile(test_it=f"""
        import os
        import pytest
        from harness import Claim
        @pytest.mark.claim(Claim(**{dict(CLAIM, id="m")!r}))
        def test_m(claim_result):
            os.makedirs("out/f.json/occupied")
    """)
    res = pytester.runpytest_subprocess("--findings", "out/f.json", "-p", "no:cacheprovider", *COMMON)
    out = res.stdout.str()
    assert res.ret == 3, out
    assert "could not" in out and "f.json" in out
    assert sorted(p.name for p in (pytester.path / "out").iterdir()) == ["f.json"]


@pytest.mark.slow  # a whole claims run (~12 s)
def test_skipif_claims_leave_the_family_and_the_run_stays_complete(pytester):
    """A skipif-skipped claim stayed in the family and in not_run: every such document was
    complete: false and refused by regress and nightly."""
    pytester.makepyfile(test_it=f"""
        import sys
        import pytest
        from harness import Claim
        @pytest.mark.skipif(sys.platform != "nowhere", reason="not on this platform")
        @pytest.mark.claim(Claim(**{dict(CLAIM, id="skipped")!r}))
        def test_skipped(claim_result):
            pass
        @pytest.mark.claim(Claim(**{dict(CLAIM, id="ran", heads="1:3")!r}))
        def test_ran(claim_result):
            pass
    """)
    res = pytester.runpytest_subprocess("--findings", "f.json", "-p", "no:cacheprovider", *COMMON)
    assert res.ret == 0, res.stdout.str()
    doc = json.loads((pytester.path / "f.json").read_text())
    assert doc["complete"] is True and doc["not_run"] == [] and [c["claim"]["id"] for c in doc["claims"]] == ["ran"]


def test_the_plugin_leaves_sigterm_alone_in_suites_without_claims(pytester):
    """Installed, the plugin changed SIGTERM handling in every project's pytest run."""
    pytester.makepyfile(test_sig="""
        import signal
        def test_default():
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    """)
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", *COMMON)
    assert res.ret == 0, res.stdout.str()


@pytest.mark.slow  # three pytest processes (~31 s); tests/test_run_cache.py covers the cache per commit
def test_pytest_k_after_a_full_run_reads_its_runs_from_the_cache(pytester, monkeypatch):
    """The researcher's loop: a full run, then `pytest -k` on one claim. The second run generates
    nothing (the baseline and the patched run are read from the run cache), says so, and gives
    the claim the same numbers; `--no-cache` generates them again."""
    monkeypatch.setenv("CAUSAL_HEADS_RUN_CACHE", str(pytester.path / "runs"))
    _claims(pytester.path / "claims.toml", "up", "other")
    full = pytester.path / "full.json"
    pytester.runpytest_subprocess("--findings", str(full), "-s", *COMMON)
    again = pytester.path / "k.json"
    res = pytester.runpytest_subprocess("-k", "up", "--findings", str(again), "-s", *COMMON)
    res.stdout.fnmatch_lines(["*runs: 2 of 2 read from the run cache*"])
    assert "runs 1/1" not in res.stdout.str()  # no group generated
    old = {c["claim"]["id"]: c for c in json.loads(full.read_text())["claims"]}["up"]
    new = json.loads(again.read_text())["claims"][0]
    assert new["claim"]["id"] == "up" and new["per_prompt"] == old["per_prompt"] and new["effect"] == old["effect"]
    cold = pytester.runpytest_subprocess("-k", "up", "--no-cache", "--findings", str(again), "-s", *COMMON)
    assert "read from the run cache" not in cold.stdout.str() and "runs 1/1" in cold.stdout.str()
