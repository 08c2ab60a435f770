"""The experiment-validity section in the terminal (the HTML page has its own template,
report_experiment.html.j2; JSON is `ExperimentSection.as_dict()`)."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from clarion.analysis.report.bandit import BanditSection
from clarion.analysis.report.experiment import ExperimentSection


def _pts(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:+.2f}"


def _money(value: float | None) -> str:
    return "–" if value is None else f"{value:+,.2f}"


def experiment_terminal(section: ExperimentSection) -> list[Any]:
    parts: list[Any] = [Text("Attribution: " + section.attribution.text)]
    if section.attribution.listed:
        table = Table(title="Conversions outside the attribution window (kept, not counted)")
        for name in ("arm", "channel", "contact", "at", "window opened", "amount", "why"):
            table.add_column(name)
        for row in section.attribution.listed:
            table.add_row(
                Text(row.arm),
                Text(row.channel or "–"),
                "–" if row.contact_seq is None else str(row.contact_seq),
                row.at,
                row.start or "nothing sent yet",
                f"{row.amount:,.2f} {row.currency}",
                "before first send" if row.why == "before" else "after the window",
            )
        parts.append(table)
    if section.clicks:
        table = Table(title="Clicks: people and machines (verdicts use people's)")
        for name in ("channel", "variant", "clicked", "human", "automated", "automated requests by rule"):
            table.add_column(name, justify="left" if name in ("channel", "variant") else "right")
        for split in section.clicks:
            reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(split.reasons.items())) or "–"
            table.add_row(
                Text(split.channel),
                Text(split.variant),
                f"{split.clicks:,}",
                f"{split.human:,}",
                f"{split.automated:,}",
                reasons,
            )
        parts.append(table)
    if section.incrementality:
        table = Table(title="Each channel's own effect (channel holdouts; conversions from any route)")
        for name in (
            "channel",
            "sent / withheld",
            "conv. rate sent",
            "conv. rate withheld",
            "lift, pts (95% CI)",
            "incremental conv.",
            "revenue/contact lift (95% CI)",
            "p (Holm)",
        ):
            table.add_column(name, justify="left" if name == "channel" else "right")
        for lift in section.incrementality:
            table.add_row(
                Text(lift.channel),
                f"{lift.exposed.contacts:,} / {lift.withheld.contacts:,}",
                "–" if lift.exposed.rate is None else f"{lift.exposed.rate:.2%}",
                "–" if lift.withheld.rate is None else f"{lift.withheld.rate:.2%}",
                f"{_pts(lift.lift)} ({_pts(lift.lift_low)} to {_pts(lift.lift_high)})",
                "–" if lift.incremental_conversions is None else f"{lift.incremental_conversions:+,.0f}",
                f"{_money(lift.revenue_lift)} "
                f"({_money(lift.revenue_lift_low)} to {_money(lift.revenue_lift_high)})",
                "–" if lift.p_adjusted is None else f"{lift.p_adjusted:.3g}",
            )
        parts.append(table)
        parts.extend(Text("→ " + lift.text) for lift in section.incrementality)
    if section.touches:
        table = Table(title="Touches before converting (descriptive: credit, not cause)")
        for name in ("channel", "first touch", "last touch", "any touch"):
            table.add_column(name, justify="left" if name == "channel" else "right")
        for touch in section.touches:
            table.add_row(
                Text(touch.channel or "no click before converting"),
                f"{touch.first:,}",
                f"{touch.last:,}",
                f"{touch.any:,}",
            )
        parts.append(table)
    if section.sequential is not None:
        parts.append(Text("Read live: " + section.sequential.text))
    if section.bandit is not None:
        parts.extend(_bandit(section.bandit))
    return parts


def _bandit(bandit: BanditSection) -> list[Any]:
    table = Table(title="Thompson waves: each allocated by the arms' posterior probability of being best")
    for name in ("wave", "run", "arm", "share", "P(best)", "drawn from", "contacts", "uniform share"):
        table.add_column(name, justify="left" if name in ("wave", "run", "arm") else "right")
    for wave in bandit.waves:
        for i, arm in enumerate(wave.arms):
            first = i == 0
            table.add_row(
                str(wave.wave) if first else "",
                Text(wave.run_id) if first else "",
                Text(arm),
                f"{wave.shares[i]:.1%}",
                f"{wave.prob_best[i]:.3f}",
                f"{wave.successes[i]:,}/{wave.exposures[i]:,}" if i < len(wave.exposures) else "–",
                f"{wave.per_arm.get(arm, 0):,}",
                f"{wave.uniform_contacts:,} of {wave.contacts:,}" if first else "",
            )
    uniform = Table(title="Lift from the uniform share only (the unbiased comparison)")
    for name in ("arm", "contacts", "successes", "rate (95% CI)", "lift, pts (95% CI)", "p (Holm)"):
        uniform.add_column(name, justify="left" if name == "arm" else "right")
    lifts = {c.name: c for c in bandit.uniform.comparisons}
    for stats in bandit.uniform.arms:
        lift = lifts.get(stats.name)
        uniform.add_row(
            Text(stats.name),
            f"{stats.exposures:,}",
            f"{stats.successes:,}",
            "–"
            if stats.rate is None
            else f"{stats.rate:.2%} ({(stats.rate_low or 0):.2%} to {(stats.rate_high or 0):.2%})",
            "–"
            if lift is None
            else f"{_pts(lift.lift_abs)} ({_pts(lift.lift_abs_low)} to {_pts(lift.lift_abs_high)})",
            "–" if lift is None or lift.p_adjusted is None else f"{lift.p_adjusted:.3g}",
        )
    pooled = ", ".join(f"{a.name} {a.successes:,}/{a.exposures:,}" for a in bandit.pooled)
    return [
        table,
        uniform,
        Text("→ " + bandit.text),
        Text(f"Every wave pooled (descriptive, biased by the waves' drift): {pooled}"),
    ]


__all__ = ["experiment_terminal"]
