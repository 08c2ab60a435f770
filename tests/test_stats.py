"""clarion.analysis.stats against an independent implementation (statsmodels) and against first principles."""

from __future__ import annotations

import json
import math
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    power_proportions_2indep,
    proportion_confint,
    proportions_ztest,
    samplesize_proportions_2indep_onetail,
)
from statsmodels.stats.weightstats import ttest_ind

from clarion.analysis.stats import (
    Arm,
    analyse,
    diff_interval,
    holm,
    prob_best,
    prob_best_monte_carlo,
    ratio_interval,
    sample_ratio,
    sample_size,
    two_proportion_ztest,
    welch,
    wilson,
)

TOL = 1e-9
# (successes, exposures): 0 successes and successes == exposures included.
counts = st.integers(1, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n)))


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=TOL, abs_tol=TOL)


@settings(max_examples=200, deadline=None)
@given(counts, st.sampled_from([0.9, 0.95, 0.99]))
def test_wilson_agrees_with_statsmodels(sn: tuple[int, int], confidence: float) -> None:
    s, n = sn
    ours = wilson(s, n, confidence)
    theirs = proportion_confint(s, n, alpha=1 - confidence, method="wilson")
    assert close(ours[0], theirs[0]) and close(ours[1], theirs[1])


@settings(max_examples=200, deadline=None)
@given(counts, counts)
def test_z_test_and_intervals_agree_with_statsmodels(a: tuple[int, int], b: tuple[int, int]) -> None:
    (s1, n1), (s2, n2) = a, b
    z, p = two_proportion_ztest(s1, n1, s2, n2)
    if s1 + s2 in (0, n1 + n2):  # zero pooled variance: statsmodels divides by zero; no evidence either way
        assert (z, p) == (0.0, 1.0)
    else:
        tz, tp = proportions_ztest([s1, s2], [n1, n2])
        assert close(z, tz) and close(p, tp)
    low, high = diff_interval(s1, n1, s2, n2)
    tlow, thigh = confint_proportions_2indep(s1, n1, s2, n2, method="wald", compare="diff")
    assert close(low, tlow) and close(high, thigh)
    relative = ratio_interval(s1, n1, s2, n2)
    if s1 == 0 or s2 == 0:  # the log ratio is undefined (statsmodels raises ZeroDivisionError)
        assert relative is None
        return
    rlow, rhigh = confint_proportions_2indep(s1, n1, s2, n2, method="log", compare="ratio")
    assert relative is not None
    assert close(relative[0], rlow - 1) and close(relative[1], rhigh - 1)


# multipletests runs gc.collect() on every call (about 50 ms here): few examples, plus the edge cases by hand.
@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8))
def test_holm_agrees_with_statsmodels(pvalues: list[float]) -> None:
    theirs = multipletests(pvalues, method="holm")[1]
    assert all(close(a, b) for a, b in zip(holm(pvalues), theirs, strict=True))


@pytest.mark.parametrize(
    "pvalues",
    [[0.01, 0.01, 0.04], [0.0, 1.0], [0.04, 0.03, 0.02, 0.01], [0.5], [0.2, 0.9, 0.3]],
    ids=["ties", "bounds", "descending", "single", "capped"],
)
def test_holm_edge_cases_agree_with_statsmodels(pvalues: list[float]) -> None:
    adjusted = holm(pvalues)
    assert adjusted == pytest.approx(list(multipletests(pvalues, method="holm")[1]), abs=1e-12)
    ranked = sorted(zip(pvalues, adjusted, strict=True))
    assert all(a[1] <= b[1] for a, b in pairwise(ranked))  # monotone
    assert max(adjusted) <= 1.0
    assert holm([]) == []


def test_welch_from_sums_agrees_with_statsmodels_on_the_raw_values() -> None:
    rng = np.random.default_rng(1)
    for n1, n2, give1, give2 in [(500, 480, 0.05, 0.08), (2000, 2100, 0.02, 0.02), (30, 40, 0.5, 0.3)]:
        x1 = np.where(rng.random(n1) < give1, rng.choice([5, 10, 25, 50], n1), 0).astype(float)
        x2 = np.where(rng.random(n2) < give2, rng.choice([5, 10, 25, 100], n2), 0).astype(float)
        a = Arm("b", n1, int((x1 > 0).sum()), float(x1.sum()), float((x1**2).sum()))
        b = Arm("a", n2, int((x2 > 0).sum()), float(x2.sum()), float((x2**2).sum()))
        ours = welch(a, b)
        theirs = ttest_ind(x1, x2, usevar="unequal")
        assert ours is not None
        assert math.isclose(ours[0], theirs[0], rel_tol=1e-9) and math.isclose(
            ours[1], theirs[1], rel_tol=1e-9
        )


def test_welch_needs_the_sum_of_squares_and_two_recipients() -> None:
    assert welch(Arm("b", 100, 5, 50.0, None), Arm("a", 100, 4, 40.0, 400.0)) is None
    assert welch(Arm("b", 1, 1, 5.0, 25.0), Arm("a", 100, 4, 40.0, 400.0)) is None
    assert welch(Arm("b", 100, 0, 0.0, 0.0), Arm("a", 100, 0, 0.0, 0.0)) is None  # no variance at all


def brute_force_prob_greater(b: Arm, a: Arm) -> float:
    """P(p_b > p_a) by numerical integration of the Beta posteriors."""
    pa = sps.beta(1 + a.successes, 1 + a.exposures - a.successes)
    pb = sps.beta(1 + b.successes, 1 + b.exposures - b.successes)
    # P(p_a < p_b) = integral of f_b(x) * F_a(x) over [0, 1]
    value, _err = integrate.quad(lambda x: pb.pdf(x) * pa.cdf(x), 0, 1, epsabs=1e-13, epsrel=1e-12, limit=400)
    return float(value)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ((20, 200), (30, 210)),
        ((3, 50), (1, 40)),
        ((0, 10), (0, 12)),
        ((45, 90), (50, 90)),
        ((10, 10), (0, 10)),
        ((120, 3000), (150, 2900)),
    ],
)
def test_exact_probability_of_being_best_matches_integration(a: tuple[int, int], b: tuple[int, int]) -> None:
    arm_a, arm_b = Arm("a", a[1], a[0]), Arm("b", b[1], b[0])
    exact = prob_best([arm_a, arm_b])
    assert math.isclose(exact[1], brute_force_prob_greater(arm_b, arm_a), abs_tol=1e-9)
    assert math.isclose(sum(exact), 1.0, abs_tol=1e-12)


def test_monte_carlo_is_within_its_error_of_the_exact_value_and_reproducible() -> None:
    arms = [Arm("a", 1000, 40), Arm("b", 1000, 52)]
    exact = prob_best(arms)[1]
    draws = 200_000
    mc = prob_best_monte_carlo(arms, draws=draws, seed=7)[1]
    standard_error = math.sqrt(exact * (1 - exact) / draws)
    assert abs(mc - exact) < 4 * standard_error
    assert prob_best_monte_carlo(arms, draws=draws, seed=7) == prob_best_monte_carlo(
        arms, draws=draws, seed=7
    )


def test_three_arms_use_monte_carlo_and_sum_to_one() -> None:
    arms = [Arm("a", 900, 30), Arm("b", 900, 45), Arm("c", 900, 31)]
    result = prob_best(arms)
    assert math.isclose(sum(result), 1.0, abs_tol=1e-12)
    assert max(result) == result[1]
    assert prob_best(arms) == result  # the fixed default seed: the same report twice
    four = prob_best([*arms, Arm("d", 10, 0)], draws=50_000, seed=3)
    assert math.isclose(sum(four), 1.0, abs_tol=1e-12)
    assert prob_best([Arm("a", 10, 1)]) == [1.0]
    assert prob_best([]) == []


def test_sample_ratio_is_the_chi_square_of_assigned_against_shares() -> None:
    arms = [
        Arm("holdout", 1, 0, assigned=210, weight=0.1),
        Arm("a", 1, 0, assigned=900, weight=0.45),
        Arm("b", 1, 0, assigned=890, weight=0.45),
    ]
    found = sample_ratio(arms)
    expected = [200.0, 900.0, 900.0]
    chi2 = sum((o - e) ** 2 / e for o, e in zip([210, 900, 890], expected, strict=True))
    assert found is not None and close(found.chi2, chi2)
    assert close(
        found.p_value, math.exp(-chi2 / 2)
    )  # the chi-square survival function with 2 degrees of freedom
    assert not found.flagged
    # 1000 vs 1200 against equal shares: chi2 = 2 * 100^2 / 1100 = 18.18..., p = 2.0e-5 < 0.001.
    skewed = sample_ratio([Arm("a", 1, 0, assigned=1000, weight=1), Arm("b", 1, 0, assigned=1200, weight=1)])
    assert skewed is not None and skewed.flagged
    assert close(skewed.chi2, 20_000 / 1100)
    assert close(skewed.p_value, math.erfc(math.sqrt(skewed.chi2 / 2)))  # chi-square, 1 degree of freedom


def test_sample_ratio_without_plan_or_with_an_empty_share() -> None:
    assert sample_ratio([Arm("a", 1, 0, assigned=10), Arm("b", 1, 0, assigned=10)]) is None
    assert sample_ratio([Arm("a", 1, 0), Arm("b", 1, 0)]) is None
    unplanned = sample_ratio([Arm("a", 1, 0, assigned=10, weight=1), Arm("b", 1, 0, assigned=3, weight=0)])
    assert unplanned is not None and unplanned.flagged
    paused = [Arm("a", 1, 0, assigned=10, weight=1), Arm("b", 1, 0, assigned=11, weight=1)]
    found = sample_ratio([*paused, Arm("c", 1, 0, assigned=0, weight=0)])
    assert found is not None and found == sample_ratio(paused)


rates = st.integers(0, 1000).map(lambda k: k / 1000)


@settings(max_examples=200, deadline=None)
@given(rates, rates, st.sampled_from([0.01, 0.05, 0.1]))
def test_sample_size_agrees_with_statsmodels(p_base: float, p_variant: float, alpha: float) -> None:
    """statsmodels solves the same pooled-null / unpooled-alternative normal approximation for n."""
    n = sample_size(p_base, p_variant, alpha=alpha)
    if p_base == p_variant:
        assert n is None
        return
    theirs = samplesize_proportions_2indep_onetail(
        p_variant - p_base, p_base, 0.8, alpha=alpha, alternative="two-sided"
    )
    assert n is not None
    assert n - 1 < theirs * (1 + 1e-9) and n >= min(1.0, theirs * (1 - 1e-9))  # n is it, rounded up


@pytest.mark.parametrize(
    ("p1", "p2"), [(0.05, 0.06), (0.02, 0.025), (0.3, 0.25), (0.1, 0.2), (0.5, 0.45), (0.001, 0.003)]
)
def test_sample_size_gives_80_percent_power_and_no_less(p1: float, p2: float) -> None:
    """statsmodels' power of the two-sided pooled z-test at n per arm reaches 80%, and n is the smallest such
    size for the formula's approximation: the rejection region on the lift's side (alpha / 2 one-sided), which
    leaves out the other tail's ~1e-6 (enough to tip n - 1 over 80% for 0.001 vs 0.003)."""

    def power(n: int, alternative: str = "two-sided", alpha: float = 0.05) -> float:
        found = power_proportions_2indep(
            p2 - p1, p1, n, alpha=alpha, alternative=alternative, return_results=False
        )
        return float(found)

    n = sample_size(p1, p2)
    assert n is not None
    assert power(n) >= 0.8
    side = "larger" if p2 > p1 else "smaller"
    assert power(n, side, 0.025) >= 0.8 > power(n - 1, side, 0.025)


def test_sample_size_refuses_impossible_rates() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        sample_size(0.1, 1.2)
    with pytest.raises(ValueError, match="alpha"):
        sample_size(0.1, 0.2, alpha=0)


def test_a_clear_winner_is_named() -> None:
    result = analyse([Arm("a", 5000, 200), Arm("b", 5000, 300)])
    assert result.verdict.winner == "b"
    assert result.verdict.text.startswith("b beats a:")
    assert result.comparisons[0].significant


def test_no_significance_says_the_data_do_not_decide_and_how_many_are_needed() -> None:
    result = analyse([Arm("a", 1000, 40), Arm("b", 1000, 44)])
    assert result.verdict.winner is None
    assert "do not decide" in result.verdict.text
    needed = result.comparisons[0].sample_size_needed
    assert needed is not None and f"{needed:,} per arm" in result.verdict.text


def test_a_sample_ratio_mismatch_blocks_even_a_significant_result() -> None:
    arms = [Arm("a", 4000, 160, assigned=4000, weight=1), Arm("b", 5000, 300, assigned=5000, weight=1)]
    result = analyse(arms)
    assert result.comparisons[0].significant
    assert result.verdict.winner is None
    assert "sample-ratio mismatch" in result.verdict.text


def test_when_every_variant_is_worse_the_baseline_wins() -> None:
    result = analyse([Arm("holdout", 5000, 300), Arm("a", 5000, 150), Arm("b", 5000, 160)])
    assert result.verdict.winner == "holdout"
    assert result.verdict.text.startswith("holdout beats every variant; the closest, b, is -2.80 pts")


def test_when_the_only_significant_differences_are_losses_the_baseline_wins_and_says_what_is_open() -> None:
    result = analyse([Arm("a", 5000, 300), Arm("b", 5000, 150), Arm("c", 5000, 305)])
    assert [c.significant for c in result.comparisons] == [True, False]
    assert result.verdict.winner == "a"
    assert "a beats b" in result.verdict.text and "c does not differ" in result.verdict.text


def test_the_largest_significant_gain_wins() -> None:
    result = analyse([Arm("a", 5000, 200), Arm("b", 5000, 290), Arm("c", 5000, 330), Arm("d", 5000, 100)])
    assert all(c.significant for c in result.comparisons)
    assert result.verdict.winner == "c"
    c = result.comparisons[1]
    assert c.lift_abs is not None and c.lift_abs_low is not None and c.lift_abs_high is not None
    assert result.verdict.text == (
        f"c beats a: +2.60 pts (95% CI {c.lift_abs_low * 100:+.2f} to {c.lift_abs_high * 100:+.2f}), "
        "p < 0.0001 after Holm."
    )


def test_significance_is_judged_on_the_holm_adjusted_p_value() -> None:
    """Raw p just under alpha, adjusted over it: no winner."""
    arms = [Arm("a", 4000, 160), Arm("b", 4000, 200), Arm("c", 4000, 161)]
    result = analyse(arms)
    b = result.comparisons[0]
    assert b.p_value is not None and b.p_adjusted is not None
    assert b.p_value < 0.05 < b.p_adjusted
    assert not b.significant and result.verdict.winner is None
    assert analyse(arms[:2]).verdict.winner == "b"  # alone, the same counts do decide


def test_holm_is_applied_across_a_channels_comparisons() -> None:
    result = analyse([Arm("a", 2000, 80), Arm("b", 2000, 105), Arm("c", 2000, 82)])
    raw = [c.p_value for c in result.comparisons]
    assert [c.p_adjusted for c in result.comparisons] == pytest.approx(
        list(multipletests(raw, method="holm")[1]), abs=1e-12
    )


@pytest.mark.parametrize(
    "arms",
    [
        [Arm("a", 0, 0), Arm("b", 0, 0)],
        [Arm("a", 100, 0), Arm("b", 100, 0)],
        [Arm("a", 100, 100), Arm("b", 100, 100)],
        [Arm("a", 100, 3)],
    ],
    ids=["no-exposures", "no-successes", "all-successes", "one-arm"],
)
def test_edge_cases_give_a_verdict_and_json_safe_numbers(arms: list[Arm]) -> None:
    result = analyse(arms)
    assert result.verdict.winner is None
    assert len(result.arms) == len(arms) and len(result.comparisons) == len(arms) - 1
    json.dumps(result.to_dict(), allow_nan=False)


def test_edge_case_verdicts_say_why() -> None:
    assert analyse([Arm("a", 100, 3)]).verdict.text == "Only one arm: there is nothing to compare."
    assert "no exposures in b" in analyse([Arm("a", 100, 3), Arm("b", 0, 0)]).verdict.text
    assert "rates are equal" in analyse([Arm("a", 100, 0), Arm("b", 100, 0)]).verdict.text
    zero_base = analyse([Arm("a", 100, 0), Arm("b", 100, 3)])
    assert zero_base.comparisons[0].lift_rel is None and zero_base.comparisons[0].lift_rel_low is None
    unplanned = analyse([Arm("a", 10, 1, assigned=10, weight=1), Arm("b", 10, 1, assigned=10, weight=0)])
    assert unplanned.srm is not None and unplanned.srm.flagged
    assert unplanned.to_dict()["srm"]["chi2"] is None  # infinite: JSON has no such number
    json.dumps(unplanned.to_dict(), allow_nan=False)


def test_the_analysis_serialises_every_field() -> None:
    arms = [Arm("a", 1000, 40, 800.0, 20_000.0, 1000, 1), Arm("b", 1000, 52, 1000.0, 26_000.0, 1000, 1)]
    data = json.loads(json.dumps(analyse(arms).to_dict(), allow_nan=False))
    assert set(data) == {"baseline", "arms", "comparisons", "srm", "verdict"}
    assert set(data["arms"][0]) == {
        "name", "exposures", "successes", "rate", "rate_low", "rate_high", "revenue",
        "revenue_per_recipient", "prob_best",
    }  # fmt: skip
    assert set(data["comparisons"][0]) == {
        "name", "lift_abs", "lift_abs_low", "lift_abs_high", "lift_rel", "lift_rel_low", "lift_rel_high",
        "z", "p_value", "p_adjusted", "revenue_t", "revenue_p", "significant", "sample_size_needed",
    }  # fmt: skip
    assert data["arms"][1]["revenue_per_recipient"] == 1.0
    assert data["comparisons"][0]["revenue_p"] is not None
    assert data["srm"] == {"chi2": 0.0, "p_value": 1.0, "flagged": False}


def test_impossible_counts_are_refused_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="successes cannot exceed exposures"):
        Arm("a", 10, 11)
    with pytest.raises(ValueError, match="cannot be negative"):
        Arm("a", -1, 0)
    with pytest.raises(ValueError, match="cannot be negative"):
        wilson(-1, 10)
    with pytest.raises(ValueError, match="baseline: 12 successes out of 10"):
        two_proportion_ztest(1, 10, 12, 10)
    with pytest.raises(ValueError, match="successes cannot exceed exposures"):
        diff_interval(11, 10, 1, 10)
    with pytest.raises(ValueError, match="cannot be negative"):
        ratio_interval(1, 10, -1, 10)
    with pytest.raises(ValueError, match="p-values must lie in"):
        holm([0.2, 1.5])
    with pytest.raises(ValueError, match="baseline 2"):
        analyse([Arm("a", 10, 1), Arm("b", 10, 2)], baseline=2)
    with pytest.raises(ValueError, match="confidence"):
        wilson(1, 10, confidence=95)


def test_no_exposures_give_the_uninformative_answers() -> None:
    assert wilson(0, 0) == (0.0, 1.0)
    assert two_proportion_ztest(0, 0, 5, 10) == (0.0, 1.0)
    assert diff_interval(0, 0, 5, 10) == (-1.0, 1.0)
    assert ratio_interval(0, 0, 5, 10) is None
