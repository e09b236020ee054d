"""Every row of the claims file is a test: it passes only when the statistics support it.

Run ``pytest causal_tests -k head_1_10`` for the claims about head 1:10. Claims with
``tier = "fast"`` run in the per-commit suite; the rest are marked ``slow``.
"""

from __future__ import annotations

import pytest

from harness.claims import load_claim_files, with_overrides
from harness.errors import UserError
from harness.plugin import claim_overrides, claim_session, model_filter, record


def _available(model: str, paths: dict) -> str | None:
    """None when the model can be loaded offline, else the reason it cannot (the claim is skipped)."""
    from harness.models import weights_absent

    return None if model in paths else weights_absent(model)


def pytest_generate_tests(metafunc):
    if "claim" not in metafunc.fixturenames:
        return
    try:  # bad claims files or options: one message naming the file, claim, field and value
        params, problem = _params(metafunc.config), None
    except (UserError, pytest.UsageError) as exc:
        problem = str(exc)
    if problem:  # outside the except block, so no chained traceback is shown
        pytest.fail(problem, pytrace=False)
    metafunc.parametrize("claim", params)


def _params(config) -> list:
    claims = load_claim_files(config.getoption("--claims") or None)
    names, paths = model_filter(config)
    overrides, origin = claim_overrides(config)
    unknown = sorted(names - {c.model for c in claims})
    if unknown:
        from harness.results import repo_path

        files = ", ".join(sorted({repo_path(c.file) for c in claims}))
        raise UserError(f"--model {unknown[0]!r}: no claim in {files} is about it; models with claims: "
                        + ", ".join(sorted({c.model for c in claims})))
    params = []
    for c in claims:
        if names and c.model not in names:
            continue
        c = with_overrides(c, origin, **overrides)
        k = config.getoption("--random-heads")
        if k is not None and c.random_heads:  # only claims that have a control: it sets its size
            c = with_overrides(c, f"--random-heads {k}", random_heads=k)
        marks = [pytest.mark.claim] + ([] if c.tier == "fast" else [pytest.mark.slow])
        reason = _available(c.model, paths)
        if reason:
            marks.append(pytest.mark.skip(reason=reason))
        params.append(pytest.param(c, marks=marks, id=c.test_id))
    return params


@pytest.fixture(scope="session")
def claims_under_test(request):
    """Every claim collected in this run (after -k/-m), so corrections cover exactly them."""
    items = [i for i in request.session.items if hasattr(i, "callspec") and "claim" in i.callspec.params]
    return [i.callspec.params["claim"] for i in items if not any(m.name == "skip" for m in i.iter_markers())]


def test_claim(claim, claims_under_test, request):
    session = claim_session(request.config, claims_under_test)
    result = session.results()[claim.id]
    record(request.config, request.node, result)
    if result.error or result.verdict != "supported":
        pytest.fail(result.message(), pytrace=False)  # effect, CI, p raw/adjusted, n, seed, rerun command
    assert result.p_adjusted < claim.alpha
