"""Thompson allocation (clarion.analysis.bandit): shares from the posteriors with a uniform floor,
deterministic allocation, and the uniform share's lift unbiased where pooling every wave is not."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy.stats import binomtest

from clarion.analysis.arm import Arm
from clarion.analysis.bandit import allocate, thompson_shares, uniform_arms


def test_shares_follow_the_probability_of_being_best_with_a_floor() -> None:
    found = thompson_shares([Arm("a", 1000, 20), Arm("b", 1000, 60)], uniform_share=0.2)
    assert sum(found.shares) == pytest.approx(1)
    assert found.shares[0] == pytest.approx(0.1 + 0.8 * found.prob_best[0])
    assert min(found.shares) >= 0.1 - 1e-12  # each of 2 arms keeps half the uniform share
    assert found.shares[1] > 0.89
    even = thompson_shares([Arm("a", 0, 0), Arm("b", 0, 0), Arm("c", 0, 0)], uniform_share=0.3)
    assert even.shares == pytest.approx([1 / 3] * 3, abs=0.01)  # no data: Monte Carlo near even


def test_allocation_is_deterministic_and_keeps_the_uniform_share() -> None:
    allocation = thompson_shares([Arm("a", 1000, 20), Arm("b", 1000, 60)], uniform_share=0.2)
    ids = [f"sup-{i:06d}" for i in range(20_000)]
    first = allocate(allocation, ids, "appeal:wave-1")
    assert first == allocate(allocation, ids, "appeal:wave-1")
    uniform = [arm for arm, flag in first.values() if flag]
    assert binomtest(len(uniform), len(ids), 0.2).pvalue > 0.001
    assert binomtest(Counter(uniform)["a"], len(uniform), 0.5).pvalue > 0.001
    picked = Counter(arm for arm, _ in first.values())
    expected_b = allocation.shares[1]
    assert binomtest(picked["b"], len(ids), expected_b).pvalue > 0.001


def test_the_uniform_shares_lift_is_unbiased_where_pooling_every_wave_is_not() -> None:
    """Rates drift between waves (later waves' contacts convert less, as a late audience does), and the
    bandit moves traffic to b over the waves: pooled, b's rate is dragged down by its late traffic. Over 200
    simulated rollouts the uniform share's mean lift is within 3 standard errors of the truth (+1.0 point);
    the pooled one is more than 3 standard errors off it."""
    rng = np.random.default_rng(5)
    uniform_lifts, pooled_lifts = [], []
    for trial in range(200):
        data = {"a": [0, 0], "b": [0, 0]}
        outcomes: list[tuple[str, bool, bool]] = []
        for wave in range(4):
            base = 0.06 - 0.015 * wave  # the audience of later waves converts less
            arms = [Arm(k, v[0], v[1]) for k, v in data.items()]
            allocation = thompson_shares(arms, 0.2, seed=trial * 10 + wave)
            ids = [f"t{trial}-w{wave}-{i}" for i in range(1500)]
            for arm, uniform in allocate(allocation, ids, f"sim:{trial}:{wave}").values():
                converted = bool(rng.random() < base + (0.01 if arm == "b" else 0.0))
                data[arm][0] += 1
                data[arm][1] += converted
                outcomes.append((arm, uniform, converted))
        a, b = uniform_arms(outcomes, ["a", "b"])
        uniform_lifts.append((b.rate or 0) - (a.rate or 0))
        pooled_lifts.append(data["b"][1] / data["b"][0] - data["a"][1] / data["a"][0])

    def off(lifts: list[float]) -> float:  # distance from the truth, in standard errors of the mean
        return abs(float(np.mean(lifts)) - 0.01) / (float(np.std(lifts, ddof=1)) / np.sqrt(len(lifts)))

    assert off(uniform_lifts) < 3
    assert off(pooled_lifts) > 3
