"""Each provider's lookup of uncertain sends (`Channel.reconcile`) against the sandbox: what it finds, what
it proves absent, and when it says it cannot tell (and why) rather than guess."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from clarion.campaign.loader import load_campaign
from clarion.channels.base import Channel, ChannelKind, Message, Outbound, SendOutcome
from clarion.channels.reconcile import Found, Lookup, Verdict
from clarion.engine.context import make_adapter
from clarion.sandbox import FaultConfig, Sandbox
from tests.conftest import CampaignDir, point_adapters_at

LINK = "https://go.example.org/c/AAAA"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(port=0) as box:
        yield box


@pytest.fixture
def providers(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    return point_adapters_at(sandbox, monkeypatch, timeout=2)  # type: ignore[no-any-return]


@pytest.fixture
def campaign(campaign_dir: CampaignDir) -> Path:
    return campaign_dir.campaign()


def _adapter(path: Path, channel: str) -> Channel:
    return make_adapter(load_campaign(path), channel)


def _message(
    kind: ChannelKind, to: str | None, text: str, link: str = LINK, subject: str | None = None
) -> Message:
    provider = {ChannelKind.SMS: "twilio", ChannelKind.SOCIAL: "x", ChannelKind.EMAIL: "sendgrid"}[kind]
    html = f"<p>{text}</p>" if kind is ChannelKind.EMAIL else None
    return Message("c", provider, kind, "a", None, to, link, text, subject=subject, html=html)


def _send(adapter: Channel, *messages: Message) -> list[str]:
    results = adapter.send([Outbound(f"r{i}", m) for i, m in enumerate(messages)])
    assert all(r.outcome is SendOutcome.SENT for r in results), results
    return [str(r.provider_id) for r in results]


def _look(adapter: Channel, *messages: Message, at: datetime | None = None) -> list[Found]:
    when = at or datetime.now(UTC) - timedelta(seconds=5)
    return adapter.reconcile([Lookup(f"r{i}", m, when) for i, m in enumerate(messages)])


# -- Twilio ------------------------------------------------------------------------------------------


def test_twilio_finds_a_text_behind_newer_ones_and_proves_others_absent(
    providers: Sandbox, campaign: Path
) -> None:
    sms = _adapter(campaign, "sms")
    wanted = _message(ChannelKind.SMS, "+14155552671", f"Ada, chip in {LINK} Reply STOP")
    [sid] = _send(sms, wanted)
    newer = [_message(ChannelKind.SMS, "+14155552671", f"update {i} Reply STOP") for i in range(120)]
    _send(sms, *newer)  # more than one page (100) of newer texts to the same number

    found, absent = _look(sms, wanted, _message(ChannelKind.SMS, "+14155552672", "never sent"))

    assert (found.verdict, found.provider_id) == (Verdict.SENT, sid) and sid in found.detail
    assert absent.verdict is Verdict.NOT_RECEIVED and "Messages list" in absent.detail


def test_twilio_ignores_texts_older_than_the_attempt(providers: Sandbox, campaign: Path) -> None:
    sms = _adapter(campaign, "sms")
    text = _message(ChannelKind.SMS, "+14155552671", f"Ada, chip in {LINK} Reply STOP")
    _send(sms, text)  # an earlier run's text, say

    [answer] = _look(sms, text, at=datetime.now(UTC) + timedelta(minutes=10))

    assert answer.verdict is Verdict.NOT_RECEIVED


def test_twilio_same_words_with_another_link_is_not_guessed(providers: Sandbox, campaign: Path) -> None:
    sms = _adapter(campaign, "sms")
    _send(
        sms,
        _message(ChannelKind.SMS, "+14155552671", "Ada, chip in https://go.example.org/c/BBBB Reply STOP"),
    )

    [answer] = _look(sms, _message(ChannelKind.SMS, "+14155552671", f"Ada, chip in {LINK} Reply STOP"))

    assert answer.verdict is Verdict.UNKNOWN and "CLARION_SECRET_KEY" in answer.detail


def test_twilio_through_a_messaging_service_matches_its_sid(
    providers: Sandbox, campaign_dir: CampaignDir
) -> None:
    from tests.conftest import CAMPAIGN

    service = "MG" + "a" * 32
    path = campaign_dir.campaign(
        CAMPAIGN.replace('from: "+15005550006"', f"messaging_service_sid: {service}")
    )
    sms = _adapter(path, "sms")
    text = _message(ChannelKind.SMS, "+14155552671", "hello Reply STOP")
    [sid] = _send(sms, text)

    [answer] = _look(sms, text)

    assert (answer.verdict, answer.provider_id) == (Verdict.SENT, sid)


@pytest.mark.parametrize(
    ("trouble", "says"),
    [
        ("revoked", "Twilio refused the credentials (HTTP 401)"),
        ("rate_limit", "rate limit"),
        ("down", "HTTP 50"),
    ],
)
def test_twilio_that_cannot_be_asked_leaves_every_send_unknown(
    providers: Sandbox, campaign: Path, trouble: str, says: str
) -> None:
    sms = _adapter(campaign, "sms")
    if trouble == "revoked":
        providers.set_account("twilio", revoked=True)
    elif trouble == "rate_limit":
        providers.set_faults("twilio", FaultConfig(rate_limit_every=1, rate_limit_burst=5, seed=1))
    else:
        providers.set_faults("twilio", FaultConfig(failure_rate=1.0, seed=1))
    texts = [_message(ChannelKind.SMS, f"+1415555267{i}", "hi Reply STOP") for i in range(2)]

    answers = _look(sms, *texts)

    if trouble == "rate_limit":  # the first listing passed; after the 429, the rest wait for another try
        assert answers[0].verdict is Verdict.NOT_RECEIVED
        answers = answers[1:]
    assert {a.verdict for a in answers} == {Verdict.UNKNOWN}
    assert says in answers[0].detail and "sandbox-token" not in answers[0].detail


# -- X -------------------------------------------------------------------------------------------------


def test_x_finds_a_post_whose_link_x_shortened(providers: Sandbox, campaign: Path) -> None:
    x = _adapter(campaign, "x")
    post = _message(ChannelKind.SOCIAL, None, f"Chip in now. {LINK}")
    [pid] = _send(x, post)
    other = _message(ChannelKind.SOCIAL, None, "Join 12,000 supporters. https://go.example.org/c/CCCC")

    found, absent = _look(x, post, other)

    assert (found.verdict, found.provider_id) == (Verdict.SENT, pid)
    assert absent.verdict is Verdict.NOT_RECEIVED and "the account's posts" in absent.detail


def test_x_same_words_with_another_link_is_not_guessed(providers: Sandbox, campaign: Path) -> None:
    x = _adapter(campaign, "x")
    _send(x, _message(ChannelKind.SOCIAL, None, "Chip in now. https://go.example.org/c/BBBB"))

    [answer] = _look(x, _message(ChannelKind.SOCIAL, None, f"Chip in now. {LINK}"))

    assert answer.verdict is Verdict.UNKNOWN and "not this run's link" in answer.detail


def test_x_refusing_the_token_leaves_posts_unknown(providers: Sandbox, campaign: Path) -> None:
    x = _adapter(campaign, "x")
    providers.set_account("x", revoked=True)

    [answer] = _look(x, _message(ChannelKind.SOCIAL, None, f"Chip in now. {LINK}"))

    assert answer.verdict is Verdict.UNKNOWN and "HTTP 401" in answer.detail


# -- SendGrid --------------------------------------------------------------------------------------------


def test_sendgrid_finds_emails_by_address_and_subject(providers: Sandbox, campaign: Path) -> None:
    email = _adapter(campaign, "email")
    sent = _message(ChannelKind.EMAIL, "ada@example.org", "hello", subject="Chip in now.")
    [message_id] = _send(email, sent)

    found, other_subject, absent = _look(
        email,
        sent,
        _message(ChannelKind.EMAIL, "ada@example.org", "hello", subject="Another subject"),
        _message(ChannelKind.EMAIL, "ben@example.org", "hello", subject="Chip in now."),
    )

    assert (found.verdict, found.provider_id) == (Verdict.SENT, message_id)
    assert other_subject.verdict is Verdict.NOT_RECEIVED and absent.verdict is Verdict.NOT_RECEIVED
    [request] = [r for r in providers.requests("sendgrid") if r["path"] == "/v3/messages"]
    assert "to_email" in request["query"] and "from_email" in request["query"]


@pytest.mark.parametrize(
    ("account", "says"),
    [
        ({"email_activity": False}, 'the paid "additional email activity history" add-on'),
        ({"scopes": ["mail.send"]}, "Email Activity access (scope messages.read)"),
        ({"revoked": True}, "SENDGRID_API_KEY"),
    ],
)
def test_sendgrid_without_email_activity_says_why(
    providers: Sandbox, campaign: Path, account: dict[str, object], says: str
) -> None:
    email = _adapter(campaign, "email")
    providers.set_account("sendgrid", **account)

    answers = _look(
        email, *[_message(ChannelKind.EMAIL, f"p{i}@example.org", "x", subject="s") for i in range(3)]
    )

    assert [a.verdict for a in answers] == [Verdict.UNKNOWN] * 3
    assert says in answers[0].detail
