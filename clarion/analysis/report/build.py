"""A run's comparison: per channel x variant counts from the ledger, analysed with clarion.analysis.stats.

Two kinds of comparison, because they answer different questions:

- Per channel, the variants against each other (baseline: the first variant). Exposures are deliveries where
  the channel's provider reported any, else accepted sends; for a social post, its impressions. Clicks are
  unique contacts who clicked (every click, for a post's link, which names no one); conversions are those a
  tracked link of that channel led to. The holdout got no message on any channel, so it has no place here.
- Overall, per arm (variants and holdout): contacts assigned, contacts who converted by any route (tracked
  links, landing-page webhooks by email or phone, imported exports), revenue per contact. Baseline: the
  holdout when there is one. This is the honest "did messaging raise anything at all" comparison.

The verdict of a channel is on conversions when the run has any, else on clicks. A sample-ratio mismatch in
the assignment (chi-square against the planned shares) blocks every verdict.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from clarion.analysis.clicks import ClickCounts
from clarion.analysis.report.experiment import build_experiment, click_splits, window_of
from clarion.analysis.report.model import (
    ChannelReport,
    ChannelRow,
    Overall,
    Report,
    RunInfo,
    Timeline,
    TimelinePoint,
)
from clarion.analysis.stats import Analysis, Arm, Verdict, analyse
from clarion.campaign.model import HOLDOUT
from clarion.ledger import Engagement, Ledger, RunNotFound
from clarion.ledger.results import ChannelVariantResult, run_results

DELIVERED = "delivered"
IMPRESSIONS = "impression_count"
TIMELINE_POINTS = 48


def build_report(
    ledger: Ledger, run_id: str, results: Sequence[ChannelVariantResult] | None = None
) -> Report:
    """The whole report of a run (`Report.as_dict()` is what --json prints; the other formats read it).

    `results`: the run's `run_results`, when the caller has just read them (a launch's end: reading the
    sends' summary again took 0.07 s at 100,000)."""
    run = ledger.get_run(run_id)
    if run is None:
        raise RunNotFound(run_id)
    options = run.options
    variants: list[str] = list(options.get("variants", []))
    channel_ids: list[str] = list(options.get("channels", []))
    kinds: dict[str, str] = dict(options.get("kinds", {}))
    shares: dict[str, float] = {str(k): float(v) for k, v in options.get("shares", {}).items()}
    assigned = ledger.arm_counts(run_id)
    engagement = ledger.engagement(run_id, window_of(options))
    splits = click_splits(ledger, run_id, options)
    metrics = ledger.post_metrics(run_id)
    if results is None:
        results = run_results(ledger, run_id)
    sends = {(r.channel, r.variant): r for r in results}
    has_conversions = bool(engagement.conversions or engagement.arm_conversions)

    channels = []
    for cid in channel_ids:
        kind = kinds.get(cid, "")
        rows = [
            _channel_row(
                cid, kind, v, sends.get((cid, v)), engagement, metrics.get((cid, v), {}), splits.get((cid, v))
            )
            for v in variants
            if (cid, v) in sends
        ]
        channels.append(_channel_report(cid, kind, rows, assigned, shares, has_conversions))
    overall = _overall(variants, assigned, shares, engagement)
    experiment = build_experiment(
        ledger, run_id, options, engagement, splits, engagement.unique_clicks, overall.analysis
    )
    return Report(
        run=RunInfo(
            id=run.id,
            campaign=run.campaign,
            status=str(run.status),
            created_at=run.created_at.isoformat(timespec="seconds"),
            finished_at=run.finished_at.isoformat(timespec="seconds") if run.finished_at else None,
        ),
        metric="conversion_rate" if has_conversions else "click_rate",
        currency=_currency(engagement),
        channels=channels,
        overall=overall,
        timeline=_timeline(engagement),
        experiment=experiment,
    )


def _channel_row(
    cid: str,
    kind: str,
    variant: str,
    sent: ChannelVariantResult | None,
    engagement: Engagement,
    metrics: dict[str, int],
    split: ClickCounts | None,
) -> ChannelRow:
    people, _count, revenue, squares = engagement.conversions.get((variant, cid), (0, 0, 0, 0))
    clicks = engagement.unique_clicks.get((cid, variant), 0)
    automated = split.automated if split else 0
    return ChannelRow(
        channel=cid,
        variant=variant,
        planned=sent.planned if sent else 0,
        sent=sent.sent if sent else 0,
        failed=sent.failed if sent else 0,
        skipped=sent.skipped if sent else 0,
        uncertain=sent.uncertain if sent else 0,
        delivered=engagement.events.get((cid, variant, DELIVERED), 0),
        impressions=metrics.get(IMPRESSIONS) if kind == "social" else None,
        social=metrics if kind == "social" else None,
        clicks=clicks,
        total_clicks=engagement.total_clicks.get((cid, variant), 0),
        conversions=people,
        revenue=revenue / 100,
        revenue_sq=squares / 10_000,
        human_clicks=max(0, clicks - automated),
        automated_clicks=automated,
    )


def _channel_report(
    cid: str,
    kind: str,
    rows: list[ChannelRow],
    assigned: dict[str, int],
    shares: dict[str, float],
    has_conversions: bool,
) -> ChannelReport:
    if kind == "social":
        basis = "impressions"
        for row in rows:
            row.exposures = row.impressions
    else:
        basis = DELIVERED if any(row.delivered for row in rows) else "sent"
        for row in rows:
            row.exposures = row.delivered if basis == DELIVERED else row.sent
    measurable = bool(rows) and all(row.exposures is not None for row in rows)
    clicks = _analyse(rows, "clicks", assigned, shares) if measurable else None
    conversions = _analyse(rows, "conversions", assigned, shares) if measurable and has_conversions else None
    primary = conversions if has_conversions else clicks
    if primary is not None:
        verdict = primary.verdict
    elif kind == "social" and rows and all(row.social and row.impressions is None for row in rows):
        # Bluesky and Mastodon publish engagement counts but no impressions: nothing to divide by
        verdict = Verdict(
            None,
            "This network publishes no impressions: no rates to compare; clicks, conversions and "
            "engagement (likes, reposts, replies) are counted.",
        )
    else:
        verdict = Verdict(
            None, "No exposures measured yet (for a post: collect its impressions with `clarion collect`)."
        )
    return ChannelReport(cid, kind, basis, rows, clicks, conversions, verdict)


def _analyse(
    rows: list[ChannelRow], successes: str, assigned: dict[str, int], shares: dict[str, float]
) -> Analysis | None:
    arms = []
    for row in rows:
        exposures = int(row.exposures or 0)
        conversions = successes == "conversions"
        arms.append(
            Arm(
                name=row.variant,
                exposures=exposures,
                successes=min(row.conversions if conversions else _human(row), exposures),
                revenue=row.revenue if conversions else None,
                revenue_sq=row.revenue_sq if conversions else None,
                assigned=assigned.get(row.variant),
                weight=shares.get(row.variant),
            )
        )
    if not arms:
        return None
    return analyse(arms)


def _human(row: ChannelRow) -> int:
    """The clicks a verdict is on: people's, not scanners' (every click when none were classified)."""
    return row.clicks if row.human_clicks is None else row.human_clicks


def _overall(
    variants: list[str], assigned: dict[str, int], shares: dict[str, float], engagement: Engagement
) -> Overall:
    arms_order = ([HOLDOUT] if HOLDOUT in assigned else []) + [v for v in variants if v in assigned]
    arms = []
    for arm in arms_order:
        people, _count, revenue, squares = engagement.arm_conversions.get(arm, (0, 0, 0, 0))
        arms.append(
            Arm(
                name=arm,
                exposures=assigned[arm],
                successes=people,
                revenue=revenue / 100,
                revenue_sq=squares / 10_000,
                assigned=assigned[arm],
                weight=shares.get(arm),
            )
        )
    if not arms:
        return Overall(None, None)
    return Overall(arms[0].name, analyse(arms))


def _currency(engagement: Engagement) -> str | None:
    if len(engagement.currencies) > 1:
        return "mixed: " + ", ".join(sorted(engagement.currencies))
    return next(iter(engagement.currencies), None)


def _timeline(engagement: Engagement) -> Timeline:
    """Cumulative clicks and conversions over time, in at most TIMELINE_POINTS steps, from the launch
    (the first click or conversion for a run that has no launch recorded)."""
    times = [t for _c, _v, t in engagement.click_times] + [t for _a, _c, t, _m in engagement.conversion_times]
    if not times:
        return Timeline()
    start, end = min(times), max(times)
    if engagement.launch is not None:
        start = min(engagement.launch, start)
    span = max((end - start).total_seconds(), 1.0)
    step = span / TIMELINE_POINTS

    def bucket(at: datetime) -> int:
        return min(int((at - start).total_seconds() / step), TIMELINE_POINTS - 1)

    clicks = Counter(bucket(t) for _c, _v, t in engagement.click_times)
    conversions = Counter(bucket(t) for _a, _c, t, _m in engagement.conversion_times)
    points, total_clicks, total_conversions = [], 0, 0
    for i in range(TIMELINE_POINTS):
        total_clicks += clicks.get(i, 0)
        total_conversions += conversions.get(i, 0)
        points.append(TimelinePoint(round((i + 1) * step, 1), total_clicks, total_conversions))
    return Timeline(start.isoformat(timespec="seconds"), points)
