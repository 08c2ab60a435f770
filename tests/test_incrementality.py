"""A channel's own effect from its channel holdout (clarion.analysis.incrementality): the figures against
statsmodels and scipy, and the estimator's coverage by simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats import proportion as smp

from clarion.analysis.incrementality import channel_lifts, welch_diff
from clarion.ledger.measurement import GroupMember


def members(exposed: int, withheld: int) -> list[GroupMember]:
    return [GroupMember(i, "a", False) for i in range(exposed)] + [
        GroupMember(exposed + i, "a", True) for i in range(withheld)
    ]


def test_the_lift_and_its_interval_are_statsmodels_wald_and_the_test_is_the_pooled_z() -> None:
    group = members(8000, 900)
    outcomes = {i: (1, 2500) for i in range(0, 8000, 25)}  # 320 of 8,000 exposed converted (4%)
    outcomes.update({8000 + i: (1, 2500) for i in range(0, 900, 45)})  # 20 of 900 withheld (2.2%)
    (lift,) = channel_lifts({"sms": group}, outcomes, {"sms": 0.1})
    low, high = smp.confint_proportions_2indep(320, 8000, 20, 900, method="wald", compare="diff")
    assert (lift.lift_low, lift.lift_high) == pytest.approx((low, high), abs=1e-12)
    assert lift.lift == pytest.approx(320 / 8000 - 20 / 900)
    _, p = smp.test_proportions_2indep(
        320, 8000, 20, 900, method="score", correction=False, return_results=False
    )
    assert lift.p_value == pytest.approx(float(p), rel=1e-3)  # the score test's statistic is the pooled z
    assert lift.incremental_conversions == pytest.approx(lift.lift * 8000)
    assert lift.srm_flagged is False


def test_revenue_per_contact_is_welchs_t_from_sums_and_squares() -> None:
    rng = np.random.default_rng(3)
    a = np.where(rng.random(3000) < 0.05, rng.gamma(2, 15, 3000), 0.0)
    b = np.where(rng.random(400) < 0.03, rng.gamma(2, 15, 400), 0.0)
    found = welch_diff(a.sum(), (a * a).sum(), len(a), b.sum(), (b * b).sum(), len(b))
    assert found is not None
    reference = sps.ttest_ind(a, b, equal_var=False)
    low, high = reference.confidence_interval(0.95)
    assert found[0] == pytest.approx(a.mean() - b.mean())
    assert (found[1], found[2]) == pytest.approx((low, high), rel=1e-9)
    assert found[3] == pytest.approx(reference.pvalue, rel=1e-9)


def test_channels_are_holm_adjusted_and_an_off_share_is_flagged() -> None:
    outcomes = {i: (1, 100) for i in range(0, 20_000, 20)}
    groups = {"sms": members(9000, 1000), "email": members(9900, 100)}
    lifts = channel_lifts(groups, outcomes, {"sms": 0.1, "email": 0.3})
    by = {lift.channel: lift for lift in lifts}
    assert by["email"].srm_flagged and "cannot be trusted" in by["email"].text
    assert not by["sms"].srm_flagged
    raw = sorted(lift.p_value for lift in lifts if lift.p_value is not None)
    assert min(lift.p_adjusted for lift in lifts if lift.p_adjusted is not None) == pytest.approx(
        min(1, 2 * raw[0])
    )


def test_an_empty_holdout_says_so() -> None:
    (lift,) = channel_lifts({"sms": members(100, 0)}, {}, {"sms": 0.1})
    assert lift.lift is None and "no contacts in the holdout" in lift.text


def test_the_interval_covers_the_true_effect_95_percent_of_the_time() -> None:
    """1,000 simulated channel holdouts (2,000 exposed at 6%, 500 withheld at 4%): the Wald interval of the
    lift covers the true 2 points in 95% of them (tolerance 2.1 points: 3 binomial standard errors)."""
    rng = np.random.default_rng(11)
    n_e, n_w = 2_000, 500
    covered = 0
    group = members(n_e, n_w)
    for _ in range(1000):
        s_e, s_w = rng.binomial(n_e, 0.06), rng.binomial(n_w, 0.04)
        outcomes = {i: (1, 100) for i in range(s_e)}
        outcomes.update({n_e + i: (1, 100) for i in range(s_w)})
        (lift,) = channel_lifts({"c": group}, outcomes, {"c": 0.2})
        assert lift.lift_low is not None and lift.lift_high is not None
        covered += lift.lift_low <= 0.02 <= lift.lift_high
    assert covered / 1000 == pytest.approx(0.95, abs=0.021)
