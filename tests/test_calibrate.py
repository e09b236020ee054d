"""A/A calibration of the claims' statistics on data the harness generates (causal-heads calibrate)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from harness.analysis.calibrate import TESTS, calibrate, null_deltas, score_pool
from harness.metrics.next_token import keyword_tracks
from harness.run.generation import GenerationConfig, generate
from harness.run.prompts import load_prompt_set


def test_null_deltas_split_distinct_continuations_of_each_prompt():
    pool = np.arange(6 * 8, dtype=float).reshape(6, 8) * 10.0 ** np.arange(6)[:, None]  # distinct per prompt
    d = null_deltas(pool, samples=2, datasets=500, seed=1)
    assert d.shape == (500, 6)
    # every Δ is a difference of two halves of distinct continuations of the same prompt
    for i in range(6):
        assert np.all(np.abs(d[:, i]) <= (pool[i].max() - pool[i].min()))
        assert len(np.unique(d[:, i])) > 10
    # the halves are exchangeable: every prompt's Δ is symmetric around 0 (up to Monte-Carlo error)
    assert np.all(np.abs(d.mean(axis=0)) < 4 * d.std(axis=0) / np.sqrt(500))
    assert np.array_equal(d, null_deltas(pool, samples=2, datasets=500, seed=1))  # seeded
    with pytest.raises(ValueError, match="2 samples per condition need a pool of at least 4"):
        null_deltas(pool[:, :3], samples=2, datasets=10, seed=0)
    with pytest.raises(ValueError, match="n_prompts >= 2"):
        null_deltas(pool[:1], samples=1, datasets=10, seed=0)


@pytest.fixture(scope="module")
def tiny_pool(tiny_gpt2):
    """12 neutral prompts × 8 sampled continuations of 4 tokens, scored by the continuous log-prob metric."""
    prompts = load_prompt_set("neutral").head(12)
    cfg = GenerationConfig(max_tokens=4, do_sample=True, samples=8, seed=0)
    result = generate(tiny_gpt2, prompts, cfg, track=keyword_tracks(tiny_gpt2.tokenizer))
    return score_pool(result, ["gratitude_logprob"])["gratitude_logprob"]


def test_the_claims_tests_hold_their_size_on_the_harness_null_data(tiny_pool):
    assert tiny_pool.shape == (12, 8)
    assert np.all(np.ptp(tiny_pool, axis=1) > 0)  # sampled continuations of a prompt differ
    cal = calibrate(tiny_pool, metric="gratitude_logprob", datasets=400, seed=3)
    for t in ("mean_increase", "mean_decrease"):
        rate, low, high = cal.rate(t)
        assert cal.reading(t) == "calibrated", (t, rate, low, high)
    # the exact sign test is discrete at 12 prompts: never above alpha
    assert all(cal.reading(t) != "too many rejections" for t in TESTS)
    assert 0.85 <= cal.coverage()[0] <= 0.99
    doc = cal.to_dict()
    assert doc["rates"]["mean_increase"]["reading"] == "calibrated" and doc["untestable"] == 0.0


def test_a_planted_shift_is_found_in_its_direction_only(tiny_pool):
    sd = null_deltas(tiny_pool, samples=1, datasets=200, seed=0).std()
    cal = calibrate(tiny_pool, metric="gratitude_logprob", datasets=200, shift=1.5 * sd, seed=3)
    assert cal.rate("mean_increase")[0] >= 0.9 and cal.rate("mean_decrease")[0] == 0.0
    assert cal.reading("mean_increase") == "power"
    assert 0.85 <= cal.coverage()[0] <= 0.99  # the CI covers the planted mean, not 0


def test_the_equivalence_test_holds_its_size_at_the_margin_and_has_power_inside(tiny_pool):
    d = null_deltas(tiny_pool, samples=1, datasets=200, seed=0)
    margin = 3 * d.std() / np.sqrt(tiny_pool.shape[0])  # three standard errors of the mean Δ
    at_margin = [calibrate(tiny_pool, metric="gratitude_logprob", datasets=300, shift=sign * margin, margin=margin,
                           seed=3) for sign in (1, -1)]
    for cal in at_margin:  # |true Δ| = margin: "equivalent" is false, declared at most alpha of the time
        assert cal.reading("equivalence") in ("calibrated", "conservative"), cal.rate("equivalence")
        assert cal.reading("mean_increase") == "power"
    inside = calibrate(tiny_pool, metric="gratitude_logprob", datasets=300, margin=margin, seed=3)
    assert inside.reading("equivalence") == "power" and inside.rate("equivalence")[0] > 0.5
    assert inside.reading("mean_increase") == "calibrated"
    assert list(inside.to_dict()["rates"]) == [*TESTS, "equivalence"] and inside.to_dict()["margin"] == margin
    assert "equivalence" not in calibrate(tiny_pool, metric="m", datasets=10).rejections


def test_a_metric_at_its_floor_is_conservative_and_untestable():
    pool = np.zeros((30, 6))
    pool[0, 0] = 1.0  # one continuation of one prompt leaves the floor
    cal = calibrate(pool, metric="gratitude_keywords", lower=0.0, datasets=100, seed=0)
    assert cal.at_floor == pytest.approx(1 - 1 / 180)
    assert cal.untestable == 1.0 and all(cal.rejections[t] == 0 for t in TESTS)
    assert cal.reading("mean_increase") == "conservative"


def test_calibrate_cli_writes_its_document_and_flags_a_liberal_test(cli, main_in_process, tmp_path, monkeypatch):
    out = tmp_path / "cal.json"
    proc = cli("harness", "calibrate", "--model", "tiny-gpt2", "--n-prompts", "30", "--max-tokens", "3", "--pool", "4",
               "--datasets", "50", "--metrics", "gratitude_logprob,sentiment", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "50 null datasets of 30 prompts" in proc.stdout and "Traceback" not in proc.stderr
    doc = json.loads(out.read_text())
    assert doc["schema"] == "causal-heads/calibration" and doc["schema_version"] == 2
    assert [r["metric"] for r in doc["results"]] == ["gratitude_logprob", "sentiment"]
    assert np.array(doc["pools"]["sentiment"]).shape == (30, 4)
    assert doc["settings"]["generation"]["samples"] == 4 and doc["provenance"]["model"]["weights_sha256"]

    # a test that rejects too often on null data fails the command (exit 1) and is named
    import harness.analysis.calibrate as calibration
    import harness.stats

    for module in (harness.stats, calibration):  # paired_effect calls it from stats; calibrate by its own name
        monkeypatch.setattr(module, "sign_flip_p", lambda x, **kw: (0.01, kw["n_permutations"]))
    liberal = main_in_process("harness.cli.calibrate", "--model", "tiny-gpt2", "--n-prompts", "6", "--max-tokens", "2",
                              "--pool", "2", "--datasets", "20", "--metrics", "gratitude_logprob")
    assert liberal.returncode == 1
    assert "rejects more often than alpha 0.05 on null data: gratitude_logprob mean_increase, " \
           "gratitude_logprob mean_decrease" in liberal.stderr
    monkeypatch.undo()

    # so does a CI that misses the true mean: here one that never covers it (re-analysed from the stored pools)
    monkeypatch.setattr(harness.stats, "bootstrap_mean_ci",
                        lambda x, **kw: harness.stats.Interval(0.0, 1.0, 2.0, 0.95, "BCa", len(x), 100, 0, 0.95))
    narrow = main_in_process("harness.cli.calibrate", "--pools", str(out), "--datasets", "20", "--metrics", "sentiment")
    assert narrow.returncode == 1 and "rejects more often" not in narrow.stderr
    assert "the 95% bootstrap CI of the mean covers the true mean less often than that: sentiment (0.000)" \
        in narrow.stderr


def test_calibrate_reanalyses_stored_pools_without_generating(cli, main_in_process, tmp_path, monkeypatch):
    import harness.analysis.calibrate_job as calibrate_job

    first = tmp_path / "first.json"
    proc = main_in_process("harness.cli.calibrate", "--model", "tiny-gpt2", "--n-prompts", "8", "--max-tokens", "3",
                           "--pool", "6", "--datasets", "30", "--metrics", "gratitude_logprob,sentiment",
                           "--output", str(first))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(first.read_text())

    def no_generation(*a, **kw):
        raise AssertionError("--pools must not load a model or generate")

    monkeypatch.setattr(calibrate_job, "load_model", no_generation)
    monkeypatch.setattr(calibrate_job, "generate", no_generation)
    again = tmp_path / "again.json"
    proc = main_in_process("harness.cli.calibrate", "--pools", str(first), "--samples", "3", "--datasets", "40",
                           "--metrics", "sentiment", "--alpha", "0.1", "--output", str(again))
    assert proc.returncode == 0, proc.stderr
    redo = json.loads(again.read_text())
    assert redo["pools"] == {"sentiment": doc["pools"]["sentiment"]} and redo["generation_seconds"] is None
    assert [(r["metric"], r["samples"], r["datasets"], r["alpha"]) for r in redo["results"]] == \
        [("sentiment", 3, 40, 0.1)]
    assert redo["settings"]["generation"] == doc["settings"]["generation"]
    assert redo["settings"]["dataset_seed"] == doc["settings"]["dataset_seed"] == doc["settings"]["run"]["seed"]
    assert redo["provenance"]["model"] == doc["provenance"]["model"]
    assert redo["provenance"]["pools_from"]["path"] == str(first)
    assert len(redo["provenance"]["pools_from"]["sha256"]) == 64
    # the same datasets from the same pools: the stored analysis is reproduced exactly
    same = main_in_process("harness.cli.calibrate", "--pools", str(first), "--datasets", "30", "--metrics",
                           "gratitude_logprob,sentiment")
    assert same.returncode == 0
    lines = {line.split()[0]: line for line in same.stdout.splitlines()[2:4]}
    for r in doc["results"]:
        cells = [f"{v['rate']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]" for v in [*r["rates"].values(), r["coverage"]]]
        assert re.findall(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", lines[r["metric"]]) == cells
    # a version-1 document (settings.generation said n_samples / max_new_tokens) is still re-analysed
    v1 = tmp_path / "v1.json"
    v1.write_text(json.dumps({**doc, "schema_version": 1}))
    old = main_in_process("harness.cli.calibrate", "--pools", str(v1), "--datasets", "30", "--metrics",
                          "gratitude_logprob,sentiment")
    assert old.returncode == 0 and old.stdout == same.stdout

    bad = [(["--model", "tiny-gpt2"], "--model cannot be combined with --pools"),
           (["--samples", "4"], "--samples 4 is invalid: " + f"{first} holds 6 continuations per prompt"),
           (["--metrics", "nrc_joy"], f"metric 'nrc_joy' is not in {first}; it has: gratitude_logprob, sentiment")]
    for args, message in bad:
        proc = main_in_process("harness.cli.calibrate", "--pools", str(first), "--datasets", "5", *args)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    # the smallest valid settings are accepted: one dataset, seed 0
    edge = main_in_process("harness.cli.calibrate", "--pools", str(first), "--datasets", "1", "--seed", "0",
                           "--metrics", "sentiment", "--resamples", "100", "--margin", "0.5", "--alpha", "0.999")
    assert edge.returncode in (0, 1) and "invalid" not in edge.stderr, edge.stderr
    two = tmp_path / "two_prompts.json"  # the fewest prompts a pool may have
    two.write_text(json.dumps({**doc, "pools": {"sentiment": doc["pools"]["sentiment"][:2]}}))
    edge = main_in_process("harness.cli.calibrate", "--pools", str(two), "--datasets", "1", "--metrics", "sentiment")
    assert edge.returncode in (0, 1) and "must be finite scores" not in edge.stderr, edge.stderr
    findings = tmp_path / "findings.json"
    findings.write_text(json.dumps({"schema": "causal-heads/findings", "schema_version": 1}))
    stored = json.loads(first.read_text())
    pools_bad = []
    for name, pools in [("empty", {}), ("flat", {"sentiment": [0.1, 0.2, 0.3]}),
                        ("one_prompt", {"sentiment": [[0.1, 0.2, 0.3, 0.4]]}),
                        ("not_finite", {"sentiment": [[0.1, None], [0.2, 0.3]]}),
                        ("words", {"sentiment": [["a", "b"], ["c", "d"]]})]:
        path = tmp_path / f"pools_{name}.json"
        path.write_text(json.dumps({**stored, "pools": pools}))
        pools_bad.append((path, "has no pools of scores" if not pools else
                          "pool 'sentiment' must be finite scores, [prompts >= 2][continuations]"))
    no_settings = tmp_path / "no_settings.json"
    no_settings.write_text(json.dumps({**stored, "settings": None}))
    no_seed = tmp_path / "no_seed.json"
    no_seed.write_text(json.dumps({**stored, "settings": {"run": {}}}))
    for path, message in [(tmp_path / "none.json", "cannot read"),
                          (no_settings, "field 'settings' = None: must be an object"),
                          (no_seed, "field 'settings.dataset_seed (or settings.run.seed)' = None"),
                          (findings, "not a calibration document (schema must be 'causal-heads/calibration')"),
                          (tmp_path / "x.pkl", "must be a .json calibration document"), *pools_bad]:
        proc = main_in_process("harness.cli.calibrate", "--pools", str(path), "--datasets", "5")
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--profile", "greedy"], "profile 'greedy' decodes greedily"),
    (["--pool", "3", "--samples", "2"], "--pool/--samples 3/2 is invalid: must be a pool of at least 2 × samples"),
    (["--metrics", "sentimnet"], "unknown metric 'sentimnet'. Did you mean 'sentiment'?"),
    (["--alpha", "1.5"], "--alpha 1.5 is invalid: must be in (0, 1)"),
    (["--alpha", "0"], "--alpha 0.0 is invalid: must be in (0, 1)"),
    (["--margin", "0"], "--margin 0.0 is invalid: must be finite and > 0"),
    (["--margin", "inf"], "--margin inf is invalid: must be finite and > 0"),
    (["--shift", "nan"], "--shift nan is invalid: must be a finite number"),
    (["--seed", "-1"], "--seed -1 is invalid: must be an integer >= 0"),
    (["--datasets", "0"], "--datasets 0 is invalid: must be in [1, 100000]"),
    (["--samples", "0"], "--samples 0 is invalid: must be >= 1"),
    (["--resamples", "99"], "--resamples 99 is invalid: must be in [100, 1000000]"),
    (["--output", "x.txt"], "the extension must be one of .json, .pkl"),
    (["--model", "no/such-model"], "weights for model 'no/such-model' are not on this machine"),
])
def test_calibrate_cli_bad_input_exits_2(main_in_process, args, message):
    proc = main_in_process("harness.cli.calibrate", "--n-prompts", "4", "--pool", "2", "--datasets", "5", *args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
