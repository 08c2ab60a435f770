"""The report's experiment section: conversions outside the attribution window kept apart, scanners'
clicks apart from people's (and out of the verdicts), each channel's incrementality from its holdout, the
always-valid reading; in JSON, the terminal and the HTML page."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from rich.console import Console

from clarion.analysis.report import build_report
from clarion.analysis.report.formats import terminal
from clarion.analysis.report.html import render_html
from clarion.base.settings import ClarionSettings
from clarion.campaign.loader import load_campaign
from clarion.engine.plan import plan_run
from clarion.ledger import Click, Conversion, Ledger, ProviderEvent, SendState, Settlement
from tests.flows.conftest import CAMPAIGN, write_campaign

RUN = "report-experiment-20261203t120000-beef"
HOLDOUTS = "  channel_holdouts: {sms: 0.3, email: 0.2}\n"


@pytest.fixture
def run(tmp_path: Path) -> Ledger:
    text = CAMPAIGN.replace("  holdout: 0.05\n", "  holdout: 0.05\n" + HOLDOUTS)
    ledger = Ledger(ClarionSettings().ledger_url())
    ledger.migrate()
    plan_run(ledger, load_campaign(write_campaign(tmp_path, 600, text)), RUN)
    for channel in ("email", "sms"):
        for batch in ledger.batches(RUN, channel):
            rows = ledger.pending(RUN, channel, batch)
            ledger.begin(RUN, channel, [r.recipient for r in rows])
            ledger.settle(RUN, channel, [Settlement(r.recipient, SendState.SENT, f"p-{r.id}") for r in rows])
    return ledger


def test_the_experiment_section(run: Ledger) -> None:
    ledger = run
    reach = ledger.reach_times(RUN)
    assert reach.launch is not None
    emailed = [r for r in ledger.sends(RUN, "email") if r.state == SendState.SENT]
    clicks: list[Click] = []
    events: list[ProviderEvent] = []
    for row in emailed[:40]:  # delivered, then: 20 scanners on delivery, 20 people a minute later
        at = reach.first[row.seq]
        events.append(ProviderEvent(f"d{row.seq}", RUN, "email", row.variant, row.seq, "delivered", at))
        if row.seq % 2:
            clicks.append(Click(RUN, "email", row.variant, row.seq, at + timedelta(seconds=2)))
        else:
            clicks.append(Click(RUN, "email", row.variant, row.seq, at + timedelta(seconds=61)))
    bot = emailed[41]
    clicks.append(
        Click(RUN, "email", bot.variant, bot.seq, reach.launch, automated="scanner_agent", agent="Mimecast")
    )
    first = emailed[0]
    start = reach.first[first.seq]
    conversions = [
        Conversion(
            RUN, "import", "early", first.variant, 5000, "USD", start - timedelta(days=2), None, first.seq
        ),
        Conversion(
            RUN, "import", "late", first.variant, 7000, "USD", start + timedelta(days=9), None, first.seq
        ),
        Conversion(
            RUN, "import", "in", first.variant, 2500, "USD", start + timedelta(hours=3), None, first.seq
        ),
    ]
    ledger.record(clicks, events, conversions)

    report = build_report(ledger, RUN)
    data = json.loads(json.dumps(report.as_dict(), allow_nan=False))
    section = data["experiment"]
    attribution = section["attribution"]
    assert (attribution["counted"], attribution["before"], attribution["after"]) == (1, 1, 1)
    assert attribution["before_revenue"] == 50.0 and attribution["after_revenue"] == 70.0
    assert {row["why"] for row in attribution["listed"]} == {"before", "after"}
    assert data["timeline"]["start"] == reach.launch.isoformat(
        timespec="seconds"
    )  # the axis starts at the launch

    email = {(c["variant"]): c for c in section["clicks"] if c["channel"] == "email"}
    assert sum(c["clicks"] for c in email.values()) == 41
    assert sum(c["human"] for c in email.values()) == 20
    assert sum(c["automated"] for c in email.values()) == 21
    reasons: dict[str, int] = {}
    for c in email.values():
        for k, v in c["reasons"].items():
            reasons[k] = reasons.get(k, 0) + v
    assert reasons == {"fast_click": 20, "scanner_agent": 1}
    rows = {r["variant"]: r for c in data["channels"] if c["channel"] == "email" for r in c["rows"]}
    assert sum(r["human_clicks"] for r in rows.values()) == 20
    arms = {a["name"]: a for c in data["channels"] if c["channel"] == "email" for a in c["clicks"]["arms"]}
    assert sum(a["successes"] for a in arms.values()) == 20  # the verdict counts people only

    lifts = {lift["channel"]: lift for lift in section["incrementality"]}
    assert set(lifts) == {"sms", "email"}
    sms = lifts["sms"]
    groups = ledger.channel_groups(RUN, ["sms"])["sms"]
    assert sms["withheld"]["contacts"] == sum(1 for m in groups if m.withheld) > 0
    assert sms["exposed"]["contacts"] + sms["withheld"]["contacts"] == len(groups)
    sequential = section["sequential"]
    assert sequential is not None and sequential["baseline"] == "holdout"
    assert "always" in sequential["text"].lower() or "does not decide" in sequential["text"]

    touches = {t["channel"]: t for t in section["touches"]}
    # the one counted conversion, 3 h after the first send of a contact whose click (if any) was 2 s after
    # delivery (a scanner) or 61 s (a person): credited to email when a person clicked, else to no click
    assert sum(t["first"] for t in touches.values()) == 1
    expected = "email" if first.seq % 2 == 0 else None
    assert touches[expected]["any"] == 1

    page = render_html(report)
    for anchor in (
        'id="attribution"',
        'id="clicks"',
        'id="incrementality"',
        'id="touches"',
        "after the window",
    ):
        assert anchor in page
    console = Console(record=True, width=200)
    console.print(terminal(report))
    text = console.export_text()
    assert "Clicks: people and machines" in text and "Each channel's own effect" in text
    assert "Not counted: 1 made before the contact's first send" in text
