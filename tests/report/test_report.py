"""`clarion report`: the numbers per channel x variant are the ledger's, the verdicts follow the statistics."""

from __future__ import annotations

import csv
import io
import json

from typer.testing import CliRunner

from clarion.analysis.report import build_report
from clarion.analysis.report.formats import safe_cell
from clarion.cli.main import app
from tests.report.conftest import IMPRESSIONS, RUN, Simulated

runner = CliRunner()


def rows_by_key(report: dict) -> dict[tuple[str, str], dict]:  # type: ignore[type-arg]
    return {(c["channel"], r["variant"]): r for c in report["channels"] for r in c["rows"]}


def test_counts_per_channel_and_variant_are_the_ledgers(simulated: Simulated) -> None:
    report = build_report(simulated.ledger, RUN).as_dict()  # what --json prints
    rows = rows_by_key(report)
    for channel in ("email", "sms"):
        for variant in ("a", "b"):
            row = rows[(channel, variant)]
            assert row["sent"] == simulated.sent[(channel, variant)]
            assert row["exposures"] == row["delivered"] == simulated.delivered[(channel, variant)]
            assert row["clicks"] == simulated.clickers[(channel, variant)]
            assert row["total_clicks"] == 2 * simulated.clickers[(channel, variant)]
            assert row["conversions"] == simulated.converters[(channel, variant)]
            assert row["revenue"] == simulated.revenue[(channel, variant)] / 100
    for variant in ("a", "b"):
        assert rows[("x", variant)]["exposures"] == IMPRESSIONS[variant]
        assert rows[("x", variant)]["clicks"] == simulated.clickers[("x", variant)]
    bases = {c["channel"]: c["exposure_basis"] for c in report["channels"]}
    assert bases == {"x": "impressions", "email": "delivered", "sms": "delivered"}


def test_rates_and_intervals_are_computed_on_the_exposures(simulated: Simulated) -> None:
    report = build_report(simulated.ledger, RUN).as_dict()  # what --json prints
    email = next(c for c in report["channels"] if c["channel"] == "email")
    arms = {a["name"]: a for a in email["clicks"]["arms"]}
    for variant in ("a", "b"):
        rate = simulated.clickers[("email", variant)] / simulated.delivered[("email", variant)]
        assert abs(arms[variant]["rate"] - rate) < 1e-12
        assert arms[variant]["rate_low"] < rate < arms[variant]["rate_high"]


def test_the_clearly_better_variant_is_named_and_the_tie_is_not(simulated: Simulated) -> None:
    report = build_report(simulated.ledger, RUN).as_dict()  # what --json prints
    verdicts = {c["channel"]: c["verdict"] for c in report["channels"]}
    assert report["metric"] == "conversion_rate"
    assert verdicts["email"]["winner"] == "b"
    assert verdicts["sms"]["winner"] is None
    assert "not decide" in verdicts["sms"]["text"] or "do not" in verdicts["sms"]["text"]


def test_the_typed_report_and_its_json_agree(simulated: Simulated) -> None:
    report = build_report(simulated.ledger, RUN)
    data = report.as_dict()
    email = next(c for c in report.channels if c.channel == "email")
    assert email.verdict.winner == data["channels"][1]["verdict"]["winner"] == "b"
    assert email.primary is email.conversions
    assert [row.variant for row in email.rows] == ["a", "b"]
    assert report.overall.baseline == "holdout"


def test_the_overall_comparison_is_per_arm_against_the_holdout(simulated: Simulated) -> None:
    overall = build_report(simulated.ledger, RUN).as_dict()["overall"]
    assert overall["baseline"] == "holdout"
    arms = {a["name"]: a for a in overall["analysis"]["arms"]}
    assert set(arms) == {"holdout", "a", "b"}
    for arm, entry in arms.items():
        assert entry["exposures"] == simulated.assigned[arm]
        assert entry["successes"] == simulated.arm_people[arm]


def test_report_formats_through_the_cli(simulated: Simulated, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(app, ["report", "latest", "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["run"]["id"] == RUN
    result = runner.invoke(app, ["report", RUN, "--csv"])
    assert result.exit_code == 0, result.stderr
    table = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(table) == 6
    email_b = next(r for r in table if (r["channel"], r["variant"]) == ("email", "b"))
    assert int(email_b["exposures"]) == simulated.delivered[("email", "b")]
    result = runner.invoke(app, ["report", RUN])
    assert result.exit_code == 0
    assert "email" in result.stdout and "holdout" in result.stdout


def test_an_unknown_run_is_a_clear_error(simulated: Simulated) -> None:
    result = runner.invoke(app, ["report", "no-such-run"])
    assert result.exit_code == 1
    assert "no run 'no-such-run' in the ledger" in result.stderr


def test_csv_cells_that_look_like_formulas_are_neutralised() -> None:
    assert safe_cell('=HYPERLINK("http://evil")') == '\'=HYPERLINK("http://evil")'
    for text in ("+1", "-1+1", "@SUM(A1)", "\tx", "\rx"):
        assert safe_cell(text).startswith("'")
    assert safe_cell("b") == "b"
    assert safe_cell(-0.5) == -0.5
    assert safe_cell(None) == ""


def test_status_shows_what_each_channel_sent_and_what_followed(simulated: Simulated) -> None:
    result = runner.invoke(app, ["status", RUN, "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    email = data["channels"]["email"]
    assert email["sent"] == simulated.sent[("email", "a")] + simulated.sent[("email", "b")]
    assert email["delivered"] == simulated.delivered[("email", "a")] + simulated.delivered[("email", "b")]
    assert data["contacts_converted"] == sum(simulated.arm_people.values())
    assert runner.invoke(app, ["status", "latest"]).exit_code == 0
    missing = runner.invoke(app, ["status", "no-such-run"])
    assert missing.exit_code == 1 and "no run 'no-such-run'" in missing.stderr
