"""The comparison of a run as Prefect artifacts (a table and a markdown page), so it shows in the Prefect UI.

Published at the end of the launch flow (clicks and conversions are still to come then) and by every
collect run, which keeps the UI's copy current while the campaign is live.
"""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from clarion.ledger import Ledger


def artifact_key(prefix: str, run_id: str) -> str:
    """Artifact keys are lowercase letters, digits and dashes."""
    return "".join(c if c.isalnum() else "-" for c in f"{prefix}-{run_id}".lower())[:100]


def publish_report(ledger: Ledger, run_id: str) -> dict[str, object]:
    # imported here: the statistics load scipy, which a launch does not need until it ends (every second
    # of import is a second between an event and the first message)
    from clarion.analysis.report import build_report
    from clarion.analysis.report.formats import flat_rows, interval, pct

    report = build_report(ledger, run_id)
    rows = flat_rows(report)
    create_table_artifact(
        key=artifact_key("report", run_id),
        table=[{k: v for k, v in row.items() if k != "verdict"} for row in rows],
        description=f"Clarion run {run_id}: comparison per channel x variant",
    )
    lines = [f"# {report['run']['campaign']}: {run_id}", ""]
    for channel in report["channels"]:
        lines.append(f"## {channel['channel']} ({channel['kind']}, exposures = {channel['exposure_basis']})")
        lines.append("")
        lines.append("| variant | exposures | clicks | click rate | conversions | conversion rate |")
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: |")
        for row in (r for r in rows if r["channel"] == channel["channel"]):
            lines.append(
                f"| {row['variant']} | {row['exposures'] or 0:,} | {row['clicks']:,} | "
                f"{pct(row['click_rate'])} ({interval(row['click_rate_low'], row['click_rate_high'])}) | "
                f"{row['conversions']:,} | {pct(row['conversion_rate'], 2)} |"
            )
        lines += ["", f"**{channel['verdict']['text']}**", ""]
    overall = report["overall"].get("analysis")
    if overall:
        lines += [
            f"## All channels, per arm (baseline: {report['overall']['baseline']})",
            "",
            overall["verdict"]["text"],
        ]
    create_markdown_artifact(
        key=artifact_key("verdicts", run_id),
        markdown="\n".join(lines) + "\n",
        description=f"Clarion run {run_id}: verdicts",
    )
    return report
