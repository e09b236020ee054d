"""Claims as data: loading, validation, test ids, and the claims suite run end to end."""

from __future__ import annotations

import json
import math
import os
import re

import numpy as np
import pytest

# torch (imported by harness.models) must be in sys.modules before a pytester test starts: the
# pytester fixture restores sys.modules afterwards, and importing torch again in the same
# process then crashes (seen: a segmentation fault when these tests ran alone)
import harness.model.loading  # noqa: F401
from harness.claims.spec import claims_toml, load_claim_files, load_claims, with_overrides
from harness.core.errors import UserError
from harness.pytest_plugin.plugin import claim_params

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, "causal_tests", "claims.toml")
SHIPPED_FILES = [SHIPPED, os.path.join(ROOT, "causal_tests", "sweep_claims.toml")]
BASE = {"id": "c1", "model": "tiny-gpt2", "heads": "1:10", "patch_mode": "z", "source": "gratitude",
        "metric": "gratitude_keywords", "direction": "increase"}


def _load(tmp_path, rows):
    path = tmp_path / "claims.toml"
    path.write_text(claims_toml(rows))
    return load_claims(str(path))


def test_shipped_claims_load_and_cover_the_seed():
    claims = load_claims(SHIPPED)
    ids = {c.id for c in claims}
    assert len(ids) == len(claims) >= 10
    seed = [c for c in claims if c.model == "gpt2"]
    assert {c.heads for c in seed} == {"1:10", "0:0"}
    assert {c.patch_mode for c in seed} == {"pattern_v", "v_only"}
    assert any(c.direction == "equivalent" and c.versus for c in seed)
    assert {c.tier for c in claims} == {"fast", "slow"}


def test_test_ids_are_k_friendly(tmp_path):
    c = _load(tmp_path, [BASE, {**BASE, "id": "c2", "heads": "0:*,1:10", "direction": "equivalent", "margin": 0.1,
                                "versus": {"heads": "1:3"}}])
    assert c[0].test_id == "c1-head_1_10"
    assert c[1].test_id == "c2-head_0_all-1_10-head_1_3"
    assert c[1].versus.patch_mode == "z" and c[1].versus.source == "gratitude"


@pytest.mark.parametrize("change, message", [
    ({"heads": "1-10"}, "claim 'c1': field 'heads' = '1-10': malformed head '1-10'"),
    ({"patch_mode": "pattern-v"}, "field 'patch_mode' = 'pattern-v': unknown patch mode"),
    ({"source": "gratitud"}, "field 'source' = 'gratitud': unknown emotion 'gratitud'. Did you mean 'gratitude'"),
    ({"metric": "gratitude_keyword"}, "field 'metric/target' = 'gratitude_keyword/neutral': unknown metric"),
    ({"direction": "up"}, "field 'direction' = 'up': must be one of increase, decrease, equivalent"),
    ({"direction": "equivalent"}, "field 'margin' = None: an 'equivalent' claim needs a finite margin > 0"),
    ({"direction": "equivalent", "margin": float("inf")}, "field 'margin' = inf: an 'equivalent' claim needs a finite"),
    ({"temperature": float("inf")}, "field 'temperature' = inf: must be finite and >= 0.0001"),
    ({"temperature": 1e-300}, "field 'temperature' = 1e-300: must be finite and >= 0.0001 (smaller ones overflow"),
    ({"alpha": 0.7}, "field 'alpha' = 0.7: must be in (0, 0.5)"),
    ({"n_prompts": 500}, "field 'n_prompts' = 500: must be in [2, 310]"),
    ({"split": "confirmation", "n_prompts": 121}, "field 'n_prompts' = 121: must be in [2, 120]"),
    ({"split": "heldout"}, "field 'split' = 'heldout': must be one of all, discovery, confirmation"),
    ({"samples": 2, "do_sample": False}, "field 'samples' = 2: must be >= 1, and 1 with greedy decoding"),
    ({"samples": "2"}, "field 'samples' = '2': must be of type int"),
    ({"tier": "nightly"}, "field 'tier' = 'nightly': must be one of fast, slow"),
    ({"statistic": "median"}, "field 'statistic' = 'median': must be one of mean, sign"),
    ({"statistic": "sign", "direction": "equivalent", "margin": 0.1},
     "field 'statistic' = 'sign': an 'equivalent' claim is a TOST on the mean"),
    ({"id": "Bad-Id"}, "field 'id' = 'Bad-Id': must be lowercase letters"),
    ({"sampels": 2}, "claim 'c1': unknown field 'sampels'. Did you mean 'samples'"),
    ({"versus": {"layer": 1}}, "field 'versus' = {'layer': 1}: must be a table"),
])
def test_invalid_rows_name_claim_field_and_value(tmp_path, change, message):
    with pytest.raises(UserError) as info:
        _load(tmp_path, [{**BASE, **change}])
    assert message in str(info.value)


@pytest.mark.parametrize("field, good, bad", [
    ("alpha", [1e-9, 0.4999], [0.0, 0.5]),
    ("n_prompts", [2, 310], [1, 311]),
    ("max_tokens", [1, 4096], [0, 4097]),
    ("seed", [0], [-1]),
    ("temperature", [1e-4], [9.9e-5, 0.0, -1.0]),
    ("top_p", [1e-6, 1.0], [0.0, 1.01]),
    ("top_k", [0], [-1]),
    ("random_heads", [0, 1000], [-1, 1001]),
    ("samples", [1], [0]),
    ("margin", [1e-9], [0.0, -0.1]),
])
def test_numeric_fields_accept_their_edges_and_refuse_just_beyond(tmp_path, field, good, bad):
    row = {**BASE, "direction": "equivalent", "margin": 0.1} if field == "margin" else BASE
    for value in good:
        (c,) = _load(tmp_path, [{**row, field: value}])
        assert getattr(c, field) == value
    for value in bad:
        with pytest.raises(UserError, match=f"claim 'c1': field '{field}' = {value!r}: "):
            _load(tmp_path, [{**row, field: value}])


def test_overrides_are_validated_and_the_message_names_them():
    c = load_claims(SHIPPED)[0]
    assert with_overrides(c, n_prompts=None) is c
    with pytest.raises(UserError) as info:
        with_overrides(c, n_prompts=500, seed=1)
    assert str(info.value).startswith(f"{c.file} with n_prompts=500, seed=1: claim '{c.id}': field 'n_prompts' = 500")
    with pytest.raises(UserError, match=r"with --n-prompts 500: claim"):
        with_overrides(c, "--n-prompts 500", n_prompts=500)


def test_missing_fields_and_duplicate_ids(tmp_path):
    with pytest.raises(UserError, match="claim 'c1': missing field\\(s\\) metric, direction"):
        _load(tmp_path, [{k: v for k, v in BASE.items() if k not in ("metric", "direction")}])
    with pytest.raises(UserError, match="field 'id' = 'c1': is used by another claim"):
        _load(tmp_path, [BASE, BASE])
    with pytest.raises(UserError, match="claim '#2': missing field\\(s\\) id$"):  # named by its 1-based row
        _load(tmp_path, [BASE, {k: v for k, v in BASE.items() if k != "id"}])


@pytest.mark.parametrize("text, message", [
    ("", "no [[claim]] tables"),
    ("claim = [1, 2]\n", "no [[claim]] tables"),
    ("[[claims]]\nid = 'c1'\n", "unknown top-level key(s) 'claims': every claim is a [[claim]] table"),
    (None, "unknown top-level key(s) 'cliam'"),  # a misspelt table after good ones is not dropped silently
    ("[[claim]\n", "not valid TOML"),
])
def test_malformed_claims_files_are_named(tmp_path, text, message):
    path = tmp_path / "claims.toml"
    path.write_text(text if text is not None else claims_toml([BASE]) + "\n[[cliam]]\nid = 'c2'\n")
    with pytest.raises(UserError) as info:
        load_claims(str(path))
    assert str(path) in str(info.value) and message in str(info.value)


def test_claims_toml_round_trips_and_ids_are_unique_across_files(tmp_path):
    rows = [{**BASE, "description": 'quotes " and \\ and ünïcode', "margin": 0.25, "direction": "equivalent",
             "versus": {"patch_mode": "v_only"}, "random_heads": 3, "do_sample": False}]
    (tmp_path / "a.toml").write_text(claims_toml(rows, header="generated\nby a test"))
    assert 'ünïcode' in (tmp_path / "a.toml").read_text()  # written as UTF-8, not \\u escapes
    assert "margin = -inf\n" in claims_toml([{**BASE, "margin": -math.inf}])
    assert (tmp_path / "a.toml").read_text().startswith("# generated\n# by a test\n")
    [c] = load_claims(str(tmp_path / "a.toml"))
    assert (c.description, c.margin, c.versus.patch_mode, c.versus.heads, c.do_sample) == \
        (rows[0]["description"], 0.25, "v_only", "1:10", False)
    (tmp_path / "b.toml").write_text(claims_toml([BASE]))
    assert [c.id for c in load_claim_files([str(tmp_path / "b.toml")])] == ["c1"]
    with pytest.raises(UserError, match="is also used in .*a.toml"):
        load_claim_files([str(tmp_path / "a.toml"), str(tmp_path / "b.toml")])
    with pytest.raises(TypeError):
        claims_toml([{"id": [1]}])


def test_overrides_apply_only_given_values():
    c = load_claims(SHIPPED)[0]
    o = with_overrides(c, n_prompts=10, samples=None, seed=3)
    assert (o.n_prompts, o.samples, o.seed) == (10, c.samples, 3)


def test_k_selects_exactly_the_head_1_10_claims(pytester):
    """A claim file's rows and the Python claims alike (causal_tests/test_python_claims.py)."""
    result = pytester.runpytest_subprocess(os.path.join(ROOT, "causal_tests"), "--co", "-q", "-k", "head_1_10",
                                           "-p", "no:cacheprovider")
    ids = [line for line in result.outlines if "::" in line]
    rows = [i.split("::")[1] for i in ids if i.split("::")[0].endswith(".toml")]
    expected = [c.test_id for c in load_claim_files(SHIPPED_FILES) if "1:10" in (c.heads, getattr(c.versus, "heads", None))]
    assert sorted(rows) == sorted(expected) and len(expected) == 4
    python = sorted(i.split("::")[1] for i in ids if i.split("::")[0].endswith(".py"))
    assert python == ["test_identity_patch_changes_nothing", "test_tripling_a_head_changes_generations",
                      "test_zeroing_one_head_changes_generations[1:10]"]


def test_claims_suite_end_to_end_on_a_tiny_model(pytester):
    """pytest inside pytest: verdicts decide pass/fail, errors are reported, findings are written."""
    rows = [
        {**BASE, "id": "identity", "source": "neutral", "metric": "sentiment", "direction": "equivalent",
         "margin": 0.01, "n_prompts": 8, "max_tokens": 6, "tier": "fast"},
        {**BASE, "id": "random_model_no_effect", "metric": "politeness", "n_prompts": 8, "max_tokens": 6,
         "random_heads": 2, "tier": "fast"},
        {**BASE, "id": "broken", "heads": "1:99", "n_prompts": 8, "max_tokens": 6, "tier": "fast"},
        {**BASE, "id": "slow_one", "n_prompts": 8, "max_tokens": 6},
    ]
    claims = pytester.path / "claims.toml"
    claims.write_text(claims_toml(rows))
    findings = pytester.path / "findings.json"
    result = pytester.runpytest_subprocess("-m", "not slow", "--claims", str(claims), "--findings", str(findings),
                                           "-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=1, failed=2, deselected=1)
    out = result.stdout.str()
    assert "random_model_no_effect: not supported" in out and "rerun: pytest claims.toml -k" in out
    assert "broken: error: UserError: head 1:99 is out of range for tiny-gpt2" in out
    doc = json.loads(findings.read_text())
    assert doc["schema"] == "causal-heads/findings" and doc["schema_version"] == 1
    by_id = {c["claim"]["id"]: c for c in doc["claims"]}
    assert by_id["identity"]["verdict"] == "supported" and by_id["identity"]["per_prompt"]["delta"] == [0.0] * 8
    assert by_id["broken"]["verdict"] == "error" and "out of range" in by_id["broken"]["error"]
    rc = by_id["random_model_no_effect"]["random_control"]
    assert len(rc["null"]) == 2 and 0 <= rc["percentile"] <= 100
    # Holm over the two evaluated claims: adjusted >= raw
    assert by_id["random_model_no_effect"]["p_adjusted"] >= by_id["random_model_no_effect"]["p_raw"]


def test_random_head_sets_are_distinct_and_avoid_the_claimed_heads(tiny_gpt2):
    from harness.claims.controls import random_head_sets
    from harness.claims.spec import Claim

    claim = Claim(id="x", model="tiny-gpt2", heads="1:10,0:3", patch_mode="z", source="gratitude",
                  metric="sentiment", direction="increase", random_heads=20)
    n_heads = tiny_gpt2.shape.n_heads
    sets = random_head_sets(claim, ((0, 3), (1, 10)), n_heads)
    assert len(sets) == 20 == len(set(sets))
    assert all(len(s) == 2 and s[0][0] == 0 and s[1][0] == 1 and (0, 3) not in s and (1, 10) not in s for s in sets)
    single = Claim(**{**claim.__dict__, "heads": "1:10", "random_heads": 15})
    assert len(random_head_sets(single, ((1, 10),), n_heads)) == 11  # only 11 other heads in layer 1
    versus_1_3 = random_head_sets(single, ((1, 10),), n_heads, avoid=((1, 3),))  # 1:10 vs 1:3: neither is random
    assert len(versus_1_3) == 10 and all((1, 3) not in s for s in versus_1_3)


def test_rerun_commands_name_the_claim_file_as_typed_where_the_run_started(tmp_path, monkeypatch):
    """A rerun command is typed where the run was started: the claim file relative to that
    directory when inside it, else absolute."""
    from harness.claims.result import ClaimResult
    from harness.claims.spec import Claim

    claim = load_claims(SHIPPED)[0]
    monkeypatch.chdir(tmp_path)
    inside, outside = str(tmp_path / "causal_tests" / "extra.toml"), os.path.join(ROOT, "mine.toml")
    for file, shown in ((inside, os.path.join("causal_tests", "extra.toml")), (outside, outside)):
        moved = claim.replace()
        moved._file = file
        cmd = ClaimResult(claim=moved).rerun_command()
        assert cmd.startswith(f"pytest {shown} -k '{claim.test_id}' --seed {claim.seed}")
    built_in_python = Claim(**claim.row())
    assert built_in_python.file == "" and built_in_python == claim
    assert ClaimResult(claim=built_in_python).rerun_command().startswith(f"pytest -k '{claim.test_id}'")


def test_a_sign_claim_is_decided_by_the_sign_test_and_compared_on_medians(tiny_gpt2):
    """Same data, two pre-declared statistics: the mean claim's p is the sign-flip test's,
    the sign claim's is the exact sign test's, and its random heads are compared on medians."""
    import numpy as np

    from harness.claims.session import ClaimSession
    from harness.claims.spec import Claim

    base = {"model": "tiny-gpt2", "heads": "1:10", "patch_mode": "z", "source": "gratitude",
            "metric": "gratitude_logprob", "direction": "increase", "n_prompts": 8, "max_tokens": 4, "random_heads": 2}
    claims = [Claim(id="by_mean", **base), Claim(id="by_sign", statistic="sign", **base)]
    session = ClaimSession(claims, n_resamples=2000)
    session.models.add("tiny-gpt2", tiny_gpt2)
    res = session.results()
    by_mean, by_sign = res["by_mean"], res["by_sign"]
    delta = np.array(by_sign.per_prompt["delta"])
    assert delta.tolist() == by_mean.per_prompt["delta"] and np.count_nonzero(delta) == 8  # continuous metric
    assert by_sign.p_raw == by_sign.sign["p_value"] and by_mean.p_raw == by_mean.effect["p_value"]
    assert by_sign.sign == by_mean.sign and by_sign.sign["n_up"] + by_sign.sign["n_down"] == 8
    assert by_sign.random_control["claimed"] == float(np.median(delta))
    assert by_mean.random_control["claimed"] == float(np.mean(delta))
    assert "sign test (decides: statistic = sign): median" in by_sign.message()
    assert "sign test: median" in by_mean.message()


def test_random_heads_of_a_versus_claim_are_put_through_the_same_contrast(tiny_gpt2):
    """A versus claim's null is the claim's contrast with random heads, not random heads vs baseline.

    ``z`` vs ``pattern_v`` on the same heads is 0 by construction (up to float rounding), so its null
    must be 0 too;
    a source contrast (gratitude vs anger) swaps the random set into both sides; a contrast with
    other heads swaps it into the claimed side only.
    """
    import numpy as np

    from harness.claims.session import ClaimSession
    from harness.claims.spec import Claim, Condition

    base = {"model": "tiny-gpt2", "heads": "1:10", "patch_mode": "z", "source": "gratitude",
            "metric": "gratitude_logprob", "direction": "increase", "n_prompts": 6, "max_tokens": 3, "random_heads": 2}
    claims = [Claim(id="modes", versus=Condition("1:10", "pattern_v", "gratitude"), **base),
              Claim(id="sources", versus=Condition("1:10", "z", "anger"), **base),
              Claim(id="heads", versus=Condition("0:3", "z", "gratitude"), **base)]
    session = ClaimSession(claims, n_resamples=500)
    session.models.add("tiny-gpt2", tiny_gpt2)
    res = session.results()
    assert res["modes"].error is None and res["modes"].per_prompt["delta"] == pytest.approx([0.0] * 6, abs=1e-5)
    assert res["modes"].random_control["null"] == pytest.approx([0.0, 0.0], abs=1e-5)

    from harness.claims.controls import avoided_heads, random_head_sets
    from harness.claims.evaluation import scores
    from harness.claims.resolve import Resolver

    def run(c, spec, source):  # the run of the patch of heads ``spec`` from ``source``, as the session generated it
        rc = Resolver(session.models)(c.replace(heads=spec, source=source, versus=None, random_heads=0))
        return scores(session.execution[rc.patched.key], c.metric)

    shape = tiny_gpt2.shape
    for cid in ("sources", "heads"):
        c, r = claims[[x.id for x in claims].index(cid)], res[cid]
        assert r.error is None
        sets = random_head_sets(c, ((1, 10),), shape.n_heads, avoided_heads(c, shape.n_layers, shape.n_heads))
        expected = []
        for rs in sets:
            spec = ",".join(f"{l}:{h}" for l, h in rs)
            other = run(c, spec, "anger") if cid == "sources" else np.array(r.per_prompt["versus"])
            expected.append(float(np.mean(run(c, spec, "gratitude") - other)))
        assert r.random_control["null"] == pytest.approx(expected, abs=1e-12)
        baseline_null = [float(np.mean(run(c, ",".join(f"{l}:{h}" for l, h in rs), "gratitude")
                                       - np.array(r.per_prompt["baseline"]))) for rs in sets]
        assert r.random_control["null"] != pytest.approx(baseline_null, abs=1e-9)


def test_profile_and_flags_set_every_claim_and_bad_overrides_are_one_message(pytester):
    """--profile sets generation settings on every claim, flags win over it, the findings and the
    rerun command record both; an override that makes a claim invalid stops collection with one
    message naming the option, the claim, the field and the value (exit 2, no traceback)."""
    rows = [{**BASE, "id": "identity", "source": "neutral", "metric": "sentiment", "direction": "equivalent",
             "margin": 0.01, "n_prompts": 8, "max_tokens": 6, "tier": "fast"}]
    claims = pytester.path / "claims.toml"
    claims.write_text(claims_toml(rows))
    findings = pytester.path / "findings.json"
    common = ("--findings", str(findings), "-p", "no:cacheprovider", "-q")
    result = pytester.runpytest_subprocess(str(claims), "--profile", "greedy", "--n-prompts", "5", *common)
    result.assert_outcomes(passed=1)
    doc = json.loads(findings.read_text())
    (res,) = doc["claims"]
    assert doc["profile"] == "greedy"
    assert (res["claim"]["do_sample"], res["claim"]["n_prompts"], res["claim"]["max_tokens"]) == (False, 5, 30)
    assert len(res["per_prompt"]["delta"]) == 5 and res["rerun"].endswith("--n-prompts 5 --samples 1 --profile greedy")

    # through pytest in a real process: one message, exit 2, no traceback
    result = pytester.runpytest_subprocess(str(claims), "--profile", "greedy", "--samples", "3", *common)
    out = result.stdout.str()
    assert result.ret == 2 and "with --profile greedy --samples 3: claim 'identity': field" in out, out
    assert "Traceback" not in out and "During handling" not in out and "harness/" not in out
    # the same collection step in this process for the other bad overrides
    bad = [(("--n-prompts", "1000"), "with --n-prompts 1000: claim 'identity': field 'n_prompts' = 1000: must be in"),
           (("--profile", "gredy"), "unknown profile 'gredy'. Did you mean 'greedy'?")]
    for args, message in bad:
        with pytest.raises(UserError) as info:
            claim_params(pytester.parseconfig("--claims", str(claims), *args))
        assert message in str(info.value)


def test_random_heads_option_sizes_every_existing_control_and_reruns_say_so(pytester):
    """--random-heads K: claims with a random-head control use K (a rerun command repeats the
    option); claims without one keep none; a bad K is one collection message."""
    small = {"n_prompts": 6, "max_tokens": 3, "metric": "sentiment", "tier": "fast"}
    rows = [{**BASE, **small, "id": "with_control", "random_heads": 2},
            {**BASE, **small, "id": "without_control"}]
    claims = pytester.path / "claims.toml"
    claims.write_text(claims_toml(rows))
    findings = pytester.path / "findings.json"
    common = ("--claims", str(claims), "--findings", str(findings), "-p", "no:cacheprovider", "-q")
    pytester.runpytest_subprocess("--random-heads", "3", *common)
    by_id = {c["claim"]["id"]: c for c in json.loads(findings.read_text())["claims"]}
    assert by_id["with_control"]["claim"]["random_heads"] == 3 and len(by_id["with_control"]["random_control"]["null"]) == 3
    assert by_id["without_control"]["claim"]["random_heads"] == 0 and by_id["without_control"]["random_control"] is None
    assert by_id["with_control"]["rerun"].endswith("--random-heads 3")
    with pytest.raises(UserError, match="with --random-heads -1: claim 'with_control': field 'random_heads' = -1"):
        claim_params(pytester.parseconfig("--claims", str(claims), "--random-heads", "-1"))


def test_a_profile_for_claims_keeps_generation_settings_and_refuses_what_claims_cannot_take(tmp_path):
    from harness.run.profiles import profile_claim_settings

    path = tmp_path / "profiles.toml"
    path.write_text('[fast]\ndescription = "x"\ndo_sample = false\nmax_tokens = 8\nbatch_size = 16\n'
                    '[chatless]\nprompt_format = "plain"\n[own]\nprompt_format = "model"\npatch_generated = false\n'
                    '[typo]\nmax_token = 8\n')
    assert profile_claim_settings("fast", str(path)) == {"do_sample": False, "max_tokens": 8}
    assert profile_claim_settings("own", str(path)) == {}
    with pytest.raises(UserError, match="profile 'chatless' sets prompt_format, which claims cannot take"):
        profile_claim_settings("chatless", str(path))
    with pytest.raises(UserError, match="profile 'typo': unknown key 'max_token'. Did you mean 'max_tokens'"):
        profile_claim_settings("typo", str(path))


def test_n_prompts_may_not_exceed_a_source_set(tmp_path, monkeypatch):
    """Source i is patched into target i, so a source set shorter than n_prompts is an error, not a silent cut."""
    import shutil

    prompts = tmp_path / "prompts"
    shutil.copytree(os.path.join(ROOT, "prompts"), prompts)
    doc = json.loads((prompts / "anger_prompts.json").read_text())
    doc = {k: doc[k] for k in ("format", "name", "kind", "description")} | {"version": 1, "prompts": doc["prompts"][:10]}
    (prompts / "anger_prompts.json").write_text(json.dumps(doc))
    monkeypatch.setenv("CAUSAL_HEADS_PROMPTS", str(prompts))
    assert _load(tmp_path, [{**BASE, "n_prompts": 20, "versus": {"source": "gratitude"}}])[0].n_prompts == 20
    with pytest.raises(UserError, match="claim 'c1': field 'split' = 'confirmation': prompt set 'anger' .* has no "
                                        "discovery/confirmation split"):
        _load(tmp_path, [{**BASE, "split": "confirmation", "source": "anger"}])
    with pytest.raises(UserError, match="claim 'c1': field 'n_prompts' = 20: source 'anger' has only 10 prompts"):
        _load(tmp_path, [{**BASE, "n_prompts": 20, "source": "anger"}])
    with pytest.raises(UserError, match="field 'n_prompts' = 11: versus.source 'anger' has only 10 prompts"):
        _load(tmp_path, [{**BASE, "n_prompts": 11, "versus": {"source": "anger"}}])


def test_data_warnings_say_when_a_claim_cannot_be_supported_by_its_data():
    """floor / ceiling when the metric sits at its bound in both compared conditions;
    untestable when so few prompts changed that no test can reach alpha (2**-m >= alpha)."""
    import numpy as np

    from harness.claims.data_warnings import data_warnings
    from harness.claims.spec import Claim
    from harness.metrics import get_metric

    kw, senti = get_metric("gratitude_keywords"), get_metric("sentiment")
    claim = Claim(**BASE)
    base = np.zeros(70)
    patched = np.zeros(70)
    patched[:4] = 1.0  # 4 prompts gained a keyword: 66/70 still at the floor
    codes = {w["code"]: w["message"] for w in data_warnings(claim, kw, base, patched, patched - base, "greater")}
    assert set(codes) == {"floor", "untestable", "degenerate"}  # 66 of 70 differences exactly 0
    assert "70/70 prompts in baseline and 66/70 patched" in codes["floor"]
    assert "only 4/70 prompts changed" in codes["untestable"] and "0.0625" in codes["untestable"]
    patched[:5] = 1.0  # 5 changed: 2**-5 < 0.05, testable; 65/70 = 93% still at the floor
    assert [w["code"] for w in data_warnings(claim, kw, base, patched, patched - base, "greater")] \
        == ["floor", "degenerate"]
    patched[:10] = 1.0  # 60/70 = 86% at the floor: no floor warning (60 of 70 differences 0: degenerate)
    assert [w["code"] for w in data_warnings(claim, kw, base, patched, patched - base, "greater")] == ["degenerate"]
    ones = np.ones(70)
    assert [w["code"] for w in data_warnings(claim, senti, ones, ones, ones - ones, "greater")] == ["ceiling",
                                                                                                   "untestable"]
    # equivalence claims: the bound warnings (an unchanged metric is what they claim), and untestable
    # when their TOST interval is at least twice the margin wide (no mean could be declared equivalent)
    eq = Claim(**{**BASE, "direction": "equivalent", "margin": 0.1})
    assert [w["code"] for w in data_warnings(eq, kw, base, base, base, "two-sided")] == ["floor", "degenerate"]
    noisy = np.random.default_rng(0).normal(0.0, 0.25, 70)  # sd 0.25: 90% t interval ~0.1 wide
    assert data_warnings(eq, senti, noisy + 0.5, noisy + 0.5, noisy, "two-sided") == []
    wide = data_warnings(eq, senti, noisy + 0.5, noisy + 0.5, 3 * noisy, "two-sided")
    assert [w["code"] for w in wide] == ["untestable"]
    assert "90% interval of the mean Δ is 0.2" in wide[0]["message"] and "twice the margin 0.1" in wide[0]["message"]


def test_a_keyword_claim_on_a_random_model_warns_and_says_so_everywhere(tiny_gpt2):
    """The tiny random model never writes a gratitude word: the claim is evaluated, stays
    "not supported", and carries floor + untestable warnings into its message and findings."""
    from harness.claims.session import ClaimSession
    from harness.claims.spec import Claim
    from harness.report.markdown import render_markdown

    claim = Claim(**{**BASE, "n_prompts": 6, "max_tokens": 4})
    session = ClaimSession([claim], n_resamples=500)
    session.models.add("tiny-gpt2", tiny_gpt2)
    r = session.results()["c1"]
    assert r.error is None and r.verdict == "not supported"
    assert r.per_prompt["baseline"] == [0.0] * 6 == r.per_prompt["patched"]
    assert [w["code"] for w in r.warnings] == ["floor", "untestable"]
    msg = r.message()
    assert "warning (floor): gratitude_keywords is at its floor (0) for 6/6 prompts" in msg
    assert "MDE at this n undefined (the differences have no variance)" in msg
    doc = {"claims": [r.to_dict()]}
    assert json.loads(json.dumps(doc))["claims"][0]["warnings"] == r.warnings
    md = render_markdown(doc, doc["claims"])
    assert "**uninformative data** (1;" in md and "c1: floor:" in md and "MDE undefined" in md


# ---------------------------------------------------------------- verdict rules

def _stub_result(cid, direction="increase", *, p, p_refute, ci=(0.1, 0.5), beats=None, statistic="mean",
                 margin=None):
    from harness.claims.result import ClaimResult
    from harness.claims.spec import Claim

    claim = Claim(id=cid, model="tiny-gpt2", heads="1:10", patch_mode="z", source="gratitude", metric="sentiment",
                  direction=direction, margin=margin, statistic=statistic)
    effect = {"mean": sum(ci) / 2, "ci_low": ci[0], "ci_high": ci[1], "p_opposite": p_refute}
    r = ClaimResult(claim=claim, p_raw=p, p_refute_raw=p_refute, effect=effect,
                    sign={"ci_low": ci[0], "ci_high": ci[1]},
                    random_control=None if beats is None else {"beats_all": beats})
    if direction == "equivalent":
        r.equivalence = {"ci_low": ci[0], "ci_high": ci[1]}
    return r


def _verdicts(results, correction="holm"):
    from harness.claims.family import correct_family

    correct_family(results, correction)  # the family step alone: stubs, nothing to generate
    assert all(r.correction == correction for r in results)
    return {r.claim.id: (r.verdict, r.p_adjusted, r.p_refute_adjusted) for r in results}


def test_verdicts_follow_the_adjusted_p_values_both_ways():
    v = _verdicts([
        _stub_result("up", p=0.001, p_refute=0.999),
        _stub_result("up_but_random_heads_do_as_much", p=0.001, p_refute=0.999, beats=False),
        _stub_result("up_beats_random_heads", p=0.001, p_refute=0.999, beats=True),
        _stub_result("weak", p=0.03, p_refute=0.9),  # raw p < alpha, Holm-adjusted not
        _stub_result("down_strongly", p=0.999, p_refute=0.0005, ci=(-0.6, -0.2)),
        _stub_result("down_weakly", p=0.98, p_refute=0.02, ci=(-0.5, -0.01)),  # raw p < alpha, adjusted not
        _stub_result("down_p_but_ci_across_0", p=0.999, p_refute=0.0001, ci=(-0.4, 0.01)),
    ])
    assert v["up"][0] == "supported" and v["up_beats_random_heads"][0] == "supported"
    assert v["up_but_random_heads_do_as_much"][0] == "not supported"
    assert v["weak"][0] == "not supported" and v["weak"][1] == pytest.approx(min(1.0, 0.03 * 4))
    assert v["down_strongly"][0] == "refuted" and v["down_strongly"][2] == pytest.approx(0.0005 * 6)
    assert v["down_weakly"][0] == "not supported"  # refuted at raw p 0.02 before the correction
    assert v["down_p_but_ci_across_0"][0] == "not supported"


def test_equivalence_verdicts_and_their_refutation():
    from harness.stats import nonequivalence_p, tost

    inside = [0.01, -0.02, 0.015, 0.0, -0.01, 0.02, 0.005, -0.005]
    outside = [0.5, 0.6, 0.55, 0.45, 0.52, 0.58, 0.61, 0.49]
    v = _verdicts([
        _stub_result("same", "equivalent", margin=0.1, p=tost(inside, margin=0.1).p_value,
                     p_refute=nonequivalence_p(inside, margin=0.1)),
        _stub_result("different", "equivalent", margin=0.1, p=tost(outside, margin=0.1).p_value,
                     p_refute=nonequivalence_p(outside, margin=0.1)),
        _stub_result("unclear", "equivalent", margin=0.1, p=0.3, p_refute=0.4),
    ])
    assert [v[k][0] for k in ("same", "different", "unclear")] == ["supported", "refuted", "not supported"]


def test_nonequivalence_p_rejects_exactly_when_the_tost_interval_is_outside_the_margin():
    from harness.stats import nonequivalence_p, tost

    rng = np.random.default_rng(3)
    for _ in range(200):
        x = rng.normal(rng.uniform(-1, 1), rng.uniform(0.05, 1), size=int(rng.integers(3, 30)))
        margin = float(rng.uniform(0.05, 0.8))
        eq = tost(x, margin=margin)
        outside = eq.ci_low >= margin or eq.ci_high <= -margin
        assert (nonequivalence_p(x, margin=margin) < 0.05) == outside
    assert nonequivalence_p([0.2] * 4, margin=0.2) == 0.0 and nonequivalence_p([0.1] * 4, margin=0.2) == 1.0


def test_data_warnings_at_their_exact_boundaries():
    """Each warning's threshold is inclusive: 90% of prompts at the bound (63/70) warns; an
    equivalence interval exactly twice the margin wide is untestable; a smallest attainable p
    equal to alpha (4 changed prompts, alpha = 2**-4) is untestable."""
    from harness.claims.data_warnings import data_warnings
    from harness.claims.spec import Claim
    from harness.metrics import get_metric
    from harness.stats import tost

    kw, senti = get_metric("gratitude_keywords"), get_metric("sentiment")
    base, patched = np.zeros(70), np.zeros(70)
    patched[:7] = 1.0  # 63/70 = 0.9 still at the floor
    claim = Claim(**BASE)
    assert [w["code"] for w in data_warnings(claim, kw, base, patched, patched - base, "greater")] \
        == ["floor", "degenerate"]  # (63 of 70 differences exactly 0)
    assert [w["code"] for w in data_warnings(claim, kw, patched, base, base - patched, "greater")] \
        == ["floor", "degenerate"]  # the same with the roles swapped
    patched[:8] = 1.0  # 62/70: no floor warning (62 of 70 differences are 0: degenerate)
    assert [w["code"] for w in data_warnings(claim, kw, base, patched, patched - base, "greater")] == ["degenerate"]
    assert [w["code"] for w in data_warnings(claim, kw, patched, base, base - patched, "greater")] == ["degenerate"]
    four = np.zeros(70)
    four[:4] = 1.0
    at_alpha = Claim(**{**BASE, "alpha": 2 ** -4})
    assert [w["code"] for w in data_warnings(at_alpha, senti, four + 0.5, four + 0.5, four, "greater")] \
        == ["untestable", "degenerate"]
    noisy = np.random.default_rng(1).normal(0.0, 0.25, 70)
    eq = tost(noisy, margin=1.0)
    half_width = (eq.ci_high - eq.ci_low) / 2  # exact: the interval is then exactly 2 * margin wide
    at_margin = Claim(**{**BASE, "direction": "equivalent", "margin": half_width})
    assert [w["code"] for w in data_warnings(at_margin, senti, noisy + 0.5, noisy + 0.5, noisy, "two-sided")] \
        == ["untestable"]
    wider_margin = Claim(**{**BASE, "direction": "equivalent", "margin": half_width * 1.0001})
    assert data_warnings(wider_margin, senti, noisy + 0.5, noisy + 0.5, noisy, "two-sided") == []


@pytest.mark.parametrize("direction, versus, changed, inert", [
    ("increase", None, {"patched_vs_baseline": 0}, "the patch changed none"),
    ("increase", None, {"patched_vs_baseline": 1}, None),
    ("decrease", None, {"patched_vs_baseline": 0}, "the patch changed none"),
    ("equivalent", None, {"patched_vs_baseline": 0}, None),  # the identity claim: no change is expected
    ("equivalent", "versus", {"patched_vs_baseline": 0, "versus_vs_baseline": 0}, "neither condition changed any"),
    ("increase", "versus", {"patched_vs_baseline": 0, "versus_vs_baseline": 0}, "neither condition changed any"),
    ("increase", "versus", {"patched_vs_baseline": 0, "versus_vs_baseline": 3}, None),
    ("equivalent", "versus", {"patched_vs_baseline": 2, "versus_vs_baseline": 0}, None),
    ("increase", None, None, None),  # not recorded: no claim about it
])
def test_inert_warning_when_the_patch_changed_no_generation(direction, versus, changed, inert):
    from harness.claims.data_warnings import data_warnings
    from harness.claims.spec import Claim, Condition
    from harness.metrics import get_metric

    row = {**BASE, "direction": direction, "margin": 0.5 if direction == "equivalent" else None}
    if versus:
        row["versus"] = Condition("1:10", "z", "anger")
    claim = Claim(**row)
    x = np.random.default_rng(2).normal(0.5, 0.1, 70)
    warnings = data_warnings(claim, get_metric("sentiment"), x, x + 0.01, np.full(70, 0.01),
                             "two-sided" if direction == "equivalent" else "greater", changed)
    got = [w["message"] for w in warnings if w["code"] == "inert"]
    if inert is None:
        assert got == []
    else:
        assert len(got) == 1 and got[0].startswith(f"{inert} of the 70 generations (token for token)")


def test_verdict_thresholds_are_strict_and_use_the_deciding_statistics_ci():
    """p = alpha is not significant; a CI that touches 0 does not exclude it; a decrease claim is
    refuted by a CI above 0; a sign-statistic claim is refuted on the sign test's CI, not the mean's."""
    def verdict(**kw):
        (v,) = _verdicts([_stub_result("c", **kw)]).values()
        return v[0]

    assert verdict(p=0.05, p_refute=0.99) == "not supported"
    assert verdict(p=0.0499, p_refute=0.99) == "supported"
    assert verdict(p=0.99, p_refute=0.05, ci=(-0.5, -0.1)) == "not supported"
    assert verdict(p=0.99, p_refute=0.001, ci=(-0.5, 0.0)) == "not supported"
    assert verdict(p=0.99, p_refute=0.001, ci=(-0.5, -1e-9)) == "refuted"
    assert verdict(direction="decrease", p=0.99, p_refute=0.001, ci=(1e-9, 0.5)) == "refuted"
    assert verdict(direction="decrease", p=0.99, p_refute=0.001, ci=(0.0, 0.5)) == "not supported"
    assert verdict(direction="decrease", p=0.001, p_refute=0.99, ci=(-0.5, -0.1)) == "supported"
    assert verdict(direction="equivalent", margin=0.1, p=0.05, p_refute=0.9) == "not supported"
    assert verdict(direction="equivalent", margin=0.1, p=0.9, p_refute=0.05) == "not supported"
    assert verdict(direction="equivalent", margin=0.1, p=0.9, p_refute=0.0499) == "refuted"
    sign = _stub_result("s", statistic="sign", p=0.99, p_refute=0.001, ci=(-0.5, -0.1))
    sign.sign = {"ci_low": -0.3, "ci_high": 0.0}  # the median's CI touches 0: not refuted
    assert _verdicts([sign])["s"][0] == "not supported"
    mean = _stub_result("m", p=0.99, p_refute=0.001, ci=(-0.5, -0.1))
    mean.sign = {"ci_low": -0.3, "ci_high": 0.0}  # statistic = mean: the sign CI does not decide
    assert _verdicts([mean])["m"][0] == "refuted"


def test_the_live_progress_line_shows_effect_raw_p_changes_and_warnings():
    from harness.claims.result import progress_line

    r = _stub_result("c", p=0.00123, p_refute=0.99, ci=(0.1, 0.5))
    r.text_changed = {"patched_vs_baseline": 12, "n": 70}
    r.warnings = [{"code": "floor", "message": "..."}, {"code": "untestable", "message": "..."}]
    assert progress_line(r) == ("effect +0.3000 [+0.1000, +0.5000], raw p 0.00123, text changed 12/70; "
                                 "warning: floor; warning: untestable")
    r.error = "RuntimeError: boom\nsecond line"
    assert progress_line(r) == "error: RuntimeError: boom"


def test_a_misspelt_model_stops_collection_instead_of_skipping_the_claim(pytester):
    """Reliability class 6: ``model = "tiny-gtp2"`` was skipped as "weights not in cache" (exit
    0, no findings). A name that is not registered, not a directory and not an org/name Hugging
    Face id is a typo: exit 2 with "did you mean"; an absent org/name id is still a skip."""
    claims = pytester.path / "claims.toml"
    claims.write_text(claims_toml([{**BASE, "model": "tiny-gtp2"}]))
    result = pytester.runpytest_subprocess(str(claims), "--co", "-q", "-p", "no:cacheprovider")
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 2, out
    assert "claim 'c1': field 'model' = 'tiny-gtp2': unknown model 'tiny-gtp2'. Did you mean 'tiny-gpt2'" in out
    assert "Traceback" not in out
    claims.write_text(claims_toml([{**BASE, "model": "some-org/not-downloaded"}]))
    result = pytester.runpytest_subprocess(str(claims), "-q", "-p", "no:cacheprovider", "-rs")
    assert result.ret == 5 or "skipped" in result.stdout.str(), result.stdout.str()
    assert "not in the local Hugging Face cache" in result.stdout.str()


def test_a_run_cut_short_is_recorded_incomplete_and_regress_refuses_it(pytester, main_in_process):
    """Reliability class 6: ``-x`` after a failing claim wrote findings with 1 of 3 claims and
    nothing marking them incomplete. The document now says ``complete: false`` and names the
    claims not run; regress and nightly refuse it (exit 2), the report says so."""
    rows = [{**BASE, "id": f"c{i}", "source": "neutral", "metric": "sentiment", "n_prompts": 4, "max_tokens": 3,
             "tier": "fast"} for i in range(3)]  # an identity patch "increases" nothing: each fails
    claims = pytester.path / "claims.toml"
    claims.write_text(claims_toml(rows))
    findings = pytester.path / "findings.json"
    result = pytester.runpytest_subprocess(str(claims), "-x", "--findings", str(findings), "-p", "no:cacheprovider",
                                           "-q", "-p", "no:randomly")
    result.assert_outcomes(failed=1)
    doc = json.loads(findings.read_text())
    assert doc["complete"] is False and doc["not_run"] == ["c1", "c2"] and len(doc["claims"]) == 1
    proc = main_in_process("harness.cli.regress", str(findings), str(findings))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (f"error: {findings}: the run that wrote it was cut short (complete: false; not run: "
                                   "c1, c2); compare complete runs")
    proc = main_in_process("harness.cli.nightly", "--last", str(findings))
    assert proc.returncode == 2 and "cut short" in proc.stderr  # before any claims run
    proc = main_in_process("harness.cli.nightly", "--last", str(pytester.path))
    assert proc.returncode == 2 and "is not a file (a missing file means the first night)" in proc.stderr
    md = pytester.path / "r.md"
    assert main_in_process("harness.cli.report", str(findings), "--markdown", str(md), "--plots-dir",
                           str(pytester.path / "p")).returncode == 0
    assert "**Incomplete run**: it was cut short; 2 selected claim(s) were not run (c1, c2)." in md.read_text()
    # a run that is not cut short is complete: tests/test_evidence.py checks it on the main job


@pytest.mark.parametrize("field, value, message", [
    ("random_heads", 200000, "field 'random_heads' = 200000: must be in [0, 1000]"),
    ("samples", 10**6, "field 'samples' = 1000000: must be <= 1000"),
    ("max_tokens", 10**6, "field 'max_tokens' = 1000000: must be <= 4096"),
])
def test_counts_have_documented_upper_bounds(tmp_path, field, value, message):
    """Reliability class 9: ``random_heads = 200000`` ran for minutes before anyone noticed."""
    with pytest.raises(UserError, match=re.escape(message)):
        _load(tmp_path, [{**BASE, field: value}])


def test_calibrate_refuses_sizes_that_would_exhaust_memory_before_any_work(main_in_process):
    proc = main_in_process("harness.cli.calibrate", "--model", "tiny-gpt2", "--datasets", "100000000")
    assert proc.returncode == 2 and proc.stderr == "error: --datasets 100000000 is invalid: must be in [1, 100000]\n"
    proc = main_in_process("harness.cli.calibrate", "--model", "tiny-gpt2", "--resamples", "10000000000")
    assert proc.returncode == 2 and "--resamples 10000000000 is invalid: must be in [100, 1000000]" in proc.stderr


@pytest.mark.parametrize("data, message", [
    (b'[[claim]]\nid = "c1"\ndescription = "\xff\xfe"\n', "not UTF-8 text: invalid start byte at byte 35"),
    (claims_toml([{**BASE, "direction": "equivalent", "margin": 0.1}]).encode() + b'versus = { patch_mode = 5 }\n',
     "field 'versus' = {'patch_mode': 5}: must be a table with some of heads, patch_mode, source, receivers (strings)"),
])
def test_claims_files_that_once_gave_tracebacks_are_one_message(tmp_path, data, message):
    """Reliability class 8: a non-UTF-8 claims file and a number where a versus field needs a
    string raised UnicodeDecodeError and TypeError at collection."""
    path = tmp_path / "claims.toml"
    path.write_bytes(data)
    with pytest.raises(UserError) as info:
        load_claims(str(path))
    assert message in str(info.value)


def test_the_enumerated_claim_fields_are_typed_and_refused_in_one_message():
    """direction, kind, statistic, tier and alignment are Literal types: a value outside them is the
    same one-line message the hand checks gave; alignment's values are the patch modes' alignments."""
    from typing import get_args

    from harness.claims.spec import Alignment, Claim
    from harness.patch.modes import ALIGNMENTS

    assert set(get_args(Alignment)) == set(ALIGNMENTS)
    row = {"id": "c", "model": "tiny-gpt2", "heads": "1:10", "patch_mode": "z", "source": "gratitude",
           "metric": "sentiment", "direction": "increase"}
    with pytest.raises(UserError, match=r"field 'alignment' = 'middle': must be one of end, last, mean_source$"):
        Claim(**{**row, "alignment": "middle"})
    assert Claim(**row).direction == "increase"


@pytest.mark.slow  # four pytest runs (~30 s); the family rule is also checked in process by test_selection
def test_the_family_is_the_claims_collected_not_the_selection(pytester):
    """Issue 37: one claim's Holm-adjusted p moved 0.74 -> 0.50 -> 1 across three -k runs of one
    file, and each run overwrote the findings. A subset run now adjusts by Bonferroni over the whole
    family (the same p in every selection), says it evaluated a subset, and keeps a complete
    findings document in place."""
    rows = [{**BASE, "id": f"c{i}", "heads": f"1:{i}", "metric": "gratitude_logprob", "n_prompts": 6, "max_tokens": 3,
             "tier": "fast"} for i in range(3)]  # fmt: skip
    claims = pytester.path / "claims.toml"
    claims.write_text(claims_toml(rows))
    findings = pytester.path / "findings.json"
    common = ["--findings", str(findings), "-p", "no:cacheprovider", "-q", "-p", "no:randomly"]
    pytester.runpytest_subprocess(str(claims), *common)
    full = json.loads(findings.read_text())
    assert full["complete"] is True and "not_selected" not in full and {c["correction"] for c in full["claims"]} == {"holm"}
    runs = []
    for expr in ("c0 or c1", "c0 or c2"):
        result = pytester.runpytest_subprocess(str(claims), "-k", expr, *common)
        assert "holds a complete run and is kept" in result.stdout.str()
        assert json.loads(findings.read_text()) == full  # the complete document is untouched
        runs.append(json.loads((pytester.path / "findings.partial.json").read_text()))
    c0 = [next(c for c in doc["claims"] if c["claim"]["id"] == "c0") for doc in runs]
    assert c0[0]["p_adjusted"] == c0[1]["p_adjusted"] == min(1.0, 3 * c0[0]["p_raw"])
    assert c0[0]["correction"] == "bonferroni-family"
    assert runs[0]["complete"] is False and runs[0]["not_selected"] == ["c2"] and runs[1]["not_selected"] == ["c1"]
    holm = next(c for c in full["claims"] if c["claim"]["id"] == "c0")
    assert holm["p_raw"] == c0[0]["p_raw"] and holm["p_adjusted"] <= c0[0]["p_adjusted"]
