"""`clarion validate` states the power of the planned comparisons and warns when a holdout cannot detect
the lift the organiser hopes for (a warning: the campaign is still valid)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from clarion.cli.main import app
from tests.conftest import CAMPAIGN, CampaignDir

EXAMPLE = Path(__file__).parent.parent / "examples" / "debate-night" / "campaign.yaml"


def test_the_demos_holdout_is_too_small_and_validate_says_what_is_needed() -> None:
    result = CliRunner().invoke(app, ["validate", str(EXAMPLE)])
    assert result.exit_code == 0, result.stderr
    assert "valid" in result.stdout
    assert "power: social-proof vs urgent" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: power:")]
    assert any("vs holdout (" in w and "too small for the hoped-for 0.40 pts" in w for w in warnings)
    assert any(w.startswith("warning: power: sms sent vs sms withheld") for w in warnings)
    assert all("in holdout at this split" in w for w in warnings if "vs holdout" in w)


def test_without_expectations_validate_says_how_to_get_the_power(campaign_dir: CampaignDir) -> None:
    path = campaign_dir.campaign(CAMPAIGN.replace("  holdout: 0\n", "  holdout: 0.1\n"))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.stderr
    assert "give experiment.expected" in result.stdout


def test_the_approval_preview_warns_about_an_underpowered_holdout() -> None:
    from clarion.analysis.design import plan_power
    from clarion.engine.preflight import preview_markdown

    checks = plan_power({"holdout": 190, "a": 4900}, ["a"], {}, 0.005, 0.004)
    request = {
        "run_id": "r",
        "campaign": "c",
        "checks": [],
        "arms": {"holdout": 190, "a": 4900},
        "skipped": {},
        "messages": [],
        "kits": [],
        "power": [c.as_dict() for c in checks],
    }
    text = preview_markdown(request)
    assert "## Power (80%, two-sided 5%)" in text
    assert "- **WARNING**: a vs holdout (4,900 vs 190 contacts)" in text
    assert "in holdout at this split" in text
