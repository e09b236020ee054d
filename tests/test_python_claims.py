"""Claims written in Python and metrics registered by a project: one family with the TOML rows."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

# Modules a test here imports for the first time would be dropped again by the pytester fixture
# (it restores sys.modules), and torch's and scipy's extensions refuse a second import in one
# process: import them before any pytester test starts (see tests/test_claims.py).
import statsmodels.stats.multitest
import statsmodels.stats.power
import statsmodels.stats.weightstats  # noqa: F401
import torch

import harness.model.loading
from harness import Claim, evaluate, register_intervention, register_metric
from harness.core.errors import UserError
from harness.metrics import get_metric
from harness.patch.interventions import INTERVENTIONS
from harness.stats import adjust_pvalues

CONFTEST = '''
from harness import register_metric


@register_metric("exclamations", lower=0.0, higher_means="more exclamation marks")
def exclamations(text: str) -> float:
    """count of '!' in the text"""
    return float(text.count("!"))
'''

CLAIMS_USER = """
[[claim]]
id = "user_metric_row"
model = "tiny-gpt2"
heads = "0:3"
patch_mode = "zero"
source = "neutral"
metric = "exclamations"
direction = "increase"
n_prompts = 8
max_tokens = 4
tier = "fast"
"""

TEST_FILE = '''
import pytest
import torch

from harness import Claim, register_intervention

TINY = {"model": "tiny-gpt2", "n_prompts": 8, "max_tokens": 4, "tier": "fast"}


@pytest.mark.claim(Claim(id="python_identity", heads="1:10", patch_mode="z", source="neutral", metric="sentiment",
                         direction="equivalent", margin=0.01, **TINY))
def test_identity(claim_result):
    assert claim_result.supported, claim_result.explain()
    assert claim_result.delta == [0.0] * 8  # a follow-up a row cannot express


@pytest.mark.parametrize("heads", ["1:10", "1:2"])
@pytest.mark.claim(lambda heads: Claim(id="zero_" + heads.replace(":", "_"), heads=heads, patch_mode="zero",
                                       source="neutral", metric="sentiment", direction="increase", **TINY))
def test_zeroing(claim_result, heads):
    assert claim_result.claim.heads == heads and claim_result.error is None


STEER = torch.randn(96, generator=torch.Generator().manual_seed(0))  # tiny-gpt2's d_model


@register_intervention("steer_resid")
def steer_resid(resid, hook):
    """add a fixed random direction to the residual stream"""
    return resid + 4.0 * STEER


@pytest.mark.claim(Claim(id="steering", intervention="steer_resid", hook_points=["blocks.0.hook_resid_post"],
                         metric="sentiment", direction="increase", **TINY))
def test_steering(claim_result):
    assert claim_result.error is None, claim_result.explain()
    assert claim_result.text_changed["patched_vs_baseline"] > 0  # the vector moved the text
'''


def _project(pytester):
    pytester.makeconftest(CONFTEST)
    (pytester.path / "claims_user.toml").write_text(CLAIMS_USER)
    pytester.makepyfile(test_user_claims=TEST_FILE)


def test_toml_rows_python_claims_and_a_user_metric_are_one_family(pytester):
    _project(pytester)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, failed=1)  # the TOML row's claim is not supported on a random model
    doc = json.loads((pytester.path / "reports" / "findings.json").read_text())
    by_id = {c["claim"]["id"]: c for c in doc["claims"]}
    assert sorted(by_id) == ["python_identity", "steering", "user_metric_row", "zero_1_10", "zero_1_2"]
    assert by_id["user_metric_row"]["claim"]["metric"] == "exclamations"
    assert by_id["steering"]["claim"]["intervention"] == "steer_resid"
    assert by_id["steering"]["claim"]["hook_points"] == ["blocks.0.hook_resid_post"]
    assert "intervention" not in by_id["zero_1_2"]["claim"]  # head patching records are as before
    raw = [c["p_raw"] for c in doc["claims"]]
    assert [c["p_adjusted"] for c in doc["claims"]] == pytest.approx(adjust_pvalues(raw, "holm"), abs=0)
    assert doc["correction"] == "holm"

    # -k head_1_10 selects a file's claims and Python claims alike
    result = pytester.runpytest_subprocess("--co", "-q", "-p", "no:cacheprovider", "-k", "head_1_10")
    selected = sorted(line for line in result.outlines if "::" in line)
    assert selected == ["test_user_claims.py::test_identity", "test_user_claims.py::test_zeroing[1:10]"], selected


@pytest.mark.slow  # a pytest run and an evaluate() of the same claims (~11 s)
def test_evaluate_gives_the_pytest_runs_numbers(tiny_gpt2, pytester):  # tiny_gpt2: its modules imported before pytester snapshots sys.modules
    _project(pytester)
    pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    doc = json.loads((pytester.path / "reports" / "findings.json").read_text())

    @register_metric("exclamations", lower=0.0, higher_means="more exclamation marks")
    def exclamations(text: str) -> float:  # the conftest's metric, registered in this process
        return float(text.count("!"))

    steer = torch.randn(96, generator=torch.Generator().manual_seed(0))

    @register_intervention("steer_resid")
    def steer_resid(resid, hook):  # the test file's intervention, registered in this process
        return resid + 4.0 * steer

    try:
        tiny = {"model": "tiny-gpt2", "n_prompts": 8, "max_tokens": 4, "tier": "fast"}
        claims = [
            *harness.load_claims(str(pytester.path / "claims_user.toml")),
            Claim(id="python_identity", heads="1:10", patch_mode="z", source="neutral", metric="sentiment",
                  direction="equivalent", margin=0.01, **tiny),
            *(Claim(id="zero_" + h.replace(":", "_"), heads=h, patch_mode="zero", source="neutral",
                    metric="sentiment", direction="increase", **tiny) for h in ("1:10", "1:2")),
            Claim(id="steering", intervention="steer_resid", hook_points=["blocks.0.hook_resid_post"],
                  metric="sentiment", direction="increase", **tiny),
        ]
        order = {c["claim"]["id"]: k for k, c in enumerate(doc["claims"])}
        findings = evaluate(sorted(claims, key=lambda c: order[c.id]), correction="holm", device="cpu", dtype="float32")
    finally:
        from harness import metrics

        metrics._REGISTERED.pop("exclamations", None)
        INTERVENTIONS.pop("steer_resid", None)
    for rec, res in zip(doc["claims"], findings, strict=True):
        assert res.claim.id == rec["claim"]["id"]
        assert (res.verdict, res.p_raw, res.p_adjusted) == (rec["verdict"], rec["p_raw"], rec["p_adjusted"])
        assert np.array_equal(res.delta, rec["per_prompt"]["delta"])
    out = pytester.path / "again.json"
    findings.to_json(str(out))
    assert json.loads(out.read_text())["claims"][0]["p_adjusted"] == doc["claims"][0]["p_adjusted"]
    page = findings.html().replace("<wbr>", "")
    assert page.count("<tr><td>") == 5 and "<td>zero_1_10</td>" in page and "1 supported" in page
    assert "zero_1_10" in findings.markdown()
    assert "| steering |  | intervention steer_resid at blocks.0.hook_resid_post |" in findings.markdown()


def test_a_mark_without_the_fixture_and_the_fixture_without_a_mark_are_usage_errors(pytester):
    pytester.makepyfile(test_bad=textwrap.dedent('''
        import pytest
        from harness import Claim

        @pytest.mark.claim(Claim(id="c", model="tiny-gpt2", heads="1:10", patch_mode="z", source="neutral",
                                 metric="sentiment", direction="increase", tier="fast"))
        def test_marked(): pass
    '''))
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    assert result.ret == 4 and "test_bad.py::test_marked: marked with a claim but takes no claim_result" in \
        result.stderr.str() + result.stdout.str()
    pytester.makepyfile(test_bad="def test_unmarked(claim_result): pass\n")
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    assert result.ret == 4 and "the claim_result fixture needs a @pytest.mark.claim(Claim(...))" in \
        result.stderr.str() + result.stdout.str()


def test_registering_a_metric_name_twice_is_refused_and_a_near_miss_is_suggested():
    @register_metric("question_marks_test", lower=0.0)
    def first(text: str) -> float:
        return float(text.count("?"))

    try:
        with pytest.raises(UserError, match="metric 'question_marks_test' is registered twice"):
            register_metric("question_marks_test")(lambda text: 0.0)
        with pytest.raises(UserError, match="metric 'sentiment' is registered twice: a built-in metric"):
            register_metric("sentiment")(lambda text: 0.0)
        with pytest.raises(UserError, match="Did you mean 'question_marks_test'"):
            get_metric("question_mark_test")
        with pytest.raises(UserError, match="field 'metric.*Did you mean 'question_marks_test'"):
            Claim(id="c", model="tiny-gpt2", heads="1:10", patch_mode="z", source="neutral",
                  metric="question_mark_test", direction="increase")
        assert get_metric("question_marks_test")("why? how?") == 2.0
    finally:
        from harness import metrics

        metrics._REGISTERED.pop("question_marks_test", None)


def test_a_registered_patch_mode_runs_through_the_engine_and_must_declare_what_it_reads(tiny_gpt2):
    from harness import register_mode
    from harness.patch.hooks import PatchConfig, patch_hooks
    from harness.patch.modes import MODES, get_mode
    from harness.patch.source import capture_source
    from harness.run.generation import forward

    # every built-in mode is one registered function
    assert {"z", "pattern_v", "v_only", "pattern_only", "zero", "mean"} <= set(MODES)
    assert all(callable(m.value) and m.value.__module__ == "harness.patch.modes" for m in MODES.values())

    @register_mode("twice_z_test", needs=("z",), description="twice the source z")
    def twice_z(row):
        z = row.source.z[row.layer][row.index][:, row.head]
        return 2 * (z.mean(0).expand(len(row.qs_t), -1) if row.qs_s is None else z[row.qs_s])

    @register_mode("sneaky_test", needs=("z",))
    def sneaky(row):
        return row.source.v[row.layer][row.index][:, row.kv][row.qs_s]

    try:
        prompts = ["The weather today is", "My favourite food is"]
        zero = forward(tiny_gpt2, prompts)[0]
        outs = {}
        for name in ("z", "twice_z_test"):
            cfg = PatchConfig(((1, 10),), name, "last")
            src = capture_source(tiny_gpt2, prompts[::-1], [1], get_mode(name).needs)
            outs[name] = forward(tiny_gpt2, prompts, hooks=patch_hooks(tiny_gpt2, cfg, src))[0]
        assert not torch.equal(outs["twice_z_test"], outs["z"]) and not torch.equal(outs["z"], zero)
        cfg = PatchConfig(((1, 10),), "sneaky_test", "last")
        src = capture_source(tiny_gpt2, prompts[::-1], [1], get_mode("sneaky_test").needs)
        with pytest.raises(UserError, match=r"patch mode 'sneaky_test' reads source 'v' but declared needs=\(z\)"):
            forward(tiny_gpt2, prompts, hooks=patch_hooks(tiny_gpt2, cfg, src))
        with pytest.raises(UserError, match="patch mode 'twice_z_test' is registered twice"):
            register_mode("twice_z_test")(lambda row: row.qs_t)
        with pytest.raises(UserError, match="needs 'q' is not one of z, pattern, v"):
            register_mode("bad_test", needs=("q",))
    finally:
        MODES.pop("twice_z_test", None)
        MODES.pop("sneaky_test", None)


def test_an_installed_package_contributes_metrics_modes_and_interventions_through_entry_points(tmp_path, monkeypatch):
    """A separate package's entry points (groups causal_heads.metrics, causal_heads.modes and
    causal_heads.interventions) are imported on first use, and what they register is named in
    claims like the built-in ones."""
    from harness import metrics
    from harness.core.extensions import load_entry_points
    from harness.patch import modes

    (tmp_path / "extra_pkg_test.py").write_text(textwrap.dedent('''
        from harness import register_metric, register_mode

        @register_metric("ep_metric_test", lower=0.0)
        def ep_metric(text):
            return float(len(text))

        @register_mode("ep_mode_test", description="control: z set to 0, from a package")
        def ep_mode(row):
            import torch
            return torch.zeros(len(row.qs_t), row.d_head)
    '''))
    (tmp_path / "extra_iv_test.py").write_text(textwrap.dedent('''
        from harness import register_intervention

        @register_intervention("ep_intervention_test")
        def ep_intervention(resid, hook):
            return -resid
    '''))
    dist = tmp_path / "extra_pkg_test-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: extra-pkg-test\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[causal_heads.metrics]\nextra = extra_pkg_test\n\n"
                                           "[causal_heads.modes]\nextra = extra_pkg_test\n\n"
                                           "[causal_heads.interventions]\nextra = extra_iv_test\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    load_entry_points.cache_clear()
    try:
        assert get_metric("ep_metric_test")("abc") == 3.0
        assert modes.get_mode("ep_mode_test").needs == frozenset()
        claim = Claim(id="ep", model="tiny-gpt2", heads="1:10", patch_mode="ep_mode_test", source="neutral",
                      metric="ep_metric_test", direction="increase")
        assert (claim.patch_mode, claim.metric) == ("ep_mode_test", "ep_metric_test")
        assert "ep_intervention_test" not in INTERVENTIONS  # its module is imported on the first lookup
        claim = Claim(id="ep", model="tiny-gpt2", intervention="ep_intervention_test", metric="ep_metric_test",
                      hook_points=["blocks.0.hook_resid_post"], direction="increase")
        assert INTERVENTIONS["ep_intervention_test"].origin.endswith("extra_iv_test.py:4 ep_intervention")
    finally:
        INTERVENTIONS.pop("ep_intervention_test", None)
        metrics._REGISTERED.pop("ep_metric_test", None)
        modes.MODES.pop("ep_mode_test", None)
        load_entry_points.cache_clear()
