"""Every way an opt-out reaches the tracking service lands in the suppression store, and nothing forged does."""

from __future__ import annotations

import pytest

from clarion.base.consent import Kind
from tests.conftest import CampaignDir
from tests.tracking.conftest import Tracked, tracking_service

ADA_EMAIL, ADA_PHONE = "ada@example.org", "+14155552671"


def _email(tracked: Tracked) -> set[str]:
    return tracked.ledger.suppressed(Kind.EMAIL)


def _sms(tracked: Tracked) -> set[str]:
    return tracked.ledger.suppressed(Kind.SMS)


def test_the_unsubscribe_page_asks_before_it_unsubscribes(tracked: Tracked) -> None:
    token = tracked.token("email", "a", 0)

    page = tracked.client.get(f"/u/{token}")

    assert page.status_code == 200
    assert 'method="post"' in page.text and f'action="/u/{token}"' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert _email(tracked) == set()  # a link scanner fetching the URL opts no one out


def test_one_click_unsubscribe_suppresses_the_contacts_address(tracked: Tracked) -> None:
    token = tracked.token("email", "a", 0)  # c-001, ada@example.org

    done = tracked.client.post(
        f"/u/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    again = tracked.client.post(f"/u/{token}", content=b"List-Unsubscribe=One-Click")

    assert done.status_code == again.status_code == 200
    assert "You are unsubscribed" in done.text
    assert _email(tracked) == {ADA_EMAIL}
    [record] = list(tracked.ledger.suppressions(Kind.EMAIL))
    assert record.reason == "unsubscribe_link" and RUN_OF(record.detail)


def RUN_OF(detail: str | None) -> bool:
    return detail is not None and "test-appeal-" in detail and "email" in detail


@pytest.mark.parametrize(
    "token",
    ["AVl1zxu6AQAAT858BiYv4xPGSw", "not-a-token", "A" * 60],
    ids=["forged-mac", "garbage", "long"],
)
def test_a_forged_unsubscribe_link_is_404_and_suppresses_no_one(tracked: Tracked, token: str) -> None:
    response = tracked.client.post(f"/u/{token}", content=b"List-Unsubscribe=One-Click")

    assert response.status_code == 404
    assert _email(tracked) == _sms(tracked) == set()


def test_a_posts_link_unsubscribes_no_one(tracked: Tracked) -> None:
    response = tracked.client.post(
        f"/u/{tracked.token('x', 'a', None)}", content=b"List-Unsubscribe=One-Click"
    )

    assert response.status_code == 404
    assert _email(tracked) == set()


@pytest.mark.parametrize(
    ("event", "suppressed"),
    [
        ({"event": "unsubscribe"}, True),
        ({"event": "group_unsubscribe", "asm_group_id": 7}, True),
        ({"event": "spamreport"}, True),
        ({"event": "bounce", "type": "bounce", "reason": "550 5.1.1 no such user"}, True),
        ({"event": "bounce", "type": "blocked", "reason": "421 try later"}, False),
        ({"event": "dropped", "reason": "Bounced Address"}, True),
        ({"event": "dropped", "reason": "Invalid SMTPAPI header"}, False),
        ({"event": "delivered"}, False),
        ({"event": "open"}, False),
    ],
    ids=lambda v: str(v) if isinstance(v, bool) else f"{v['event']}-{v.get('type') or v.get('reason') or ''}",
)
def test_sendgrid_events_that_mean_never_again_suppress_the_address(
    tracked: Tracked, event: dict[str, object], suppressed: bool
) -> None:
    item = {**event, "email": "Ada@Example.org", "sg_event_id": "ev-1", "timestamp": 1_790_000_000}
    item["clarion_token"] = tracked.token("email", "a", 0)

    assert tracked.post_sendgrid([item]).status_code == 200

    assert _email(tracked) == ({ADA_EMAIL} if suppressed else set())


def test_a_sendgrid_unsubscribe_counts_even_for_mail_clarion_did_not_send(tracked: Tracked) -> None:
    response = tracked.post_sendgrid(
        [{"event": "unsubscribe", "email": "zoe@example.net", "sg_event_id": "z"}]
    )

    assert response.status_code == 200 and response.json()["unmatched"] == 1
    assert _email(tracked) == {"zoe@example.net"}


def test_an_unsigned_sendgrid_unsubscribe_suppresses_no_one(tracked: Tracked) -> None:
    body = b'[{"event": "unsubscribe", "email": "ada@example.org"}]'
    headers = tracked.sendgrid_headers(body)
    response = tracked.client.post(
        "/webhooks/sendgrid", content=body.replace(b"ada", b"bob"), headers=headers
    )

    assert response.status_code == 403
    assert _email(tracked) == set()


@pytest.mark.parametrize(
    "word", ["STOP", "stop", " Stop. ", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"]
)
def test_a_stop_reply_suppresses_the_number_for_texts(tracked: Tracked, word: str) -> None:
    response = tracked.post_inbound("+1 (415) 555-2671", word)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert "<Message>" not in response.text  # Twilio confirms opt-outs itself; a reply would be refused
    assert _sms(tracked) == {ADA_PHONE}
    assert _email(tracked) == set()  # a STOP to texts says nothing about email


@pytest.mark.parametrize("word", ["START", "unstop", "YES"])
def test_start_opts_the_number_back_in_and_keeps_the_history(tracked: Tracked, word: str) -> None:
    tracked.post_inbound(ADA_PHONE, "STOP")
    assert tracked.post_inbound(ADA_PHONE, word).status_code == 200

    assert _sms(tracked) == set()
    [record] = list(tracked.ledger.suppressions(Kind.SMS, include_lifted=True))
    assert record.reason == "sms_stop" and record.lifted_at is not None


def test_twilios_advanced_opt_out_type_is_honoured(tracked: Tracked) -> None:
    tracked.post_inbound(ADA_PHONE, "arrêt", OptOutType="STOP")  # a keyword Twilio was configured with

    assert _sms(tracked) == {ADA_PHONE}


def test_other_replies_change_nothing(tracked: Tracked) -> None:
    for text in ["stop texting me please", "Who is this?", "STOP STOP", ""]:
        assert tracked.post_inbound(ADA_PHONE, text).status_code == 200

    assert _sms(tracked) == set()


def test_help_gets_the_configured_reply(campaign_dir: CampaignDir) -> None:
    reply = "Example Campaign: news & appeals. Reply STOP to opt out. Msg&data rates may apply."
    with tracking_service(campaign_dir, clarion_sms_help_reply=reply) as tracked:
        response = tracked.post_inbound(ADA_PHONE, "help")

    assert response.status_code == 200
    assert "<Message>Example Campaign: news &amp; appeals. Reply STOP to opt out." in response.text


def test_a_forged_stop_is_refused_and_suppresses_no_one(tracked: Tracked) -> None:
    response = tracked.post_inbound(ADA_PHONE, "STOP", auth="not-the-accounts-token-0000000000")

    assert response.status_code == 403
    assert _sms(tracked) == set()


def test_a_stop_from_something_that_is_not_a_number_is_400(tracked: Tracked) -> None:
    response = tracked.post_inbound("whatsapp:bob", "STOP")

    assert response.status_code == 400
    assert _sms(tracked) == set()
