"""A channel's own effect, from its channel holdout (`experiment.channel_holdouts`).

Every contact of a variant arm with an address on channel c was, independently of its arm, either sent c
(exposed) or withheld from it at random (withheld). Both groups got the other channels alike, so the
difference between them is c's incremental effect given the rest of the campaign (an intent-to-treat
estimate: exposed contacts whom consent or a suppression kept from c still count as exposed). Outcomes are
conversions from any route (tracked link, landing-page webhook, import), inside the attribution window: a
text that makes someone give through the email's link counts for the text.

Per channel:

- conversion rate of each group, Wilson intervals; incremental conversions per contact p_e - p_w with a
  Wald interval, and the two-sided pooled z-test (the same tests as stats.py), Holm-adjusted across the
  channels compared;
- revenue per contact of each group and its difference with a Welch interval (t quantile on the
  Welch-Satterthwaite degrees of freedom) and p-value, from per-contact sums and sums of squares;
- the incremental totals over the exposed group: (p_e - p_w) * n_e conversions and
  (r_e - r_w) * n_e revenue, with the intervals scaled alike;
- a sample-ratio check of the withheld share against the planned share.

First-, last- and any-touch figures elsewhere in the report credit a channel for conversions it touched; only
these figures say what it caused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from scipy.special import stdtr, stdtrit  # Student's t; scipy.stats would cost a second's import

from clarion.analysis.arm import Arm
from clarion.analysis.power import sample_ratio
from clarion.analysis.stats import diff_interval, holm, two_proportion_ztest, wilson
from clarion.ledger.measurement import GroupMember


@dataclass(frozen=True)
class Group:
    contacts: int
    converted: int
    rate: float | None
    rate_low: float | None
    rate_high: float | None
    revenue: float
    revenue_per_contact: float | None


@dataclass(frozen=True)
class ChannelLift:
    channel: str
    planned_share: float
    exposed: Group
    withheld: Group
    lift: float | None  # incremental conversions per contact
    lift_low: float | None
    lift_high: float | None
    p_value: float | None
    p_adjusted: float | None
    revenue_lift: float | None  # incremental revenue per contact
    revenue_lift_low: float | None
    revenue_lift_high: float | None
    revenue_p: float | None
    incremental_conversions: float | None
    incremental_conversions_low: float | None
    incremental_conversions_high: float | None
    incremental_revenue: float | None
    incremental_revenue_low: float | None
    incremental_revenue_high: float | None
    srm_p: float | None
    srm_flagged: bool
    text: str

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in asdict(self).items()
        }
        return found


def _group(members: Sequence[GroupMember], outcomes: Mapping[int, tuple[int, int]]) -> tuple[Group, float]:
    n = len(members)
    converted = sum(1 for m in members if outcomes.get(m.seq, (0, 0))[0] > 0)
    revenue_minor = [outcomes.get(m.seq, (0, 0))[1] for m in members]
    revenue = sum(revenue_minor) / 100
    squares = sum(r * r for r in revenue_minor) / 10_000
    low, high = wilson(converted, n) if n else (None, None)
    group = Group(n, converted, converted / n if n else None, low, high, revenue, revenue / n if n else None)
    return group, squares


def welch_diff(
    sum1: float, sq1: float, n1: int, sum2: float, sq2: float, n2: int, confidence: float = 0.95
) -> tuple[float, float, float, float] | None:
    """(difference of means, low, high, two-sided p) by Welch's t from sums and sums of squares."""
    if n1 < 2 or n2 < 2:
        return None
    m1, m2 = sum1 / n1, sum2 / n2
    v1 = max(0.0, (sq1 - n1 * m1 * m1) / (n1 - 1))
    v2 = max(0.0, (sq2 - n2 * m2 * m2) / (n2 - 1))
    se2 = v1 / n1 + v2 / n2
    if se2 == 0:
        return None
    df = se2**2 / ((v1 / n1) ** 2 / (n1 - 1) + (v2 / n2) ** 2 / (n2 - 1))
    t = (m1 - m2) / math.sqrt(se2)
    q = float(stdtrit(df, 1 - (1 - confidence) / 2))
    half = q * math.sqrt(se2)
    return (m1 - m2, m1 - m2 - half, m1 - m2 + half, float(2 * stdtr(df, -abs(t))))


def channel_lifts(
    groups: Mapping[str, Sequence[GroupMember]],
    outcomes: Mapping[int, tuple[int, int]],
    shares: Mapping[str, float],
    *,
    alpha: float = 0.05,
) -> list[ChannelLift]:
    """Each channel holdout's incremental effect; `outcomes` per contact: (conversions, revenue in cents)."""
    raw = []
    for channel, share in shares.items():
        members = list(groups.get(channel, ()))
        exposed_m = [m for m in members if not m.withheld]
        withheld_m = [m for m in members if m.withheld]
        exposed, sq_e = _group(exposed_m, outcomes)
        withheld, sq_w = _group(withheld_m, outcomes)
        raw.append((channel, share, exposed, withheld, sq_e, sq_w))
    tests = [
        two_proportion_ztest(e.converted, e.contacts, w.converted, w.contacts)
        if e.contacts and w.contacts
        else None
        for _, _, e, w, _, _ in raw
    ]
    adjusted = iter(holm([t[1] for t in tests if t is not None]))
    found = []
    for (channel, share, e, w, sq_e, sq_w), test in zip(raw, tests, strict=True):
        p_adj = next(adjusted) if test is not None else None
        found.append(_lift(channel, share, e, w, sq_e, sq_w, test, p_adj, alpha))
    return found


def _lift(
    channel: str,
    share: float,
    e: Group,
    w: Group,
    sq_e: float,
    sq_w: float,
    test: tuple[float, float] | None,
    p_adj: float | None,
    alpha: float,
) -> ChannelLift:
    lift = low = high = None
    if e.contacts and w.contacts:
        lift = (e.rate or 0) - (w.rate or 0)
        low, high = diff_interval(e.converted, e.contacts, w.converted, w.contacts)
    revenue = welch_diff(e.revenue, sq_e, e.contacts, w.revenue, sq_w, w.contacts)
    srm = sample_ratio(
        [
            Arm("exposed", e.contacts, 0, assigned=e.contacts, weight=1 - share),
            Arm("withheld", w.contacts, 0, assigned=w.contacts, weight=share),
        ]
    )

    def total(value: float | None) -> float | None:
        return None if value is None else value * e.contacts

    lift_value = ChannelLift(
        channel=channel,
        planned_share=share,
        exposed=e,
        withheld=w,
        lift=lift,
        lift_low=low,
        lift_high=high,
        p_value=test[1] if test else None,
        p_adjusted=p_adj,
        revenue_lift=revenue[0] if revenue else None,
        revenue_lift_low=revenue[1] if revenue else None,
        revenue_lift_high=revenue[2] if revenue else None,
        revenue_p=revenue[3] if revenue else None,
        incremental_conversions=total(lift),
        incremental_conversions_low=total(low),
        incremental_conversions_high=total(high),
        incremental_revenue=total(revenue[0]) if revenue else None,
        incremental_revenue_low=total(revenue[1]) if revenue else None,
        incremental_revenue_high=total(revenue[2]) if revenue else None,
        srm_p=srm.p_value if srm else None,
        srm_flagged=bool(srm and srm.flagged),
        text="",
    )
    return _with_text(lift_value, alpha)


def _with_text(lift: ChannelLift, alpha: float) -> ChannelLift:
    from dataclasses import replace

    c = lift.channel
    if not lift.withheld.contacts or not lift.exposed.contacts:
        text = (
            f"{c}: no contacts in {'the holdout' if not lift.withheld.contacts else 'the exposed group'} yet."
        )
    elif lift.srm_flagged:
        text = (
            f"{c}: the withheld share is off its planned {lift.planned_share:.0%} (p = {lift.srm_p:.2g}); "
            "the estimate cannot be trusted."
        )
    else:
        assert lift.lift is not None and lift.lift_low is not None and lift.lift_high is not None
        span = (
            f"{lift.lift * 100:+.2f} pts (95% CI {lift.lift_low * 100:+.2f} to {lift.lift_high * 100:+.2f})"
        )
        extra = (
            f", about {lift.incremental_conversions:+.0f} conversions over its {lift.exposed.contacts:,} "
            "exposed contacts"
            if lift.incremental_conversions is not None
            else ""
        )
        if lift.p_adjusted is not None and lift.p_adjusted < alpha:
            direction = "raised" if lift.lift > 0 else "lowered"
            text = f"{c} {direction} conversions: {span}{extra}; p = {lift.p_adjusted:.2g} after Holm."
        else:
            text = (
                f"{c}: no incremental effect detected: {span}{extra}; "
                f"p = {(lift.p_adjusted or 1):.2g} after Holm across the channels "
                f"({(lift.p_value or 1):.2g} alone)."
            )
    return replace(lift, text=text)


__all__ = ["ChannelLift", "Group", "channel_lifts", "welch_diff"]
