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


def test_channel_holdouts_are_deterministic_at_their_share_and_independent_of_the_arm() -> None:
    """A factorial design: the channel's holdout draw is independent of the variant's (chi-square test of
    independence on 100,000 ids), at its planned share, and the same for every instance."""
    from scipy.stats import binomtest, chi2_contingency

    exp = Experiment(
        holdout=0.02,
        variants=[Variant(id="a"), Variant(id="b")],
        channel_holdouts={"sms": 0.1, "email": 0.05},
    )
    one, two = Assigner("appeal", exp), Assigner("appeal", exp)
    ids = [f"sup-{i:06d}" for i in range(100_000)]
    sms = [one.withheld(c, "sms") for c in ids]
    assert sms == [two.withheld(c, "sms") for c in ids]
    assert binomtest(sum(sms), len(ids), 0.1).pvalue > 0.001
    arms = [one.arm(c) for c in ids]
    table = [
        [sum(1 for a, w in zip(arms, sms, strict=True) if a == arm and w is flag) for flag in (True, False)]
        for arm in ("a", "b", HOLDOUT)
    ]
    assert chi2_contingency(table).pvalue > 0.001
    email = [one.withheld(c, "email") for c in ids]
    both = sum(1 for s, e in zip(sms, email, strict=True) if s and e)
    assert binomtest(both, len(ids), 0.1 * 0.05).pvalue > 0.001  # the channels' draws are independent too
    assert not any(one.withheld(c, "x") for c in ids[:1000])  # a channel without a holdout is never withheld
