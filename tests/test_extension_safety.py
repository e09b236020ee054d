"""User code and the evidence (reliability round 2, classes 4, 5, 6, 8): modes read copies and
their values are checked, registrations are identified by where they were defined, broken
entry points are named and skipped, and anything the claims accept the findings schema reads."""

from __future__ import annotations

import json
import re

import pytest
import torch

from harness.core.errors import UnknownNameError, UserError
from harness.patch.modes import MODES, register_mode


@pytest.fixture
def scratch_modes():
    before = dict(MODES)
    yield
    MODES.clear()
    MODES.update(before)


def _claim(**extra):
    from harness.claims.spec import Claim

    row = {"id": "c", "model": "tiny-gpt2", "heads": "1:3", "patch_mode": "z", "source": "gratitude",
           "metric": "gratitude_logprob", "direction": "increase", "n_prompts": 4, "max_tokens": 2,
           "do_sample": False}  # fmt: skip
    return Claim(**{**row, **extra})


def test_a_mode_that_edits_its_source_in_place_cannot_reach_other_claims(scratch_modes, tiny_gpt2):
    """Source activations were handed to modes by reference: a mode that edited them in place
    contaminated every later claim reading that source. Modes defined outside harness read copies."""
    from harness.claims.session import ClaimSession

    @register_mode("vandal", needs=("z",))
    def vandal(r):
        r.source.z[r.layer][r.index].mul_(0.0)  # in place, on what the mode was given
        for layer in r.source.z:
            for z in r.source.z[layer]:
                z.mul_(0.0)
        return torch.zeros(len(r.qs_t), r.d_head)

    alone = ClaimSession([_claim(id="z_only")]).results()["z_only"]
    together = ClaimSession([_claim(id="v", patch_mode="vandal", heads="1:2"), _claim(id="z_only")]).results()
    assert together["z_only"].per_prompt == alone.per_prompt


@pytest.mark.parametrize("value, message", [
    (lambda r: torch.zeros(r.d_head), r"returned shape \(\d+,\) at layer 1 head 3; it must be"),
    (lambda r: torch.tensor(0.0), r"returned shape \(\) at layer 1 head 3"),
    (lambda r: torch.zeros(len(r.qs_t), r.d_head + 1), r"returned shape \(\d+, \d+\)"),
    (lambda r: torch.full((len(r.qs_t), r.d_head), float("nan")), r"returned values that are not finite"),
    (lambda r: [0.0], r"returned list, not a tensor"),
], ids=["vector", "scalar", "wrong width", "nan", "not a tensor"])  # fmt: skip
def test_a_mode_value_of_the_wrong_shape_or_not_finite_is_one_message(scratch_modes, tiny_gpt2, value, message):
    """A vector or scalar was silently broadcast; wrong widths and NaN failed with raw torch messages."""
    from harness.claims.session import ClaimSession

    register_mode("bad_value", needs=("z",))(value)
    result = ClaimSession([_claim(patch_mode="bad_value")]).results()["c"]
    assert result.error is not None and "patch mode 'bad_value'" in result.error
    assert re.search(message, result.error), result.error


def test_sibling_conftests_registering_one_name_are_refused_not_replaced(tmp_path):
    """Two sibling conftest.py files registering `project_score` are both module `conftest`: the
    second silently replaced the first. Identity is now the file and line; lambdas and factory
    functions with other values are told apart too."""
    import importlib.util

    from harness.metrics import _REGISTERED, register_metric

    paths = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        path = tmp_path / folder / "conftest.py"
        path.write_text(
            "from harness.metrics import register_metric\n"
            "@register_metric('project_score')\n"
            f"def project_score(text):\n    return {len(paths)}.0\n"
        )
        paths.append(path)
    try:
        for n, path in enumerate(paths):
            spec = importlib.util.spec_from_file_location("conftest", path)
            module = importlib.util.module_from_spec(spec)
            if n == 0:
                spec.loader.exec_module(module)
                again = importlib.util.module_from_spec(importlib.util.spec_from_file_location("conftest", path))
                again.__spec__.loader.exec_module(again)  # the same file imported again: replaces itself
            else:
                with pytest.raises(UserError, match=r"metric 'project_score' is registered twice: registered before by "
                                                    r".*a/conftest\.py:\d+ project_score"):  # fmt: skip
                    spec.loader.exec_module(module)
        assert _REGISTERED["project_score"].fn("x") == 0.0
        # factory-made functions with other values under one name: refused
        def factory(scale):
            def scaled(text):
                return scale * len(text)
            return scaled

        register_metric("scaled_score")(factory(1))
        register_metric("scaled_score")(factory(1))  # the same definition and value: fine
        with pytest.raises(UserError, match="registered twice"):
            register_metric("scaled_score")(factory(2))
        with pytest.raises(UserError, match="registered twice"):
            register_mode("lam", needs=("z",))(lambda r: r)
            register_mode("lam", needs=("z",))(lambda r: r)
    finally:
        for name in ("project_score", "scaled_score"):
            _REGISTERED.pop(name, None)
        MODES.pop("lam", None)


@pytest.mark.parametrize("register", [
    lambda: __import__("harness.metrics", fromlist=["x"]).register_metric("not_callable")(42),
    lambda: register_mode("", needs=("z",)),
    lambda: register_mode("a b/c", needs=("z",)),
    lambda: register_mode("ok_name", needs=("z",))("not a function"),
    lambda: __import__("harness.patch.interventions", fromlist=["x"]).register_intervention("iv")(None),
], ids=["metric not callable", "empty mode name", "mode name with space and slash", "mode not callable",
        "intervention not callable"])  # fmt: skip
def test_registrations_check_the_name_and_the_function(register):
    with pytest.raises(UserError, match=r"name ''|name 'a b/c'|not a function"):
        register()
    MODES.pop("ok_name", None)


def test_a_broken_entry_point_is_named_and_skipped(monkeypatch, capsys):
    """One broken package in an entry-point group aborted collection of every claim file with an
    importlib traceback naming neither the package nor the entry point."""
    import importlib.metadata

    from harness.core import extensions

    ep = importlib.metadata.EntryPoint("broken_metrics", "no_such_module_xyz:register", "causal_heads.test_group")
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [ep] if group == "causal_heads.test_group" else [])
    extensions.load_entry_points.cache_clear()
    try:
        extensions.load_entry_points("causal_heads.test_group")
    finally:
        extensions.load_entry_points.cache_clear()
    err = capsys.readouterr().err
    assert "entry point 'broken_metrics' (no_such_module_xyz:register)" in err and "ModuleNotFoundError" in err
    assert "skipped" in err
    assert "broken_metrics" in extensions.broken_entry_points("causal_heads.test_group")


def test_a_claim_needing_a_missing_mode_names_the_broken_package(monkeypatch):
    from harness.core import extensions
    from harness.patch.modes import ENTRY_POINT_GROUP, get_mode

    monkeypatch.setitem(extensions._BROKEN, ENTRY_POINT_GROUP, ["entry point 'fancy' (fancy_pkg:modes) of package fancy-pkg"])
    with pytest.raises(UnknownNameError, match=r"unknown patch mode 'fancy_mode'.*fancy-pkg"):
        get_mode("fancy_mode")


@pytest.mark.parametrize("field, value", [("seed", 10**12), ("top_k", 10**12), ("id", "x" * 300)])
def test_what_a_claim_accepts_the_findings_schema_reads(field, value):
    """A seed above 1e9, a huge top_k or a 300-character id passed, the findings were written and
    then every reader refused them (or the report died on a too-long file name). The claim now
    refuses them with the schema's own bounds; the largest accepted values round-trip."""
    from harness.core.limits import MAX_COUNT, MAX_ID_LENGTH
    from harness.findings.schema import ClaimFields

    with pytest.raises(UserError, match=f"field '{field}'"):
        _claim(**{field: value})
    largest = {"seed": MAX_COUNT, "top_k": MAX_COUNT, "id": "x" * MAX_ID_LENGTH}[field]
    claim = _claim(**{field: largest})
    ClaimFields.model_validate(json.loads(json.dumps({"id": claim.id, "seed": claim.seed, "top_k": claim.top_k})))


@pytest.mark.slow  # a whole claims run (~9 s)
def test_a_test_body_that_edits_its_result_cannot_rewrite_the_findings(pytester):
    """The findings held the live result objects: sorting claim_result.per_prompt in place rewrote
    the written evidence."""
    pytester.makepyfile(test_it="""
        import pytest
        from harness import Claim
        @pytest.mark.claim(Claim(id="m", model="tiny-gpt2", heads="1:10", patch_mode="z", source="gratitude",
                                 metric="gratitude_logprob", direction="increase", n_prompts=6, max_tokens=3,
                                 tier="fast"))
        def test_m(claim_result):
            claim_result.per_prompt.sort()
            claim_result.per_prompt[:] = [99.0] * len(claim_result.per_prompt)
    """)
    pytester.runpytest_subprocess("--findings", "f.json", "-p", "no:cacheprovider", "-q")
    doc = json.loads((pytester.path / "f.json").read_text())
    assert 99.0 not in doc["claims"][0]["per_prompt"]


@pytest.mark.slow  # two pytest runs (~8 s)
@pytest.mark.parametrize("mark, message", [
    ("@pytest.mark.claim(lambda: 1 / 0)", "the claim function '<lambda>' raised ZeroDivisionError"),
    ("@pytest.mark.claim(C, C)", "takes exactly one Claim"),
], ids=["callable raises", "two claims in one mark"])  # fmt: skip
def test_claim_marks_that_crashed_or_lost_a_claim_are_one_message(pytester, mark, message):
    pytester.makepyfile(test_it=f"""
        import pytest
        from harness import Claim
        C = Claim(id="m", model="tiny-gpt2", heads="1:10", patch_mode="z", source="gratitude",
                  metric="gratitude_logprob", direction="increase", n_prompts=6, max_tokens=3, tier="fast")
        {mark}
        def test_m(claim_result):
            pass
    """)
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    out = res.stdout.str() + res.stderr.str()
    assert "INTERNALERROR" not in out and message in out and res.ret != 0
