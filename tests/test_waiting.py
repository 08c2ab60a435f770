"""What a run waits for, as the progress display, `clarion status` and the console say it: deferred texts
until when (UTC and the recipient's local time), steps not yet due, an approval nobody gave yet."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from rich.console import Console

from clarion.base.settings import ClarionSettings
from clarion.campaign.loader import load_campaign
from clarion.cli.runner import LedgerProgress
from clarion.engine.plan import plan_run
from clarion.engine.schedule import LAUNCHED
from clarion.engine.waiting import Explainer
from clarion.ledger import Ledger, RunStatus
from tests.conftest import CAMPAIGN, CampaignDir

STEPS = (
    CAMPAIGN
    + """\
steps:
  - {name: launch, after: 0s, channels: [x, email]}
  - {name: reminder, after: 2h, channels: [sms]}
approval: {required: true, approvers: [ana, bob], timeout: 30m}
"""
)


def _planned(campaign_dir: CampaignDir, run_id: str) -> Ledger:
    ledger = Ledger(ClarionSettings().ledger_url())
    ledger.migrate()
    plan_run(ledger, load_campaign(campaign_dir.campaign(STEPS)), run_id)
    return ledger


def test_deferred_texts_say_until_when_in_utc_and_in_the_recipients_zone(campaign_dir: CampaignDir) -> None:
    ledger = _planned(campaign_dir, "wait-1")
    now = datetime(2026, 12, 3, 13, 33, tzinfo=UTC)
    new_york = datetime(2026, 12, 4, 13, 0, tzinfo=UTC)  # 08:00 in New York
    los_angeles = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)  # 08:00 in Los Angeles
    ledger.defer("wait-1", "sms", [("c-002", new_york), ("c-003", new_york), ("c-001", los_angeles)])
    waits = Explainer(ledger).explain("wait-1", now)
    assert waits.deferred_count("sms") == 3
    first, second = waits.deferred["sms"]
    assert (first.count, first.due, first.local) == (2, new_york, "08:00 America/New_York")
    assert (second.count, second.local) == (1, "08:00 America/Los_Angeles")
    assert waits.channel_text("sms") == (
        "deferred 3: 2 until 2026-12-04 13:00 UTC (08:00 America/New_York); "
        "1 until 2026-12-04 16:00 UTC (08:00 America/Los_Angeles)"
    )
    assert Explainer(ledger).explain("wait-1", los_angeles + timedelta(seconds=1)).deferred == {}


def test_steps_not_yet_due_and_an_approval_nobody_gave(campaign_dir: CampaignDir) -> None:
    ledger = _planned(campaign_dir, "wait-2")
    launched = datetime(2026, 12, 3, 20, 0, tzinfo=UTC)
    ledger.decide("wait-2", LAUNCHED, launched.isoformat())
    ledger.decide("wait-2", "wave:launch", launched.isoformat())
    ledger.set_run_status("wait-2", RunStatus.RUNNING)
    waits = Explainer(ledger).explain("wait-2", launched + timedelta(minutes=2))
    [step] = waits.steps
    assert (step.name, step.channels, step.due) == ("reminder", ("sms",), launched + timedelta(hours=2))
    assert "step reminder (sms) due 2026-12-03 22:00:00 UTC, in 1h 58m" in waits.lines(
        launched + timedelta(minutes=2)
    )
    assert waits.approval is None

    ledger.set_run_status("wait-2", RunStatus.AWAITING_APPROVAL)
    asked = datetime(2026, 12, 3, 19, 55, tzinfo=UTC)
    ledger.note("wait-2", "approval_request", {"asked_at": asked.isoformat()})
    waits = Explainer(ledger).explain("wait-2")
    assert waits.approval is not None and waits.approval.approvers == ("ana", "bob")
    assert waits.approval.expires == asked + timedelta(minutes=30)
    assert waits.lines()[0] == (
        "waiting for approval by ana, bob, until 20:25 UTC: clarion approve wait-2 --as NAME (or the console)"
    )
    assert waits.as_dict()["approval"]["approvers"] == ["ana", "bob"]


def test_the_progress_display_shows_deferrals_beside_the_bar(campaign_dir: CampaignDir) -> None:
    ledger = _planned(campaign_dir, "wait-3")
    due = datetime.now(UTC) + timedelta(hours=3)
    ledger.defer("wait-3", "sms", [("c-002", due)])
    screen = io.StringIO()
    display = LedgerProgress("wait-3", Console(file=screen, width=200, force_terminal=False))
    display.refresh(explain=True)
    display.progress.start()
    display.progress.stop()
    text = screen.getvalue()
    assert "deferred 1: 1 until" in text and "(" in text and "America/New_York)" in text
