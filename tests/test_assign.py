"""Variant assignment: deterministic per contact, and split as the weights say."""

from __future__ import annotations

from collections import Counter

from scipy.stats import chisquare

from clarion.campaign.model import HOLDOUT, Experiment, Variant
from clarion.messages.assign import Assigner


def _experiment(holdout: float, weights: dict[str, float]) -> Experiment:
    return Experiment(holdout=holdout, variants=[Variant(id=k, weight=w) for k, w in weights.items()])


def test_same_contact_same_arm_across_instances() -> None:
    exp = _experiment(0.1, {"a": 1, "b": 2})
    first = [Assigner("appeal", exp).arm(f"c-{i}") for i in range(1000)]
    again = [Assigner("appeal", exp).arm(f"c-{i}") for i in range(1000)]
    assert first == again


def test_campaign_name_reshuffles() -> None:
    exp = _experiment(0, {"a": 1, "b": 1})
    one = [Assigner("appeal-1", exp).arm(f"c-{i}") for i in range(2000)]
    two = [Assigner("appeal-2", exp).arm(f"c-{i}") for i in range(2000)]
    same = sum(x == y for x, y in zip(one, two, strict=True))
    assert 800 < same < 1200  # independent draws agree about half the time


def test_split_matches_weights_on_100k_ids() -> None:
    exp = _experiment(0.02, {"urgent": 1, "social-proof": 1, "long": 2})
    assigner = Assigner("debate-night-appeal", exp)
    n = 100_000
    counts = Counter(assigner.arm(f"sup-{i:06d}") for i in range(n))
    arms = [HOLDOUT, "urgent", "social-proof", "long"]
    expected = [0.02 * n, 0.98 * n / 4, 0.98 * n / 4, 0.98 * n / 2]
    result = chisquare([counts[a] for a in arms], expected)
    assert result.pvalue > 0.001, (counts, result)
    assert set(counts) == set(arms)


def test_zero_weight_variant_gets_nobody() -> None:
    exp = _experiment(0, {"a": 1, "paused": 0})
    assigner = Assigner("appeal", exp)
    assert {assigner.arm(f"c-{i}") for i in range(5000)} == {"a"}


def test_no_holdout_arm_without_holdout() -> None:
    assigner = Assigner("appeal", _experiment(0, {"a": 1}))
    assert assigner.arms == ["a"]
