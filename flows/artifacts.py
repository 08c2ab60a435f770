"""What a run shows in the Prefect UI: its results per channel x variant, its errors, a rollout's decision,
and the comparison (a table and a markdown page of verdicts).

Published at the end of the launch flow (clicks and conversions are still to come then) and by every
collect run, which keeps the UI's copy current while the campaign is live.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from clarion.engine.schedule import rollout_run_id
from clarion.ledger import Ledger
from clarion.ledger.results import ChannelVariantResult, format_reasons

if TYPE_CHECKING:  # the report's modules load when a run ends, not at import (see publish_report)
    from clarion.analysis.report.model import Report


def artifact_key(prefix: str, run_id: str) -> str:
    """Artifact keys are lowercase letters, digits and dashes."""
    return "".join(c if c.isalnum() else "-" for c in f"{prefix}-{run_id}".lower())[:100]


def publish_report(
    ledger: Ledger, run_id: str, results: Sequence[ChannelVariantResult] | None = None
) -> Report:
    # imported here: the report's modules, which a launch does not need until it ends (every second of
    # import is a second between an event and the first message)
    from dataclasses import asdict

    from clarion.analysis.report import build_report
    from clarion.analysis.report.formats import flat_rows, interval, pct

    report = build_report(ledger, run_id, results)
    rows = flat_rows(report)
    create_table_artifact(
        key=artifact_key("report", run_id),
        table=[{k: v for k, v in asdict(row).items() if k != "verdict"} for row in rows],
        description=f"Clarion run {run_id}: comparison per channel x variant",
    )
    lines = [f"# {report.run.campaign}: {run_id}", ""]
    for channel in report.channels:
        lines.append(f"## {channel.channel} ({channel.kind}, exposures = {channel.exposure_basis})")
        lines.append("")
        lines.append("| variant | exposures | clicks | click rate | conversions | conversion rate |")
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: |")
        for row in (r for r in rows if r.channel == channel.channel):
            lines.append(
                f"| {row.variant} | {row.exposures or 0:,} | {row.clicks:,} | "
                f"{pct(row.click_rate)} ({interval(row.click_rate_low, row.click_rate_high)}) | "
                f"{row.conversions:,} | {pct(row.conversion_rate, 2)} |"
            )
        lines += ["", f"**{channel.verdict.text}**", ""]
    overall = report.overall.analysis
    if overall:
        lines += [f"## All channels, per arm (baseline: {report.overall.baseline})", "", overall.verdict.text]
    create_markdown_artifact(
        key=artifact_key("verdicts", run_id),
        markdown="\n".join(lines) + "\n",
        description=f"Clarion run {run_id}: verdicts",
    )
    return report


def publish_results(
    ledger: Ledger, run_id: str, results: Sequence[ChannelVariantResult], errors: Mapping[str, list[str]]
) -> None:
    """The run's comparison, its results table and, if any channel stopped, why. `results`: the run's
    `run_results` as just read (the comparison uses them too), or none for a run that sent nothing."""
    publish_report(ledger, run_id, results or None)  # none given (a rejected approval): read them
    create_table_artifact(
        key=artifact_key("results", run_id),
        table=[{**r.as_dict(), "reasons": format_reasons(r.reasons)} for r in results],
        description=f"Clarion run {run_id}: per channel x variant",
    )
    if errors:
        lines = "\n".join(f"- **{cid}**: {e}" for cid, errs in errors.items() for e in errs[:5])
        create_markdown_artifact(markdown=f"# Channel errors in {run_id}\n\n{lines}\n")


def publish_rollout(run_id: str, decision: Mapping[str, Any]) -> None:
    verb = "won" if decision["decided"] else "is the fallback"
    create_markdown_artifact(
        key=artifact_key("rollout", run_id),
        markdown=(
            f"# Rollout of {run_id}\n\n**{decision['winner']}** {verb} "
            f"({decision['metric']}).\n\n{decision['text']}\n\n"
            f"The rest of the audience gets {decision['winner']} in run `{rollout_run_id(run_id)}`; "
            "the holdout gets nothing.\n"
        ),
        description=f"Clarion run {run_id}: the rollout's decision",
    )
