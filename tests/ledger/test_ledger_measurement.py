"""What the experiment's analysis reads from the ledger: reach times, the attribution window, channel
holdout groups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from clarion.campaign.loader import load_campaign
from clarion.engine.plan import plan_run
from clarion.ledger import Click, Conversion, Ledger, ProviderEvent, SendState, Settlement
from tests.conftest import CAMPAIGN, CampaignDir

EXAMPLE = Path(__file__).parents[2] / "examples/debate-night/campaign.yaml"
RUN = "test-appeal-20261203t120000-ab12"
CONTACTS = "id,email,phone,first_name,timezone,persona,sms_consent\n" + "".join(
    f"c-{i:03d},p{i}@example.org,+1415555{i:04d},P{i},America/New_York,cfo,yes\n" for i in range(60)
)


def sent(ledger: Ledger, channel: str) -> None:
    for batch in ledger.batches(RUN, channel):
        rows = ledger.pending(RUN, channel, batch)
        ledger.begin(RUN, channel, [r.recipient for r in rows])
        ledger.settle(RUN, channel, [Settlement(r.recipient, SendState.SENT, f"p-{r.id}") for r in rows])


def test_conversions_count_only_inside_the_window_from_each_contacts_first_send(
    ledger: Ledger, campaign_dir: CampaignDir
) -> None:
    text = CAMPAIGN.replace("  holdout: 0\n", "  holdout: 0.3\n") + "attribution:\n  window: 2d\n"
    plan_run(ledger, load_campaign(campaign_dir.campaign(text, CONTACTS)), RUN)
    sent(ledger, "sms")
    reach = ledger.reach_times(RUN)
    assert reach.launch is not None and reach.first
    seq, first = next(iter(reach.first.items()))
    holdout = next(s for s, arm in ledger.arms_of(RUN, range(60)).items() if arm == "holdout")
    rows = [
        Conversion(RUN, "import", "before", "a", 500, "USD", first - timedelta(hours=1), None, seq),
        Conversion(RUN, "import", "inside", "a", 700, "USD", first + timedelta(days=1), None, seq),
        Conversion(RUN, "import", "after", "a", 900, "USD", first + timedelta(days=3), None, seq),
        Conversion(RUN, "import", "skew", "a", 100, "USD", first - timedelta(seconds=2), None, seq),
        Conversion(
            RUN, "import", "holdout", "holdout", 300, "USD", reach.launch + timedelta(hours=5), None, holdout
        ),
    ]
    ledger.record(conversion_rows=rows)
    found = ledger.engagement(RUN, timedelta(days=2))
    assert {o.why: o.amount_minor for o in found.outside} == {"before": 500, "after": 900}
    assert found.per_contact[seq] == (2, 800)  # inside, and the one within the clock-skew allowance
    assert found.per_contact[holdout] == (1, 300)  # the holdout's window opens at the launch
    assert found.launch == reach.launch
    # without a window (older callers), everything counts, as before
    assert len(ledger.engagement(RUN).conversion_times) == 5


def test_nothing_sent_yet_means_no_conversion_counts(ledger: Ledger, campaign_dir: CampaignDir) -> None:
    plan_run(ledger, load_campaign(campaign_dir.campaign(contacts=CONTACTS)), RUN)
    now = datetime.now(UTC)
    ledger.record(conversion_rows=[Conversion(RUN, "import", "x", "a", 100, "USD", now, None, 0)])
    found = ledger.engagement(RUN, timedelta(days=7))
    assert found.launch is None and [o.why for o in found.outside] == ["before"]


def test_channel_holdouts_are_planned_as_skips_and_read_back_as_groups(
    ledger: Ledger, campaign_dir: CampaignDir
) -> None:
    text = CAMPAIGN.replace("  holdout: 0\n", "  holdout: 0\n  channel_holdouts: {sms: 0.5}\n")
    plan_run(ledger, load_campaign(campaign_dir.campaign(text, CONTACTS)), RUN)
    groups = ledger.channel_groups(RUN, ["sms"])["sms"]
    withheld = {m.seq for m in groups if m.withheld}
    assert withheld and len(withheld) < len(groups)
    # what the approval's power reads, counted by the database: the same groups
    sizes = ledger.channel_group_sizes(RUN, ["sms", "email"])
    assert sizes == {"sms": (len(groups) - len(withheld), len(withheld)), "email": (60, 0)}
    skipped = {r.seq for r in ledger.sends(RUN) if r.channel == "sms" and r.reason == "channel_holdout"}
    assert skipped == withheld
    emailed = {r.seq for r in ledger.sends(RUN) if r.channel == "email" and r.state == SendState.PLANNED}
    assert withheld & emailed  # withheld from SMS only: email still goes to them
    run = ledger.get_run(RUN)
    assert run is not None and run.options["channel_holdouts"] == {"sms": 0.5}


def test_a_refund_follows_its_gift_through_the_window(ledger: Ledger, campaign_dir: CampaignDir) -> None:
    # A gift inside the window refunded after it is undone (the supporter gave nothing in the end); a gift
    # made before the send and refunded inside the window is neither counted nor undone twice.
    text = CAMPAIGN + "attribution:\n  window: 2d\n"
    plan_run(ledger, load_campaign(campaign_dir.campaign(text, CONTACTS)), RUN)
    sent(ledger, "sms")
    reach = ledger.reach_times(RUN)
    (one, first), (two, _) = list(reach.first.items())[:2]
    day = timedelta(days=1)
    rows = [
        Conversion(RUN, "webhook", "g1", "a", 700, "USD", first + day, None, one),
        Conversion(RUN, "webhook", "r1", "a", -700, "USD", first + 5 * day, None, one, "refund", "g1"),
        Conversion(RUN, "webhook", "g2", "a", 400, "USD", first - day, None, two),
        Conversion(RUN, "webhook", "r2", "a", -400, "USD", first + day / 2, None, two, "refund", "g2"),
        Conversion(RUN, "webhook", "g3", "a", 900, "USD", first + day / 4, None, two),
    ]
    ledger.record(conversion_rows=rows)
    found = ledger.engagement(RUN, timedelta(days=2))
    assert one not in found.per_contact and one not in found.first_conversion
    assert found.per_contact[two] == (1, 900)
    assert [(o.why, o.amount_minor) for o in found.outside] == [("before", 400)]


def test_only_the_messages_that_matter_are_read_per_contact(
    ledger: Ledger, campaign_dir: CampaignDir
) -> None:
    # The click rules read delivery times only for messages whose links were requested, and the window only
    # the first sends of contacts who converted: a report's memory follows its engagement, not its audience.
    plan_run(ledger, load_campaign(campaign_dir.campaign(contacts=CONTACTS)), RUN)
    sent(ledger, "sms")
    sent(ledger, "email")
    everyone = ledger.reach_times(RUN)
    assert len(everyone.first) == 60
    (clicked, first), (delivered, _), (converted, _) = list(everyone.first.items())[:3]
    variants = {r.seq: r.variant for r in ledger.sends(RUN) if r.channel == "sms"}
    late = first + timedelta(minutes=3)
    ledger.record(
        click_rows=[
            Click(RUN, "sms", variants[clicked], clicked, first + timedelta(minutes=5)),
            Click(RUN, "sms", variants[delivered], delivered, first + timedelta(minutes=5)),
        ],
        event_rows=[
            ProviderEvent("ev-1", RUN, "sms", variants[delivered], delivered, "delivered", late),
            ProviderEvent("ev-2", RUN, "sms", variants[converted], converted, "delivered", late),
        ],
        conversion_rows=[Conversion(RUN, "import", "g1", "a", 500, "USD", late, None, converted)],
    )
    times = ledger.delivered_times(RUN)
    assert set(times) == {("sms", clicked), ("sms", delivered)}
    assert times[("sms", delivered)] == late  # the provider's delivered event before its acceptance
    assert times[("sms", clicked)] <= first + timedelta(seconds=5)
    found = ledger.engagement(RUN, timedelta(days=2))
    assert found.per_contact == {converted: (1, 500)} and found.launch == everyone.launch
    assert ledger.launch_time(RUN) == everyone.launch


def test_the_approval_request_states_the_power_of_the_planned_channel_holdout(ledger: Ledger) -> None:
    from clarion.engine.context import RunContext
    from clarion.engine.preflight import approval_request
    from clarion.engine.schedule import utcnow

    loaded = load_campaign(EXAMPLE)
    plan_run(ledger, loaded, RUN)
    request = approval_request(RunContext(ledger, loaded, RUN), [], utcnow())
    members = ledger.channel_groups(RUN, ["sms"])["sms"]
    withheld = sum(1 for m in members if m.withheld)
    assert 0 < withheld < len(members)
    [sms] = [c for c in request["power"] if c["text"].startswith("sms sent vs sms withheld")]
    assert f"({len(members) - withheld:,} vs {withheld:,} contacts)" in sms["text"]
