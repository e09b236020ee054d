"""The all-heads sweep equals patching one head at a time."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.analysis.sweep import reference_sweep, sweep
from harness.patch.modes import MODES

TARGETS = ["The train leaves at", "Hello there, how are", "Tell me about the weather in your town today."]
SOURCES = ["Thank you so much for your help, I am grateful", "Thanks!", "I really appreciate it, thank you"]


@pytest.mark.parametrize("mode", list(MODES))
def test_sweep_equals_one_head_at_a_time(tiny_model, mode):
    s = sweep(tiny_model, TARGETS, SOURCES, "gratitude", mode=mode)
    heads = [(layer, h) for layer in range(tiny_model.shape.n_layers) for h in range(tiny_model.shape.n_heads)]
    ref = reference_sweep(tiny_model, TARGETS, SOURCES, "gratitude", heads, mode=mode)
    got = np.stack([s.deltas[layer, h] for layer, h in heads])
    assert np.abs(got - ref).max() < 1e-3
    assert np.abs(ref).max() > 1e-2  # the patches do something, so the equality is not vacuous
    top = s.ranked()[0]
    assert top[2] == pytest.approx(got.mean(-1).max())


@pytest.mark.parametrize("targets", [["Hi", "Hello"], ["Hi", "Tell me about the weather in your town today."]])
def test_sweep_handles_one_token_prompts(tiny_model, targets):
    s = sweep(tiny_model, targets, SOURCES[:2], "gratitude", layers=[1])
    heads = [(1, h) for h in range(tiny_model.shape.n_heads)]
    ref = reference_sweep(tiny_model, targets, SOURCES[:2], "gratitude", heads)
    assert np.abs(np.stack([s.deltas[h] for h in heads]) - ref).max() < 1e-3


def test_sweep_modes_differ_where_they_should(tiny_llama):
    """pattern_v is z by construction; v_only and pattern_only are other patches (GQA model)."""
    by_mode = {m: sweep(tiny_llama, TARGETS, SOURCES, "gratitude", mode=m).deltas for m in ("z", "pattern_v",
                                                                                           "v_only", "pattern_only")}
    assert np.abs(by_mode["z"] - by_mode["pattern_v"]).max() < 1e-4
    assert np.abs(by_mode["z"] - by_mode["v_only"]).max() > 1e-2
    assert np.abs(by_mode["v_only"] - by_mode["pattern_only"]).max() > 1e-2


@pytest.mark.model
def test_sweep_equals_one_head_at_a_time_on_the_default_model(smollm2):
    heads = [(21, 1), (13, 6), (0, 0)]
    for mode in ("z", "v_only"):
        s = sweep(smollm2, TARGETS[:2], SOURCES[:2], "gratitude", layers=[0, 13, 21], mode=mode)
        ref = reference_sweep(smollm2, TARGETS[:2], SOURCES[:2], "gratitude", heads, mode=mode)
        got = np.stack([s.deltas[layer, h] for layer, h in heads])
        assert np.abs(got - ref).max() < 1e-3, mode


def test_sweep_cli_writes_ranked_json_and_heatmap(cli, main_in_process, tmp_path):
    out = tmp_path / "s.json"
    proc = cli("harness", "sweep", "--model", "tiny-llama-gqa", "--emotion", "gratitude", "--n-prompts", "4",
               "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["schema"] == "causal-heads/sweep" and len(doc["ranked"]) == 2 * 6
    means = [r["mean"] for r in doc["ranked"]]
    assert means == sorted(means, reverse=True)
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    proc = main_in_process("harness.cli.sweep", "--model", "tiny-llama-gqa", "--emotion", "gratitude", "--n-prompts", "4",
                           "--patch-mode", "v_only", "--combine", "0", "--output", str(tmp_path / "v.json"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "v.json").read_text())["patch_mode"] == "v_only"
    bad = main_in_process("harness.cli.sweep", "--model", "tiny-gpt2", "--emotion", "gratitude", "--patch-mode", "v-only",
                          "--output", str(tmp_path / "x.json"))
    assert bad.returncode == 2 and "Did you mean 'v_only'" in bad.stderr and not (tmp_path / "x.json").exists()


def test_combinations_compare_joint_patches_with_single_heads(tiny_gpt2):
    from harness.analysis.sweep import combinations, patched_deltas

    s = sweep(tiny_gpt2, TARGETS, SOURCES, "gratitude")
    heads = [(1, 2), (0, 5), (1, 7)]
    rows = combinations(tiny_gpt2, TARGETS, SOURCES, s, heads, seed=1)
    assert [r["k"] for r in rows] == [2, 3] and rows[1]["heads"] == "1:2,0:5,1:7"
    joint = patched_deltas(tiny_gpt2, TARGETS, SOURCES, "gratitude", [heads[:2], heads])
    for r, d in zip(rows, joint):
        singles = {h: s.deltas[h] for h in heads[:r["k"]]}
        best = max(singles, key=lambda h: singles[h].mean())
        np.testing.assert_allclose(r["per_prompt"], d, atol=1e-6)
        assert r["mean"] == pytest.approx(d.mean(), abs=1e-9)
        assert r["additive"] == pytest.approx(sum(v.mean() for v in singles.values()))
        assert r["best_single"] == f"{best[0]}:{best[1]}"
        assert r["gain_over_best"] == pytest.approx((d - singles[best]).mean(), abs=1e-9)
        assert r["ci_low"] <= r["mean"] <= r["ci_high"] and 0 < r["gain_p"] <= 1
    # two heads in different layers do not simply add up: the lower patch changes the upper input
    assert abs(rows[0]["mean"] - rows[0]["additive"]) > 1e-4


def _ranked(means_lows):
    return [{"rank": k + 1, "head": h, "mean": m, "ci_low": lo, "ci_high": m + 1, "share_up": 0.9}
            for k, (h, m, lo) in enumerate(means_lows)]


def test_claim_rows_take_top_heads_with_ci_above_zero_and_load(tmp_path):
    from harness.analysis.sweep import claim_rows
    from harness.claims.spec import claims_toml, load_claims

    ranked = _ranked([("21:1", 1.0, 0.9), ("3:3", 0.8, -0.1), ("17:7", 0.7, 0.6), ("14:2", 0.6, 0.5),
                      ("0:0", 0.5, 0.4)])
    combo = {"heads": "21:1,17:7,14:2", "mean": 1.5, "ci_low": 1.2, "ci_high": 1.8, "best_single": "21:1",
             "best_single_mean": 1.0, "gain_over_best": 0.5, "gain_ci_low": 0.3, "gain_ci_high": 0.7, "gain_p": 0.001}
    rows = claim_rows("smollm2-135m", "gratitude", "neutral", 70, ranked, [combo], n_heads=3, random_heads=6,
                      source_file="s.json", weights="ab" * 32)
    assert [r["heads"] for r in rows] == ["21:1", "17:7", "14:2", "21:1,17:7,14:2", "21:1,17:7,14:2"]
    assert rows[-1]["versus"] == {"heads": "21:1"} and "gain +0.500" in rows[-1]["description"]
    assert "together +1.500" in rows[3]["description"] and "+1.000 nats [+0.900" in rows[0]["description"]
    path = tmp_path / "c.toml"
    path.write_text(claims_toml(rows))
    claims = load_claims(str(path))
    assert {c.alignment for c in claims} == {"last"} and {c.tier for c in claims} == {"slow"}
    assert claims[0].id == "sweep_smollm2_135m_gratitude_21_1_raises_gratitude_logprob"  # the default metric
    assert claims[0].test_id.endswith("-head_21_1") and claims[0].random_heads == 6
    one = claim_rows("m", "gratitude", "neutral", 70, ranked[:2], [], n_heads=3, random_heads=0,
                     source_file="s.json", weights="")
    assert [r["heads"] for r in one] == ["21:1"]  # one head: no joint claims
    assert "90% of prompts up; from s.json (weights abababababab). Does" in rows[0]["description"]
    two = claim_rows("m", "gratitude", "neutral", 70, ranked, [], n_heads=2, random_heads=0,
                     source_file="s.json", weights="")
    assert [r["heads"] for r in two] == ["21:1", "17:7", "21:1,17:7", "21:1,17:7"]  # two heads: joint claims
    at_zero = _ranked([("21:1", 1.0, 0.0), ("17:7", 0.7, 1e-3), ("3:3", 0.6, 1e-9)])
    assert [r["heads"] for r in claim_rows("m", "gratitude", "neutral", 70, at_zero, [], n_heads=3, random_heads=0,
                                           source_file="s.json", weights="")] == ["17:7"]  # CI must exclude 0
    # ... and lie above the float32 rounding of the metric (1e-5 nats): 3:3's 1e-9 is rounding
    assert claim_rows("m", "gratitude", "neutral", 70, ranked[1:2], [], n_heads=3, random_heads=0,
                      source_file="s.json", weights="") == []
    words = claim_rows("smollm2-135m", "gratitude", "neutral", 70, ranked, [combo], n_heads=3, random_heads=6,
                       source_file="s.json", weights="", claim_metric="keywords")
    assert {r["metric"] for r in words} == {"gratitude_keywords"}
    assert words[0]["id"] == "sweep_smollm2_135m_gratitude_21_1_raises_gratitude_keywords"
    path.write_text(claims_toml(words))
    assert [c.metric for c in load_claims(str(path))] == ["gratitude_keywords"] * 5


def test_sweep_cli_writes_claims_that_load(cli, main_in_process, tmp_path):
    from harness.claims.spec import load_claims

    out, toml = tmp_path / "s.json", tmp_path / "c.toml"
    proc = cli("harness", "sweep", "--model", "tiny-gpt2", "--emotion", "gratitude", "--n-prompts", "12",
               "--output", str(out), "--write-claims", str(toml), "--combine", "3")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    top = [r["head"] for r in doc["ranked"] if r["ci_low"] > 0]
    assert len(top) >= 2, "the fixture needs two heads with a CI above 0 on the tiny model"
    assert [c["heads"] for c in doc["combinations"]] == [",".join(top[:2]), ",".join(top[:3])][:len(top) - 1]
    text = toml.read_text()
    assert text.startswith("# Generated by `python -m harness sweep --model tiny-gpt2")
    claims = load_claims(str(toml))
    assert [c.heads for c in claims][:min(3, len(top))] == top[:3]
    bad = main_in_process("harness.cli.sweep", "--model", "tiny-gpt2", "--emotion", "gratitude", "--combine", "1",
                          "--output", str(tmp_path / "x.json"))
    assert bad.returncode == 2 and "--combine 1" in bad.stderr and not (tmp_path / "x.json").exists()
    for flag, value in (("--seed", "-1"), ("--top", "-2"), ("--random-heads", "-1")):
        bad = main_in_process("harness.cli.sweep", "--model", "tiny-gpt2", "--emotion", "gratitude", flag, value,
                              "--output", str(tmp_path / "x.json"))
        assert bad.returncode == 2 and f"{flag} {value} is invalid: must be an integer " in bad.stderr
        assert "Traceback" not in bad.stderr and not (tmp_path / "x.json").exists()


def test_sweep_benchmarks_run_and_report(cli, main_in_process):
    proc = cli("harness", "bench", "sweep", "--model", "tiny-gpt2", "--n-prompts", "3", "--layers", "0,1", "--json")
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["heads"] == 24 and res["max_abs_diff"] < 1e-3 and res["speedup"] > 0
    proc = main_in_process("harness.cli.bench", "sweep-scaling", "--model", "tiny-gpt2", "--prompts", "2,4",
                           "--layer-counts", "1,2", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    assert [(r["n_prompts"], r["heads"]) for r in rows] == [(2, 12), (2, 24), (4, 12), (4, 24)]
    bad = main_in_process("harness.cli.bench", "sweep-scaling", "--model", "tiny-gpt2", "--layer-counts", "3")
    assert bad.returncode == 2 and "exceed" in bad.stderr and "Traceback" not in bad.stderr


def test_ranked_orders_heads_by_mean_and_counts_strictly_positive_prompts():
    from harness.analysis.sweep import Sweep

    deltas = np.array([[[0.0, 0.0, 0.3, 0.3], [1.0, -1.0, 0.0, 0.4]]])  # 1 layer, 2 heads, 4 prompts
    ranked = Sweep("gratitude", deltas, np.zeros(4)).ranked()
    assert ranked == [(0, 0, pytest.approx(0.15), 0.5), (0, 1, pytest.approx(0.1), 0.5)]


def _sweep_doc(deltas, mode="z", **kw):
    return {"schema": "causal-heads/sweep", "schema_version": 1, "emotion": "gratitude", "target": "neutral", "n_prompts": deltas.shape[-1], "patch_mode": mode,
            "model": {"weights_sha256": "ab" * 32}, "deltas": deltas.tolist(), **kw}


def test_compare_sweeps_finds_planted_differences_and_equivalences(main_in_process, tmp_path):
    from harness.analysis.sweep import compare_sweeps

    rng = np.random.default_rng(0)
    a = rng.normal(0.3, 1.0, size=(2, 3, 60))
    b = a + rng.normal(0.0, 0.05, size=a.shape)  # the same effect up to small noise...
    b[1, 2] += 1.0  # ...except one head, which moves by a whole nat
    res = compare_sweeps(_sweep_doc(a), _sweep_doc(b, "v_only"), margin=0.1)
    verdicts = {r["head"]: r["verdict"] for r in res["heads"]}
    assert verdicts.pop("1:2") == "differ" and set(verdicts.values()) == {"equivalent"}
    assert res["heads"][0]["head"] == "1:2" and res["heads"][0]["difference"] == pytest.approx(1.0, abs=0.05)
    assert res["counts"] == {"differ": 1, "equivalent": 5, "inconclusive": 0}
    # the p-values are Holm-adjusted over every head: recomputed here from the per-head paired t tests
    from scipy.stats import ttest_1samp
    from statsmodels.stats.multitest import multipletests

    raw = [ttest_1samp((b - a)[layer, head], 0.0).pvalue for layer in range(2) for head in range(3)]
    holm = dict(zip([f"{k // 3}:{k % 3}" for k in range(6)], multipletests(raw, method="holm")[1], strict=True))
    assert {r["head"]: r["p_difference_holm"] for r in res["heads"]} == pytest.approx(holm)
    # a small difference measured precisely is shown (differ) although it lies inside the margin
    c = a.copy()
    c[0, 0] += 0.05 + rng.normal(0.0, 0.005, size=60)
    tight = {r["head"]: r for r in compare_sweeps(_sweep_doc(a), _sweep_doc(c, "v_only"), margin=0.1)["heads"]}
    assert tight["0:0"]["verdict"] == "differ" and tight["0:0"]["p_equivalence_holm"] < 0.05
    small = compare_sweeps(_sweep_doc(a[..., :4]), _sweep_doc(b[..., :4], "v_only"), margin=0.1)
    assert small["counts"]["inconclusive"] >= 1  # 4 prompts cannot show equivalence within 0.1
    with pytest.raises(ValueError, match="differ in emotion"):
        compare_sweeps(_sweep_doc(a), _sweep_doc(b, emotion="anger"), margin=0.1)
    # zero-variance differences: identical sweeps do not differ (p 1), a constant shift does (p 0)
    same = compare_sweeps(_sweep_doc(a), _sweep_doc(a.copy(), "v_only"), margin=0.1)
    assert {r["p_difference_holm"] for r in same["heads"]} == {1.0} and same["counts"]["equivalent"] == 6
    q = np.round(a * 8) / 8  # eighths: q + 0.5 - q is exactly 0.5, a difference without variance
    shifted = compare_sweeps(_sweep_doc(q), _sweep_doc(q + 0.5, "v_only"), margin=0.1)
    assert {r["p_difference_holm"] for r in shifted["heads"]} == {0.0} and shifted["counts"]["differ"] == 6
    with pytest.raises(ValueError, match=r"different weights \(abababababab vs cdcdcdcdcdcd\)"):
        compare_sweeps(_sweep_doc(a), _sweep_doc(b, model={"weights_sha256": "cd" * 32}), margin=0.1)
    (tmp_path / "a.json").write_text(json.dumps(_sweep_doc(a)))
    (tmp_path / "b.json").write_text(json.dumps(_sweep_doc(b, "v_only")))
    proc = main_in_process("harness.cli.sweep", "--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    assert proc.returncode == 0 and "1 differ, 5 equivalent, 0 inconclusive" in proc.stdout, proc.stderr
    for margin in ("nan", "inf", "0"):  # a non-finite margin would make every head "equivalent" or undefined
        bad = main_in_process("harness.cli.sweep", "--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                              "--margin", margin)
        assert bad.returncode == 2 and f"--margin {float(margin)}: must be finite and > 0" in bad.stderr
    bad = main_in_process("harness.cli.sweep", "--compare", str(tmp_path / "a.json"), str(tmp_path / "missing.json"))
    assert bad.returncode == 2 and "missing.json" in bad.stderr and "Traceback" not in bad.stderr
    (tmp_path / "f.json").write_text(json.dumps({"schema": "causal-heads/findings", "schema_version": 1}))
    wrong = main_in_process("harness.cli.sweep", "--compare", str(tmp_path / "a.json"), str(tmp_path / "f.json"))
    assert wrong.returncode == 2 and "not a sweep document" in wrong.stderr and "Traceback" not in wrong.stderr


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("deltas"), "field 'deltas' is missing"),
    (lambda d: d.update(deltas=5), "field 'deltas' is not a [layers, heads, prompts] grid"),
    (lambda d: d.update(deltas=[[1.0, 2.0]]), "field 'deltas' is not a [layers, heads, prompts] grid"),
    (lambda d: d.update(deltas=[[[1.0, None]]]), "grid of finite numbers"),
    (lambda d: d.update(deltas={"a": 1}), "field 'deltas' is not a"),
    (lambda d: d.update(n_prompts=3), "field 'n_prompts' = 3: must be the deltas' prompt count 2"),
    (lambda d: d.update(n_prompts=1, deltas=[[[0.5]] * 12] * 2),
     "field 'n_prompts' = 1: must be the deltas' prompt count 1 (at least 2)"),
    (lambda d: d.pop("emotion"), "field 'emotion' is missing: must be a string"),
    (lambda d: d.update(patch_mode=1), "field 'patch_mode' = 1: must be a string"),
    (lambda d: d.update(model="x"), "field 'model' = 'x': must be an object"),
])
def test_malformed_sweep_documents_are_named_by_compare_and_screen(main_in_process, tmp_path, edit, message):
    from harness.analysis.sweep import load_sweep
    from harness.core.errors import UserError

    doc = _sweep_doc(np.zeros((2, 12, 2)))
    (tmp_path / "ok.json").write_text(json.dumps(doc))
    assert load_sweep(str(tmp_path / "ok.json"))["n_prompts"] == 2  # two prompts are enough
    edit(doc)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(UserError) as info:
        load_sweep(str(path))
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)
    proc = main_in_process("harness.cli.sweep", "--compare", str(path), str(path))
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
