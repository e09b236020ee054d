"""Statistics: unit behaviour and calibration ("quality") on simulated data.

Calibration bounds are the nominal rate ± 3 Monte-Carlo standard errors
(sqrt(rate·(1 − rate)/N)); each test is seeded, so it is deterministic, and the bound says
how surprising a failure would be if the method were calibrated (~0.3% per check).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.stats import (
    adjust_pvalues,
    bootstrap_mean_ci,
    expanded_level,
    minimum_detectable_effect,
    paired_effect,
    random_head_control,
    sign_flip_p,
    sign_test,
    tost,
)

N_DATASETS = 500


def _band(rate: float, n: int = N_DATASETS) -> tuple[float, float]:
    se = math.sqrt(rate * (1 - rate) / n)
    return rate - 3 * se, rate + 3 * se


# ---------------------------------------------------------------- calibration

@pytest.mark.parametrize("alpha", [0.05, 0.10])
def test_false_positive_rate_of_a_directional_claim_is_alpha(alpha):
    rng = np.random.default_rng(2024)
    hits = 0
    for k in range(N_DATASETS):
        deltas = rng.standard_t(df=5, size=30)  # heavy-tailed null, symmetric around 0
        p, _ = sign_flip_p(deltas, alternative="greater", n_permutations=2000, seed=k)
        hits += p < alpha
    low, high = _band(alpha)
    assert low <= hits / N_DATASETS <= high


def test_false_positive_rate_on_discrete_keyword_like_nulls():
    """Keyword-count deltas are small integers with many zeros: still calibrated (conservative)."""
    rng = np.random.default_rng(7)
    hits = 0
    for k in range(N_DATASETS):
        base = rng.poisson(0.3, size=40)
        patched = rng.poisson(0.3, size=40)
        p, _ = sign_flip_p(patched - base, alternative="greater", n_permutations=2000, seed=k)
        hits += p < 0.05
    assert hits / N_DATASETS <= _band(0.05)[1]


def test_holm_keeps_the_family_wise_error_of_a_run_of_null_claims_at_alpha(monkeypatch):
    """A run of 8 null claims: with Holm at most alpha of the runs have any false 'supported';
    uncorrected, about 1 - 0.95**8 = 34% of them would."""
    import gc

    # statsmodels' Holm calls gc.collect() on every call (~50-150 ms with models in memory);
    # it changes no number, so the 500-run loop skips it
    monkeypatch.setattr(gc, "collect", lambda *args: 0)
    rng = np.random.default_rng(5)
    any_raw = any_holm = 0
    for k in range(N_DATASETS):
        ps = [sign_flip_p(rng.standard_t(df=5, size=30), alternative="greater", n_permutations=1000,
                          seed=8 * k + j)[0] for j in range(8)]
        any_raw += min(ps) < 0.05
        any_holm += min(adjust_pvalues(ps, "holm")) < 0.05
    assert any_holm / N_DATASETS <= _band(0.05)[1]
    assert _band(1 - 0.95 ** 8)[0] <= any_raw / N_DATASETS  # the correction is what holds it down


def test_bh_keeps_the_false_discovery_rate_at_alpha():
    """6 real effects (dz 0.8) among 14 null claims: mean share of false discoveries <= 0.05."""
    rng = np.random.default_rng(9)
    fdp, power = [], []
    for k in range(N_DATASETS):
        shifts = [0.8] * 6 + [0.0] * 14
        ps = np.array([sign_flip_p(rng.normal(s, 1.0, 30), alternative="greater", n_permutations=1000,
                                   seed=20 * k + j)[0] for j, s in enumerate(shifts)])
        hit = np.array(adjust_pvalues(list(ps), "bh")) < 0.05
        fdp.append(hit[6:].sum() / max(hit.sum(), 1))
        power.append(hit[:6].mean())
    se = np.std(fdp) / math.sqrt(N_DATASETS)
    assert np.mean(fdp) <= 0.05 + 3 * se
    assert np.mean(power) > 0.8  # and it still finds the real effects


def test_sign_test_false_positive_rate_is_its_exact_size():
    """Heavy-tailed null (t, 3 df), n = 30: the exact sign test rejects at its exact size
    P(Binomial(30, 1/2) >= 20) = 0.0494, never above alpha."""
    from scipy.stats import binom

    rng = np.random.default_rng(2)
    size = float(binom.sf(19, 30, 0.5))
    hits = sum(sign_test(rng.standard_t(df=3, size=30)).p_value < 0.05 for _ in range(N_DATASETS))
    low, high = _band(size)
    assert size <= 0.05 and low <= hits / N_DATASETS <= high


def test_median_ci_covers_the_true_median_on_skewed_data():
    rng = np.random.default_rng(3)
    covered = 0
    for _ in range(N_DATASETS):
        st = sign_test(rng.exponential(1.0, 40) - math.log(2))  # true median 0, mean 0.31
        covered += st.ci_low <= 0 <= st.ci_high
    assert _band(0.95)[0] <= covered / N_DATASETS


def test_sign_test_finds_a_shared_shift_that_outlier_prompts_hide_from_the_mean():
    """Like a patched generation: most prompts move a little, some diverge wildly either way."""
    rng = np.random.default_rng(1)
    sign_hits = mean_hits = 0
    for k in range(200):
        x = rng.normal(0.09, 0.3, 70)
        wild = rng.random(70) < 0.15
        x[wild] = rng.normal(0.0, 2.5, wild.sum())
        sign_hits += sign_test(x).p_value < 0.05
        mean_hits += sign_flip_p(x, alternative="greater", n_permutations=1000, seed=k)[0] < 0.05
    assert sign_hits / 200 > mean_hits / 200 + 0.15


def test_sign_test_record():
    st = sign_test([1.0, -1.0, 0.0, 2.0, 3.0])
    assert (st.n_up, st.n_down, st.n_zero, st.median) == (3, 1, 1, 1.0)
    assert st.p_value == pytest.approx(5 / 16)  # P(B(4, 1/2) >= 3)
    assert (st.ci_low, st.ci_high, st.confidence) == (-math.inf, math.inf, 1.0)  # 5 prompts: no 95% interval
    big = sign_test(np.arange(1.0, 71.0))
    assert (big.ci_low, big.ci_high) == (27.0, 44.0) and big.confidence >= 0.95  # x_(27), x_(44) of 70
    assert sign_test([0.0, 0.0, 0.0]).p_value == 1.0
    with pytest.raises(ValueError, match="at least 2 prompts"):
        sign_test([1.0])


def test_bootstrap_ci_covers_the_true_mean_95_percent_of_the_time():
    rng = np.random.default_rng(11)
    covered = 0
    for k in range(N_DATASETS):
        x = rng.normal(0.3, 1.0, size=40)
        ci = bootstrap_mean_ci(x, seed=k, n_resamples=2000)
        covered += ci.ci_low <= 0.3 <= ci.ci_high
    low, high = _band(0.95)
    assert low <= covered / N_DATASETS <= high


def test_bootstrap_ci_covers_at_small_n_thanks_to_the_expanded_level():
    """At 10 prompts a plain 95% BCa interval of a mean covered 0.918 of these datasets; run at the
    expanded level (0.983) it covers 0.95."""
    rng = np.random.default_rng(12)
    covered = 0
    for k in range(N_DATASETS):
        ci = bootstrap_mean_ci(rng.normal(0.3, 1.0, size=10), seed=k, n_resamples=2000)
        covered += ci.ci_low <= 0.3 <= ci.ci_high
    low, high = _band(0.95)
    assert low <= covered / N_DATASETS <= high
    assert ci.confidence == 0.95 and ci.level == pytest.approx(expanded_level(0.95, 10))


def test_expanded_level():
    assert [round(expanded_level(0.95, n), 4) for n in (10, 16, 70)] == [0.9829, 0.9723, 0.9555]
    assert expanded_level(0.95, 10_000) == pytest.approx(0.95, abs=1e-3)  # vanishes as n grows
    assert expanded_level(0.90, 30) < expanded_level(0.95, 30)


def test_bootstrap_ci_keeps_its_coverage_when_few_prompts_change():
    """Keyword-count Δ at the floor: 94% of prompts unchanged, the rest ±1. The plain bootstrap
    resamples the few non-zero prompts and covered the true 0 in only 90% of such datasets; with
    at most 5 non-zero values the interval is widened to 0 (no sign test could exclude it)."""
    rng = np.random.default_rng(5)
    covered = widened = 0
    n = 300
    for k in range(n):
        x = rng.choice([-1.0, 0.0, 1.0], p=[0.03, 0.94, 0.03], size=70)
        ci = bootstrap_mean_ci(x, seed=k, n_resamples=2000)
        covered += ci.ci_low <= 0 <= ci.ci_high
        widened += ci.method.endswith("+0")
    assert covered / n >= _band(0.95, n)[0] and widened > 0


def test_bootstrap_ci_is_widened_to_zero_only_when_no_sign_test_could_exclude_it():
    five, six = np.r_[np.ones(5), np.zeros(65)], np.r_[np.ones(6), np.zeros(64)]
    ci5, ci6 = bootstrap_mean_ci(five, seed=0), bootstrap_mean_ci(six, seed=0)
    assert ci5.ci_low == 0.0 and ci5.method == "BCa+0" and ci5.ci_high > ci5.mean  # 2·2^-5 >= 0.05
    assert ci6.ci_low > 0 and ci6.method == "BCa"  # 2·2^-6 < 0.05: the bootstrap's own interval stands
    assert bootstrap_mean_ci(np.r_[1.0, -1.0, np.zeros(68)], seed=0).method == "BCa"  # already covers 0


def test_a_planted_effect_is_found_with_the_expected_power():
    from statsmodels.stats.power import TTestPower

    rng = np.random.default_rng(5)
    n, effect = 30, 0.5
    expected = TTestPower().power(effect_size=effect, nobs=n, alpha=0.05, alternative="larger")
    found = sum(sign_flip_p(rng.normal(effect, 1.0, n), alternative="greater", n_permutations=2000,
                            seed=k)[0] < 0.05 for k in range(N_DATASETS))
    low, high = _band(expected)
    assert low <= found / N_DATASETS <= high


@pytest.mark.parametrize("true_mean, expected", [(0.0, "high"), (0.5, "alpha"), (0.8, "never")])
def test_tost_declares_equivalence_only_inside_the_margin(true_mean, expected):
    rng = np.random.default_rng(3)
    rate = np.mean([tost(rng.normal(true_mean, 1.0, 60), margin=0.5).p_value < 0.05 for _ in range(N_DATASETS)])
    if expected == "high":
        assert rate > 0.8  # well inside the margin: equivalence is usually shown at n=60
    elif expected == "alpha":
        assert rate <= _band(0.05)[1]  # on the margin: at most alpha
    else:
        assert rate <= 0.01


# ---------------------------------------------------------------- unit behaviour

def test_sign_flip_is_exact_for_small_n():
    p, draws = sign_flip_p([1.0, 2.0, 3.0], alternative="greater", n_permutations=10, seed=0)
    assert draws == 0 and p == pytest.approx(1 / 8)
    p, _ = sign_flip_p([1.0, -1.0], alternative="two-sided", n_permutations=10, seed=0)
    assert p == 1.0


def test_paired_effect_record():
    e = paired_effect([0.0, 1.0, 1.0, 2.0, 1.0], seed=3, n_resamples=2000)
    assert e.mean == pytest.approx(1.0) and e.ci_low <= 1.0 <= e.ci_high
    assert e.cohens_dz == pytest.approx(1.0 / np.std([0, 1, 1, 2, 1], ddof=1))
    assert e.frac_in_direction == pytest.approx(0.8) and e.n == 5 and e.seed == 3
    assert e.p_value == pytest.approx(2 / 32)  # only the all-positive patterns reach the mean of 1
    assert e.mde > 0


def test_mde_is_undefined_without_variance_never_zero():
    """All differences equal: the MDE is NaN ("undefined"), not 0 ("detects anything")."""
    assert math.isnan(paired_effect([0.0] * 20, seed=0).mde)
    assert math.isnan(paired_effect([0.5] * 20, seed=0).mde)


def test_smallest_attainable_p_counts_only_prompts_that_changed():
    from harness.stats import smallest_p

    x = [0.0] * 66 + [1.0, 2.0, 0.5, 3.0]  # 4 of 70 prompts changed
    assert smallest_p(x, "greater") == 1 / 16 and smallest_p(x, "two-sided") == 1 / 8
    assert smallest_p([0.0] * 10, "less") == 1.0
    # the bound is attained when every changed prompt moved up (exact test at n <= 16, Monte Carlo above)
    small = [0.0] * 10 + [1.0, 2.0, 0.5, 3.0]
    assert sign_flip_p(small, alternative="greater", n_permutations=10, seed=0)[0] == pytest.approx(1 / 16)
    assert sign_flip_p(x, alternative="greater", n_permutations=20_000, seed=0)[0] == pytest.approx(1 / 16, abs=0.01)
    with pytest.raises(ValueError, match="alternative"):
        smallest_p(x, "up")


def test_share_at_bound():
    from harness.stats import share_at_bound

    assert share_at_bound([0.0, 0.0, 1.0, 0.0], 0.0) == 0.75
    assert share_at_bound([0.2, 1.0], 1.0) == 0.5
    assert share_at_bound([0.0, 0.0], float("-inf")) == 0.0 and share_at_bound([], 0.0) == 0.0


def test_paired_effect_is_seeded():
    x = np.random.default_rng(0).normal(0.2, 1, 40)
    assert paired_effect(x, seed=9) == paired_effect(x, seed=9)


def test_too_little_data_raises_never_returns_zero():
    with pytest.raises(ValueError, match="at least 2"):
        bootstrap_mean_ci([1.0], seed=0)
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_mean_ci([1.0, float("nan")], seed=0)
    with pytest.raises(ValueError, match="at least 2"):
        tost([0.1], margin=1)


def test_all_zero_deltas_give_a_degenerate_interval_and_p_1():
    e = paired_effect([0.0] * 20, seed=0)
    assert (e.mean, e.ci_low, e.ci_high, e.ci_method) == (0.0, 0.0, 0.0, "degenerate")
    assert e.p_value == 1.0 and math.isnan(e.cohens_dz)
    assert tost([0.0] * 20, margin=0.1).p_value == 0.0


def test_random_head_control():
    c = random_head_control(0.5, [0.1, 0.6, -0.2, 0.3])
    assert c.percentile == 75.0 and c.empirical_p == pytest.approx(2 / 5) and not c.beats_all
    d = random_head_control(-0.5, [0.1, -0.2], alternative="less")
    assert d.beats_all and d.empirical_p == pytest.approx(1 / 3)


def test_holm_and_bh():
    assert adjust_pvalues([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert adjust_pvalues([0.01, 0.04, 0.03], "bh") == pytest.approx([0.03, 0.04, 0.04])
    with pytest.raises(ValueError, match="unknown correction 'bonf'"):
        adjust_pvalues([0.1], "bonf")


def test_minimum_detectable_effect_shrinks_with_n():
    assert minimum_detectable_effect(1.0, 100, 0.05, "greater") < minimum_detectable_effect(1.0, 20, 0.05, "greater")


# ---------------------------------------------------------------- small exact cases

def test_monte_carlo_sign_flip_p_never_reaches_zero():
    # n > 16: Monte Carlo; all-positive differences are beaten by no draw (all-plus has p 2**-30)
    p, draws = sign_flip_p(np.ones(30), alternative="greater", n_permutations=999, seed=0)
    assert (p, draws) == (1 / 1000, 999)
    p, _ = sign_flip_p(np.ones(30), alternative="less", n_permutations=999, seed=0)
    assert p == 1.0


def test_tost_interval_is_the_one_minus_two_alpha_t_interval():
    from scipy import stats

    x = np.array([0.1, -0.3, 0.25, 0.05, 0.4, -0.1, 0.2])
    eq = tost(x, margin=0.5, alpha=0.05)
    low, high = stats.t.interval(0.90, x.size - 1, loc=x.mean(), scale=stats.sem(x))
    assert (eq.ci_low, eq.ci_high, eq.confidence) == (pytest.approx(low), pytest.approx(high), pytest.approx(0.90))
    # TOST rejects exactly when that interval lies inside (−margin, margin)
    for margin in (0.2, 0.25, 0.3, 0.4):
        assert (tost(x, margin=margin).p_value < 0.05) == (-margin < low and high < margin), margin


def test_zero_variance_tost_is_decided_strictly_inside_the_margin():
    assert tost([0.1] * 5, margin=0.2).p_value == 0.0
    assert tost([0.2] * 5, margin=0.2).p_value == 1.0  # on the margin is not inside it
    assert tost([-0.3] * 5, margin=0.2).p_value == 1.0


def test_random_head_control_ties_and_directions():
    tied = random_head_control(1.0, [0.0, 1.0, 2.0])
    assert tied.percentile == pytest.approx(100 / 3)  # strictly below: the tie does not count
    assert tied.empirical_p == pytest.approx(3 / 4) and not tied.beats_all  # ties count as extreme
    less = random_head_control(-2.0, [-1.0, 0.5, -3.0], alternative="less")
    assert less.percentile == pytest.approx(200 / 3) and less.empirical_p == pytest.approx(2 / 4)
    both = random_head_control(-3.0, [1.0, 2.0, -1.0], alternative="two-sided")
    assert both.beats_all and both.percentile == 100.0 and both.empirical_p == pytest.approx(1 / 4)


def test_share_in_the_claimed_direction():
    x = [-1.0, -2.0, 1.0, -3.0, 0.0]
    assert paired_effect(x, alternative="less", seed=0).frac_in_direction == pytest.approx(3 / 5)
    assert paired_effect(x, alternative="greater", seed=0).frac_in_direction == pytest.approx(1 / 5)
    assert paired_effect(x, alternative="two-sided", seed=0).frac_in_direction == pytest.approx(4 / 5)
