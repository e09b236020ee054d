"""Every row of the claims file is a test: it passes only when the statistics support it.

Run ``pytest causal_tests -k head_1_10`` for the claims about head 1:10. Claims with
``tier = "fast"`` run in the per-commit suite; the rest are marked ``slow``.
"""

from __future__ import annotations

import pytest

from harness.errors import UserError
from harness.plugin import claim_params, claim_session, record


def pytest_generate_tests(metafunc):
    if "claim" not in metafunc.fixturenames:
        return
    try:  # bad claims files or options: one message naming the file, claim, field and value
        params, problem = claim_params(metafunc.config), None
    except (UserError, pytest.UsageError) as exc:
        problem = str(exc)
    if problem:  # outside the except block, so no chained traceback is shown
        pytest.fail(problem, pytrace=False)
    metafunc.parametrize("claim", params)


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
