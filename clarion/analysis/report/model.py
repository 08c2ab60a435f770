"""The report as typed objects: what `build_report` returns and every format reads (terminal, CSV, HTML,
JSON, the Prefect artifacts). `Report.as_dict()` is the JSON `clarion report --json` prints."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from clarion.analysis.report.experiment import ExperimentSection
from clarion.analysis.stats import Analysis, Verdict


@dataclass(frozen=True)
class RunInfo:
    id: str
    campaign: str
    status: str
    created_at: str
    finished_at: str | None


@dataclass
class ChannelRow:
    """One variant of one channel: what was sent, delivered, clicked and converted."""

    channel: str
    variant: str
    planned: int
    sent: int
    failed: int
    skipped: int
    uncertain: int
    delivered: int
    impressions: int | None  # a social post's, from its metrics
    social: dict[str, int] | None  # a social post's public metrics
    clicks: int  # unique contacts (every click, for a post)
    total_clicks: int
    conversions: int
    revenue: float
    revenue_sq: float = 0.0  # for Welch's test; not shown
    exposures: int | None = None  # what the rates are over: deliveries, sends or impressions
    human_clicks: int | None = None  # of `clicks`, those a person made (clarion.analysis.clicks); verdicts
    automated_clicks: int = 0  # contacts (requests, for a post) whose every click was a scanner's

    def as_dict(self) -> dict[str, Any]:
        found = asdict(self)
        del found["revenue_sq"]
        return found


@dataclass
class ChannelReport:
    channel: str
    kind: str
    exposure_basis: str
    rows: list[ChannelRow]
    clicks: Analysis | None
    conversions: Analysis | None
    verdict: Verdict

    @property
    def primary(self) -> Analysis | None:
        """The analysis the verdict is on: conversions when the run has any, else clicks."""
        return self.conversions or self.clicks

    def as_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "kind": self.kind,
            "exposure_basis": self.exposure_basis,
            "rows": [row.as_dict() for row in self.rows],
            "clicks": self.clicks.to_dict() if self.clicks else None,
            "conversions": self.conversions.to_dict() if self.conversions else None,
            "verdict": asdict(self.verdict),
        }


@dataclass(frozen=True)
class Overall:
    """Every channel together, per arm, against the holdout (or the first variant)."""

    baseline: str | None
    analysis: Analysis | None

    def as_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "analysis": self.analysis.to_dict() if self.analysis else None}


@dataclass(frozen=True)
class TimelinePoint:
    seconds: float
    clicks: int
    conversions: int


@dataclass(frozen=True)
class Timeline:
    start: str | None = None
    points: list[TimelinePoint] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {"points": [asdict(p) for p in self.points]}
        if self.start is not None:
            found = {"start": self.start, **found}
        return found


@dataclass
class Report:
    run: RunInfo
    metric: str  # conversion_rate or click_rate
    currency: str | None
    channels: list[ChannelReport]
    overall: Overall
    timeline: Timeline
    experiment: ExperimentSection | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment.as_dict() if self.experiment else None,
            "run": asdict(self.run),
            "metric": self.metric,
            "currency": self.currency,
            "channels": [c.as_dict() for c in self.channels],
            "overall": self.overall.as_dict(),
            "timeline": self.timeline.as_dict(),
        }


__all__ = ["ChannelReport", "ChannelRow", "Overall", "Report", "RunInfo", "Timeline", "TimelinePoint"]
