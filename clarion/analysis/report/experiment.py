"""The report's experiment-validity section: the attribution window and what fell outside it, human and
automated clicks, each channel's incrementality from its channel holdout, the always-valid
(sequential) reading of the overall comparison, safe to read while the run is live, and a Thompson
rollout's waves with the comparison from its uniform share (bandit.py).

Built from the ledger and the run's options (frozen when the run was planned), like the rest of the report.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from clarion.analysis.clicks import ClickCounts, Rules, human_click_times, split_clicks
from clarion.analysis.incrementality import ChannelLift, channel_lifts
from clarion.analysis.report.bandit import BanditSection, build_bandit
from clarion.analysis.sequential import SequentialAnalysis, sequential_analysis
from clarion.analysis.stats import Analysis, Arm
from clarion.campaign.measurement import DEFAULT_WINDOW
from clarion.ledger import Engagement, Ledger

OUTSIDE_LISTED = 20  # conversions outside the window listed one by one; the rest are counted


@dataclass(frozen=True)
class OutsideRow:
    arm: str
    channel: str | None
    contact_seq: int | None
    at: str
    amount: float
    currency: str
    why: str  # before (the contact's first send) or after (the window closed)
    start: str | None


@dataclass
class AttributionSummary:
    window_seconds: float
    launch: str | None
    counted: int
    before: int
    before_revenue: float
    after: int
    after_revenue: float
    listed: list[OutsideRow] = field(default_factory=list)

    @property
    def text(self) -> str:
        days = self.window_seconds / 86_400
        span = f"{days:g} day(s)" if days >= 1 else f"{self.window_seconds / 3600:g} hour(s)"
        text = f"Conversions count from each contact's first send (the holdout's: the launch) for {span}."
        if self.before or self.after:
            text += (
                f" Not counted: {self.before:,} made before the contact's first send "
                f"({self.before_revenue:,.2f}) and {self.after:,} after the window closed "
                f"({self.after_revenue:,.2f}); they stay in the ledger."
            )
        return text

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "text": self.text}


@dataclass(frozen=True)
class ClickSplit:
    channel: str
    variant: str
    clicks: int  # every contact who clicked (all clicks, for a post)
    human: int
    automated: int
    automated_requests: int
    reasons: dict[str, int]


@dataclass(frozen=True)
class TouchRow:
    """Descriptive credit (not cause): converting contacts whose human clicks before converting touched
    the channel (any), came first on it (first), or last (last). `channel` None: no click before
    converting."""

    channel: str | None
    first: int
    last: int
    any: int


NO_TOUCH = None


@dataclass
class ExperimentSection:
    attribution: AttributionSummary
    clicks: list[ClickSplit]
    incrementality: list[ChannelLift]
    sequential: SequentialAnalysis | None
    rules: dict[str, Any]
    touches: list[TouchRow] = field(default_factory=list)
    bandit: BanditSection | None = None  # a Thompson rollout's waves and its uniform-share comparison

    def as_dict(self) -> dict[str, Any]:
        return {
            "bandit": self.bandit.as_dict() if self.bandit else None,
            "attribution": self.attribution.as_dict(),
            "clicks": [asdict(c) for c in self.clicks],
            "click_rules": self.rules,
            "incrementality": [lift.as_dict() for lift in self.incrementality],
            "touches": [asdict(t) for t in self.touches],
            "sequential": self.sequential.as_dict() if self.sequential else None,
        }


def window_of(options: dict[str, Any]) -> timedelta:
    seconds = options.get("attribution_window")
    return timedelta(seconds=float(seconds)) if isinstance(seconds, int | float) else DEFAULT_WINDOW


def click_splits(ledger: Ledger, run_id: str, options: dict[str, Any]) -> dict[tuple[str, str], ClickCounts]:
    rules = Rules.from_options(options.get("automated_clicks"))
    return split_clicks(ledger.link_hits(run_id), ledger.delivered_times(run_id), rules)


def touches(ledger: Ledger, run_id: str, options: dict[str, Any], engagement: Engagement) -> list[TouchRow]:
    """First-, last- and any-touch counts of the converting contacts, from their human clicks."""
    if not engagement.first_conversion:
        return []
    rules = Rules.from_options(options.get("automated_clicks"))
    clicks = human_click_times(ledger.link_hits(run_id), ledger.delivered_times(run_id), rules)
    first: Counter[str | None] = Counter()
    last: Counter[str | None] = Counter()
    anyone: Counter[str | None] = Counter()
    for seq, converted in engagement.first_conversion.items():
        before = [(at, channel) for at, channel in clicks.get(seq, []) if at <= converted]
        if not before:
            first[NO_TOUCH] += 1
            last[NO_TOUCH] += 1
            anyone[NO_TOUCH] += 1
            continue
        first[before[0][1]] += 1
        last[before[-1][1]] += 1
        for channel in {c for _, c in before}:
            anyone[channel] += 1
    keys = sorted(k for k in anyone if k is not None) + ([NO_TOUCH] if NO_TOUCH in anyone else [])
    return [TouchRow(k, first[k], last[k], anyone[k]) for k in keys]


def build_experiment(
    ledger: Ledger,
    run_id: str,
    options: dict[str, Any],
    engagement: Engagement,
    splits: dict[tuple[str, str], ClickCounts],
    unique_clicks: dict[tuple[str, str], int],
    overall: Analysis | None,
) -> ExperimentSection:
    window = engagement.window or window_of(options)
    section = ExperimentSection(
        attribution=_attribution(engagement, window),
        clicks=_click_rows(splits, unique_clicks),
        incrementality=[],
        sequential=None,
        rules={
            "fast_click_seconds": Rules.from_options(
                options.get("automated_clicks")
            ).fast_click.total_seconds(),
            "burst_seconds": Rules.from_options(options.get("automated_clicks")).burst.total_seconds(),
            "beacon": Rules.from_options(options.get("automated_clicks")).beacon,
        },
    )
    section.touches = touches(ledger, run_id, options, engagement)
    section.bandit = build_bandit(ledger, run_id, options)
    holdouts = {str(k): float(v) for k, v in (options.get("channel_holdouts") or {}).items()}
    if holdouts:
        groups = ledger.channel_groups(run_id, list(holdouts))
        section.incrementality = channel_lifts(groups, engagement.per_contact, holdouts)
    if overall is not None and len(overall.arms) > 1:
        arms = [Arm(a.name, a.exposures, a.successes) for a in overall.arms]
        section.sequential = sequential_analysis(arms, tuning=max(sum(a.exposures for a in arms), 1))
    return section


def _attribution(engagement: Engagement, window: timedelta) -> AttributionSummary:
    outside = sorted(engagement.outside, key=lambda o: o.at)
    before = [o for o in outside if o.why == "before"]
    after = [o for o in outside if o.why == "after"]
    return AttributionSummary(
        window_seconds=window.total_seconds(),
        launch=engagement.launch.isoformat(timespec="seconds") if engagement.launch else None,
        counted=len(engagement.conversion_times),
        before=len(before),
        before_revenue=sum(o.amount_minor for o in before) / 100,
        after=len(after),
        after_revenue=sum(o.amount_minor for o in after) / 100,
        listed=[
            OutsideRow(
                o.arm,
                o.channel,
                o.contact_seq,
                o.at.isoformat(timespec="seconds"),
                o.amount_minor / 100,
                o.currency,
                o.why,
                o.start.isoformat(timespec="seconds") if o.start else None,
            )
            for o in outside[:OUTSIDE_LISTED]
        ],
    )


def _click_rows(
    splits: dict[tuple[str, str], ClickCounts], unique_clicks: dict[tuple[str, str], int]
) -> list[ClickSplit]:
    rows = []
    for key in sorted(set(splits) | set(unique_clicks)):
        counts = splits.get(key, ClickCounts())
        total = unique_clicks.get(key, counts.human + counts.automated)
        rows.append(
            ClickSplit(
                key[0],
                key[1],
                total,
                max(0, total - counts.automated),
                counts.automated,
                counts.automated_clicks,
                dict(Counter(counts.reasons)),
            )
        )
    return rows


__all__ = [
    "AttributionSummary",
    "ClickSplit",
    "ExperimentSection",
    "build_experiment",
    "click_splits",
    "window_of",
]
