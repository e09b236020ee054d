"""Circuit claims: faithfulness, minimality and random circuits, on the tiny and the ground-truth models."""

from __future__ import annotations

import numpy as np
import pytest

import harness
from harness.claims.circuit import complement
from harness.claims.controls import random_head_sets
from harness.claims.spec import Claim
from harness.core.errors import UserError
from harness.model import groundtruth

TINY = dict(model="tiny-gpt2", kind="circuit", source="gratitude", metric="gratitude_logprob", direction="increase",
            n_prompts=6, max_tokens=2, tier="fast", patch_mode="zero")  # fmt: skip


def test_the_full_model_is_exactly_faithful_and_the_empty_circuit_is_the_ablated_model():
    whole = Claim(id="whole", heads="0:*,1:*", fraction=1.0, **TINY)
    r = harness.evaluate([whole])["whole"]
    assert r.error is None and r.circuit["ablations"]["zero"]["faithfulness"] == 1.0
    assert r.delta == [0.0] * 6  # E_C − 1.0 · E_full, exactly
    # the smallest circuit the spec allows, one head, against a direct run with every other head zeroed
    one = Claim(id="one", heads="1:3", fraction=0.5, **TINY)
    others = ",".join(f"{a}:{b}" for a, b in complement(((1, 3),), 2, 12))
    direct = [Claim(id=f"ablate_on_{s}", model="tiny-gpt2", heads=others, patch_mode="zero", source="gratitude",
                    target=s, metric="gratitude_logprob", direction="increase", n_prompts=6, max_tokens=2,
                    tier="fast") for s in ("neutral", "gratitude")]  # fmt: skip
    got = harness.evaluate([one, *direct])
    on_t, on_s = (np.array(got[f"ablate_on_{s}"].per_prompt["patched"]) for s in ("neutral", "gratitude"))
    base_t, base_s = (np.array(got[f"ablate_on_{s}"].per_prompt["baseline"]) for s in ("neutral", "gratitude"))
    expected = (on_s - on_t).mean() / (base_s - base_t).mean()
    assert got["one"].circuit["ablations"]["zero"]["faithfulness"] == pytest.approx(expected, rel=1e-12)
    # the empty circuit under zero: the ratio of the model with every head zeroed
    every = [c.replace(id=f"all_{c.target}", heads="0:*,1:*") for c in direct]
    ablated = harness.evaluate(every)
    on_t, on_s = (np.array(ablated[f"all_{s}"].per_prompt["patched"]) for s in ("neutral", "gratitude"))
    empty = got["one"].circuit["ablations"]["zero"]["empty_faithfulness"]
    assert empty == pytest.approx((on_s - on_t).mean() / (base_s - base_t).mean(), rel=1e-12)


def test_random_circuits_are_the_seeds():
    c = Claim(id="c", heads="1:3,0:5", fraction=0.5, random_heads=4, **TINY)
    heads = ((0, 5), (1, 3))
    assert random_head_sets(c, heads, 12) == random_head_sets(c, heads, 12)
    assert random_head_sets(c, heads, 12) != random_head_sets(c.replace(seed=1), heads, 12)
    a, b = (harness.evaluate([c])["c"] for _ in range(2))
    assert a.circuit["random"] == b.circuit["random"] and len(a.circuit["random"]) == 4
    assert all(set(r["heads"].split(",")) & {"1:3", "0:5"} == set() for r in a.circuit["random"])
    assert list(a.random_control["null"]) == [r["faithfulness"] for r in a.circuit["random"]]


@pytest.mark.parametrize("change, message", [
    ({"fraction": None}, "field 'fraction' = None: a faithful circuit claim needs the fraction"),
    ({"fraction": 1.5}, "field 'fraction' = 1.5"),
    ({"patch_mode": "z"}, "field 'patch_mode' = 'z': a circuit claim's patch_mode ablates the heads outside it"),
    ({"source": "neutral"}, "field 'source' = 'neutral': a circuit reproduces the model's source-vs-target effect"),
    ({"criterion": "minimal", "heads": "1:3"}, "field 'heads' = '1:3': minimality is about removing one head"),
    ({"direction": "decrease"}, "field 'direction' = 'decrease': a faithful circuit claim is 'increase'"),
    ({"kind": "patch"}, "field 'criterion/fraction/delta' = 'faithful': are for a circuit claim"),
])
def test_bad_circuit_claims_are_named(change, message):
    row = {"id": "c", "heads": "1:3,0:5", "fraction": 0.5, **TINY, **change}
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace("[", r"\[")):
        Claim(**row)


@pytest.fixture
def planted(monkeypatch):
    monkeypatch.setenv("CAUSAL_HEADS_PROMPTS", groundtruth.prompts_dir("planted"))
    return dict(model="groundtruth-planted", kind="circuit", source="mood", target="neutral", metric="mood_logprob",
                direction="increase", n_prompts=16, max_tokens=3, tier="fast", random_heads=5)  # fmt: skip


def test_on_the_planted_model_the_true_circuit_is_faithful_and_a_circuit_without_it_is_not(planted):
    """The planted head 1:2 is the whole mechanism (truth.json, checked by the model's own forward)."""
    claims = [Claim(id=f"{name}_{mode}", heads=heads, patch_mode=mode, fraction=0.9, **planted)
              for name, heads in (("true", "1:2"), ("missing", "1:1,0:2")) for mode in ("zero", "mean", "resample")]
    results = harness.evaluate(claims)
    for mode in ("zero", "mean", "resample"):
        true, missing = results[f"true_{mode}"], results[f"missing_{mode}"]
        assert true.verdict == "supported", true.explain()
        assert true.circuit["ablations"][mode]["faithfulness"] >= 0.9
        got = missing.circuit["ablations"][mode]
        assert missing.verdict != "supported" and got["faithfulness"] < 0.8
        # without the planted head, the circuit keeps only what the empty circuit keeps (the direct path)
        assert got["faithfulness"] == pytest.approx(got["empty_faithfulness"], abs=0.03)
        assert true.circuit["ablations"][mode]["empty_faithfulness"] < 0.75


def test_on_the_planted_model_minimality_flags_the_padding(planted):
    padded = Claim(id="padded", heads="1:2,0:1", criterion="minimal", patch_mode="zero", ablations=["zero", "mean"],
                   **{**planted, "random_heads": 0})  # fmt: skip
    r = harness.evaluate([padded])["padded"]
    for mode in ("zero", "mean"):
        flags = {h["head"]: h["necessary"] for h in r.circuit["ablations"][mode]["heads"]}
        assert flags == {"0:1": False, "1:2": True}, r.explain()
    assert r.verdict != "supported"  # not minimal: 0:1 is padding
    assert "without 0:1" in r.explain() and "not shown necessary" in r.explain()


def test_the_reports_have_a_circuit_block():
    from harness.report.circuit_block import circuit_html, circuit_markdown

    rec = {"claim": {"id": "c<1>", "patch_mode": "mean", "fraction": 0.5}, "verdict": "supported",
           "circuit": {"criterion": "faithful", "size": 3, "random": [{"heads": "0:1", "faithfulness": 0.1},
                                                                      {"heads": "0:2", "faithfulness": 0.3}],
                       "ablations": {"mean": {"faithfulness": 0.8, "ci_low": 0.6, "ci_high": 0.9, "p_raw": 0.001,
                                              "empty_faithfulness": 0.25},
                                     "zero": {"faithfulness": 0.4, "ci_low": 0.1, "ci_high": 0.7, "p_raw": 0.2}}}}
    lines = circuit_markdown([rec, {"claim": {"id": "plain"}, "verdict": "supported"}])
    assert lines[0] == "## Circuit claims" and "plain" not in "\n".join(lines)
    assert ("| c&lt;1&gt; | faithful (&gt;= 0.5) | mean | 3 | 0.800 [0.600, 0.900] | 0.250 | 0.001 | 0.10 / 0.20 / "
            "0.30 (min / median / max of 2) | supported |") in lines
    assert "| zero | 3 | 0.400 [0.100, 0.700] | — | 0.2 | — |" in "\n".join(lines)
    assert "<td>c&lt;1&gt;</td>" in circuit_html([rec]) and circuit_html([]) == "" and circuit_markdown([]) == []


def test_on_the_induction_model_both_heads_are_the_circuit(monkeypatch):
    """Previous-token head 0:1 and induction head 1:2 (truth.json): together faithful, either alone not;
    a third, inert head is flagged as padding by minimality."""
    monkeypatch.setenv("CAUSAL_HEADS_PROMPTS", groundtruth.prompts_dir("induction"))
    common = dict(model="groundtruth-induction", kind="circuit", source="repeat", target="neutral",
                  metric="repeat_logprob", n_prompts=16, max_tokens=1, tier="fast", patch_mode="mean",
                  ablations=["mean", "resample"])  # fmt: skip
    claims = [Claim(id=name, heads=heads, direction="increase", fraction=0.9, random_heads=5, **common)
              for name, heads in (("true", "0:1,1:2"), ("no_induction", "0:1,1:0"), ("no_previous", "0:0,1:2"))]
    claims.append(Claim(id="padded", heads="0:1,1:2,0:3", direction="increase", criterion="minimal", **common))
    r = harness.evaluate(claims)
    assert r["true"].verdict == "supported" and all(
        a["faithfulness"] >= 0.9 for a in r["true"].circuit["ablations"].values())
    for name in ("no_induction", "no_previous"):
        assert r[name].verdict != "supported" and all(
            a["faithfulness"] < 0.2 for a in r[name].circuit["ablations"].values()), r[name].explain()
    for a in r["padded"].circuit["ablations"].values():
        assert {h["head"]: h["necessary"] for h in a["heads"]} == {"0:1": True, "1:2": True, "0:3": False}
    assert r["padded"].verdict != "supported"


@pytest.mark.slow
def test_completeness_on_the_planted_model(planted):
    """Wang et al.'s completeness: the true circuit without any subset K behaves as the model
    without K; a circuit that lacks the planted head does not (the model without its other heads
    still has 1:2, the circuit does not)."""
    from harness.claims.circuit import subsets

    common = {**planted, "random_heads": 0, "direction": "equivalent", "margin": 0.5, "criterion": "complete",
              "patch_mode": "mean", "ablations": ["mean", "zero"]}  # fmt: skip
    claims = [Claim(id="true", heads="1:2", subsets=3, **common), Claim(id="lacking", heads="0:1,1:1", **common)]
    r = harness.evaluate(claims)
    assert r["true"].verdict == "supported", r["true"].explain()
    assert all(len(a["subsets"]) == 1 and a["subsets"][0]["without"] == "1:2" and a["subsets"][0]["score"] < 0.05
               for a in r["true"].circuit["ablations"].values())  # fmt: skip
    assert r["lacking"].verdict != "supported"
    worst = max(s["score"] for a in r["lacking"].circuit["ablations"].values() for s in a["subsets"])
    assert worst > 0.2 and "incompleteness" in r["lacking"].explain()
    heads = ((0, 1), (1, 1), (1, 2))
    assert subsets(heads, 4, 0) == subsets(heads, 4, 0) and len(set(subsets(heads, 100, 0))) == 7  # all of them
