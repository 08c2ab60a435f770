"""Opt-outs end to end: people opt out through every path (the email's one-click unsubscribe, a spam report,
an SMS STOP, a STOP only Twilio heard), through the sandbox and the tracking service over real HTTP; the
next campaign skips each of them, with the reason, and sends them nothing."""

from __future__ import annotations

import csv
import textwrap
import threading
from collections import Counter
from pathlib import Path

import pytest

from clarion.base.consent import Kind
from clarion.campaign.loader import load_campaign
from clarion.campaign.model import HOLDOUT
from clarion.cli.runner import engaged
from clarion.flows.launch import launch
from clarion.ledger import Ledger, SendState
from clarion.messages.assign import Assigner
from clarion.sandbox import Sandbox
from tests.flows.conftest import CAMPAIGN, write_campaign

pytestmark = pytest.mark.usefixtures("prefect_server")

OPTING_OUT = """\
seed: 11
channels:
  email: {delivered: 1.0, unsubscribe: 0.2, spam_report: 0.1}
  sms: {delivered: 1.0, stop: 0.25}
  x: {impressions: {default: 0}}
"""


def _reachable(path: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Contacts who get an email, and who get a text (consent given), read independently of the engine."""
    campaign = load_campaign(path).campaign
    assigner = Assigner(campaign.name, campaign.experiment)
    with (path.parent / "contacts.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if assigner.arm(r["id"]) != HOLDOUT]
    return [r for r in rows if r["email"]], [r for r in rows if r["phone"] and r["sms_consent"] == "yes"]


def test_every_opt_out_path_is_honoured_by_the_next_campaign(tmp_path: Path, providers: Sandbox) -> None:
    path = write_campaign(tmp_path, 300)
    emails, texts = _reachable(path)
    twilio_only = texts[0]["phone"]  # replied STOP to Twilio before Clarion's webhook was set up
    providers.set_opted_out([twilio_only])
    engagement = tmp_path / "engagement.yaml"
    engagement.write_text(textwrap.dedent(OPTING_OUT))

    with engaged(providers, engagement) as service:
        launch(str(path), "optout-first")
        stats = providers.wait_engaged(timeout=300)
        already = Ledger.open().suppressed(Kind.SMS)
        late = next(r["phone"] for r in reversed(texts) if r["phone"] not in already)
        answer = providers.reply_sms(
            late,
            "Stop",
            webhook=f"{service}/webhooks/twilio/inbound",
            auth_token=providers.webhook_environment()["TWILIO_AUTH_TOKEN"],
        )
        assert answer.status_code == 200

    assert stats["failures"] == 0, stats
    assert stats["unsubscribes"] > 0 and stats["spam_reports"] > 0 and stats["stops"] > 0, stats
    store = Ledger.open()
    email_out, sms_out = store.suppressed(Kind.EMAIL), store.suppressed(Kind.SMS)
    reasons = Counter(s.reason for s in store.suppressions())
    assert reasons["unsubscribe_link"] == stats["unsubscribes"]
    assert reasons["spam_report"] == stats["spam_reports"]
    assert reasons["sms_stop"] == stats["stops"] + 1  # the simulated replies, and the late one
    assert reasons["twilio_21610"] == 1 and twilio_only in sms_out
    [refused] = [r for r in store.sends("optout-first", "sms") if r.state is SendState.FAILED]
    assert refused.error is not None and "21610" in refused.error

    providers.reset()
    launch(str(path), "optout-second")  # the next campaign, to the same audience

    sent_to = Counter(m["to"] for m in providers.messages("sendgrid") + providers.messages("twilio"))
    assert not any(sent_to[a] for a in email_out | sms_out), "someone who opted out got a message"
    assert sent_to == Counter(
        [r["email"] for r in emails if r["email"].lower() not in email_out]
        + [r["phone"] for r in texts if r["phone"] not in sms_out]
    )
    skipped = Counter(
        (r.channel, r.reason) for r in store.sends("optout-second") if r.state is SendState.SKIPPED
    )
    assert skipped[("email", "suppressed")] == len(email_out) > 0
    assert skipped[("sms", "suppressed")] == len(sms_out) > 0


def test_a_stop_between_the_launch_and_a_later_step_stops_the_step(
    tmp_path: Path, providers: Sandbox
) -> None:
    steps = "steps:\n  - {name: now, after: 0s, channels: [x, email]}\n  - {name: later, after: 3s, channels: [sms]}\n"
    path = write_campaign(tmp_path, 40, CAMPAIGN + steps)
    _, texts = _reachable(path)
    quitter = texts[0]["phone"]
    quiet = tmp_path / "quiet.yaml"
    quiet.write_text("channels: {}\n")
    with engaged(providers, quiet) as service:

        def stop_soon() -> None:
            providers.reply_sms(
                quitter,
                "STOP",
                webhook=f"{service}/webhooks/twilio/inbound",
                auth_token=providers.webhook_environment()["TWILIO_AUTH_TOKEN"],
            )

        timer = threading.Timer(1.0, stop_soon)
        timer.start()
        launch(str(path), "optout-steps")
        timer.join()

    assert quitter not in {m["to"] for m in providers.messages("twilio")}
    [row] = [r for r in Ledger.open().sends("optout-steps", "sms") if r.contact_id == texts[0]["id"]]
    assert row.state is SendState.SKIPPED and row.reason == "suppressed"
    assert len(providers.messages("twilio")) == len(texts) - 1
