"""Power before launch (clarion.analysis.design) against statsmodels, and by simulation."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.proportion import power_proportions_2indep

from clarion.analysis.design import mde, needed, plan_power, power
from clarion.analysis.stats import two_proportion_ztest

DESIGNS = [
    (0.005, 9300, 190),
    (0.02, 5000, 5000),
    (0.1, 800, 200),
    (0.3, 120, 130),
    (0.001, 300_000, 300_000),
]


@pytest.mark.parametrize(("p2", "n1", "n2"), DESIGNS)
def test_power_is_statsmodels_power_proportions_2indep(p2: float, n1: int, n2: int) -> None:
    for d in (0.001, 0.01, 0.05):
        ours = power(d, p2, n1, n2)
        reference = power_proportions_2indep(d, p2, n1, ratio=n2 / n1, alpha=0.05, return_results=False)
        assert ours == pytest.approx(float(reference), abs=1e-9)


@pytest.mark.parametrize(("p2", "n1", "n2"), DESIGNS)
def test_the_mde_is_the_lift_statsmodels_detects_with_80_percent_power(p2: float, n1: int, n2: int) -> None:
    d = mde(p2, n1, n2)
    assert d is not None
    reference = power_proportions_2indep(d, p2, n1, ratio=n2 / n1, alpha=0.05, return_results=False)
    assert float(reference) == pytest.approx(0.8, abs=1e-6)


def test_the_size_needed_reaches_80_percent_power_at_the_designs_ratio() -> None:
    n1, n2 = needed(0.005, 0.004, 9300, 190)
    assert n2 / n1 == pytest.approx(190 / 9300, rel=1e-3)
    assert power(0.004, 0.005, n1, n2) >= 0.8 > power(0.004, 0.005, n1 * 0.97, n2 * 0.97)


def test_power_by_simulation_at_the_mde() -> None:
    """4,000 simulated experiments at the MDE of 2,000 vs 1,000 contacts from 4%: the z-test rejects in
    80% of them (tolerance 2.5 points: about 4 binomial standard errors)."""
    n1, n2, p2 = 2000, 1000, 0.04
    d = mde(p2, n1, n2)
    assert d is not None
    rng = np.random.default_rng(7)
    s1 = rng.binomial(n1, p2 + d, 4000)
    s2 = rng.binomial(n2, p2, 4000)
    rejected = np.mean(
        [two_proportion_ztest(int(a), n1, int(b), n2)[1] < 0.05 for a, b in zip(s1, s2, strict=True)]
    )
    assert rejected == pytest.approx(0.8, abs=0.025)


def test_the_demos_holdout_is_too_small_and_the_warning_names_the_size_needed() -> None:
    checks = plan_power(
        {"holdout": 190, "urgent": 4879, "social-proof": 4931}, ["urgent", "social-proof"], {}, 0.005, 0.004
    )
    holdout = [c for c in checks if c.kind == "holdout"]
    assert holdout and all(c.enough is False for c in holdout)
    first = holdout[0]
    assert first.mde is not None and first.mde > 0.03
    assert first.needed_control is not None and first.needed_control > 3000
    assert f"{first.needed_control:,} in holdout" in first.text
    variants = [c for c in checks if c.kind == "variants"]
    assert variants and variants[0].enough is None  # no hoped-for lift between variants: stated, not judged


def test_a_large_enough_design_says_so_and_channel_holdouts_are_checked() -> None:
    checks = plan_power({"holdout": 50_000, "a": 50_000}, ["a"], {"sms": (40_000, 10_000)}, 0.02, 0.005)
    assert [c.kind for c in checks] == ["holdout", "channel"]
    assert checks[0].enough is True and "enough" in checks[0].text
    assert checks[1].name == "sms sent vs sms withheld"


def test_no_mde_when_no_lift_is_detectable() -> None:
    assert mde(0.5, 3, 3) is None
    assert mde(0.5, 0, 10) is None
    with pytest.raises(ValueError):
        mde(0, 10, 10)
