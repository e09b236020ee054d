"""Faithfulness curves: the top-k heads as circuits, on the ground-truth planted model."""

from __future__ import annotations

import json
import os

import pytest

from harness.analysis.curve import CurveOptions, areas, bench_curve, run_curve
from harness.cli import circuit as circuit_cli
from harness.core.errors import UserError
from harness.model import groundtruth


def test_areas_are_mibs_cpr_and_cmd():
    # F = 0 at x = 0, 1 from x = 0.5: CPR = 0.25 (the ramp) + 0.5; CMD = the ramp's gap 0.25
    assert areas([4], [1.0], 0.0, 8) == pytest.approx({"cpr": 0.75, "cmd": 0.25})
    assert areas([2, 8], [1.0, 1.0], 1.0, 8) == {"cpr": 1.0, "cmd": 0.0}
    over = areas([4], [1.5], 1.0, 8)  # overshoot counts against CMD, as MIB's |1 − F|
    assert over["cmd"] == pytest.approx(0.25) and over["cpr"] == pytest.approx(1.25)


@pytest.fixture
def planted(monkeypatch):
    monkeypatch.setenv("CAUSAL_HEADS_PROMPTS", groundtruth.prompts_dir("planted"))
    return CurveOptions(emotion="mood", sizes=(1, 2, 8), model="groundtruth-planted", rank_by="attribution",
                        ablations=("zero", "mean"), n_prompts=16)  # fmt: skip


def test_the_planted_models_curve_reaches_its_true_circuit_at_size_one(planted, tmp_path):
    doc, out, png = run_curve(planted, str(tmp_path / "curve.json"))
    assert doc["top_heads"][0] == "1:2" and os.path.isfile(out) and os.path.isfile(png)
    assert json.load(open(out))["schema"] == "causal-heads/curve"
    for mode, m in doc["ablations"].items():
        f = {p["size"]: p["faithfulness"] for p in m["points"]}
        assert f[1] >= 0.9, mode  # the true size
        assert f[8] == 1.0  # every head: the full model, exactly
        # at the next token nothing but the planted head carries the mood words: the empty circuit has F ~ 0,
        # so the area is the ramp from 0 to 1 over the first of 8 heads (plus a small overshoot)
        assert abs(m["empty"]) < 1e-3 and m["cmd"] < 0.15 and m["cpr"] > 0.9


@pytest.mark.slow
def test_the_curve_planned_is_the_curve_size_by_size(planted):
    res = bench_curve(planted)
    assert res["identical"] is True and res["planned_s"] > 0 and res["separate_s"] > 0


def test_bad_curve_input_is_named(planted, tmp_path):
    with pytest.raises(UserError, match="--rank-by sweep needs --sweep"):
        run_curve(CurveOptions(emotion="mood", sizes=(1,), model="groundtruth-planted"))
    with pytest.raises(UserError, match="--sizes: 9 is not a circuit size of this model"):
        run_curve(CurveOptions(emotion="mood", sizes=(9,), model="groundtruth-planted", rank_by="attribution",
                               n_prompts=4))  # fmt: skip
    with pytest.raises(UserError, match="--sizes 'a,b'"):
        circuit_cli.main(["curve", "--emotion", "mood", "--sizes", "a,b"])
    with pytest.raises(UserError, match="--ablations"):
        circuit_cli.main(["curve", "--emotion", "mood", "--ablations", "z"])


@pytest.mark.slow
def test_elimination_finds_the_induction_circuit_that_attribution_misses(monkeypatch, tmp_path):
    """Attribution ranks the previous-token head 0:1 fourth (it acts through the induction head's
    keys at earlier positions); backward elimination by faithfulness ranks both true heads first,
    and the curve reaches F >= 0.9 at the true size, 2."""
    monkeypatch.setenv("CAUSAL_HEADS_PROMPTS", groundtruth.prompts_dir("induction"))
    common = dict(emotion="repeat", sizes=(1, 2, 8), model="groundtruth-induction", ablations=("resample",),
                  n_prompts=12)  # fmt: skip
    doc, _, _ = run_curve(CurveOptions(rank_by="elimination", **common), str(tmp_path / "e.json"))
    assert set(doc["top_heads"][:2]) == {"0:1", "1:2"}
    f = {p["size"]: p["faithfulness"] for p in doc["ablations"]["resample"]["points"]}
    assert f[2] >= 0.9 and f[8] == 1.0 and f[1] < 0.5
    by_attribution, _, _ = run_curve(CurveOptions(rank_by="attribution", **common), str(tmp_path / "a.json"))
    assert "0:1" not in by_attribution["top_heads"][:2]  # the limit elimination exists for
    monkeypatch.setattr("harness.analysis.curve.MAX_ELIMINATION_HEADS", 4)
    with pytest.raises(UserError, match="--rank-by elimination measures N\\(N\\+1\\)/2 circuits: .* has 8 heads"):
        run_curve(CurveOptions(rank_by="elimination", **common), str(tmp_path / "x.json"))
