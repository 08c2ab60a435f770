"""People write in through the sandbox, in the providers' wire formats and signatures; the responder answers
once, on the right channel, with the right rule, and everything unsafe is not answered."""

from __future__ import annotations

import re
import time

import httpx

from clarion.base.consent import Kind
from tests.responders.conftest import ACCOUNT, NUMBER, Desk

ADA, BEN = "+14155550100", "+12025550123"
DM_SENDER = "3001969357"


def _link(text: str) -> str:
    found = re.search(r"https://go\.example\.org(/c/[A-Za-z0-9_-]+)", text)
    assert found, text
    return found.group(1)


def test_a_signed_sms_zip_is_answered_with_californias_deadline_and_a_link_that_records_the_click(
    desk: Desk,
) -> None:
    answer = desk.text(ADA, "94110")

    assert answer.status_code == 200 and "<Response/>" in answer.text  # the reply goes through the REST API
    [reply] = desk.replies("twilio", expect=1)
    assert reply["to"] == ADA and reply["from"] == NUMBER
    assert reply["text"].startswith("California: register to vote by 2026-10-04 (sample date).")
    click = httpx.get(desk.url + _link(reply["text"]))
    assert click.status_code == 302
    assert click.headers["location"].startswith("https://vote.example.org/register/ca?")
    assert "utm_campaign=register-by-zip" in click.headers["location"]
    rows = desk.messages()
    assert [(r["direction"], r["rule"], r["state"]) for r in rows] == [
        ("in", "zip", "answered"),
        ("out", "zip", "sent"),
    ]
    assert rows[1]["provider_id"] == reply["provider_id"]  # the reply's sid, recorded against the inbound
    assert rows[1]["recipient"] is None  # the address is not kept once sent
    from clarion.responders.report import funnel

    [zip_rule] = funnel(desk.ledger, "register-by-zip")["rules"]
    assert (zip_rule["matched"]["people"], zip_rule["replied"]["people"], zip_rule["clicked"]["people"]) == (
        1,
        1,
        1,
    )


def test_a_signed_x_dm_zip_is_answered_by_dm_with_a_link_that_records_the_click(desk: Desk) -> None:
    answer = desk.dm(DM_SENDER, "my zip is 10001")

    assert answer.status_code == 200
    [reply] = desk.replies("x", expect=1)
    assert reply["kind"] == "dm" and reply["to"] == DM_SENDER
    assert reply["text"].startswith("New York: register to vote by")
    click = httpx.get(desk.url + _link(reply["text"]))
    assert click.headers["location"].startswith("https://vote.example.org/register/ny?")
    assert "utm_source=dm" in click.headers["location"]
    from clarion.responders.report import funnel

    [zip_rule] = funnel(desk.ledger, "register-by-zip")["rules"]
    assert zip_rule["clicked"]["people"] == 1


def test_crc_check_is_answered_with_the_consumer_secrets_hmac(desk: Desk) -> None:
    from clarion.channels.x.inbox import CONSUMER_SECRET
    from clarion.channels.x.webhooks import crc_response

    answer = httpx.get(desk.url + "/webhooks/x", params={"crc_token": "token-1"})

    assert answer.status_code == 200 and answer.json() == crc_response("token-1", CONSUMER_SECRET)


def test_forged_signatures_get_4xx_and_no_reply(desk: Desk) -> None:
    from clarion.channels.twilio.emulator import inbound_sms
    from clarion.channels.twilio.webhooks import sign
    from clarion.channels.x.inbox import activity_body, dm_event
    from clarion.channels.x.webhooks import sign_body

    url = desk.url + "/webhooks/twilio/inbound"
    params = inbound_sms(ADA, "94110", NUMBER)
    forged = httpx.post(url, data=params, headers={"X-Twilio-Signature": sign("not-the-token", url, params)})
    unsigned = httpx.post(url, data=params)
    body = activity_body(dm_event(DM_SENDER, ACCOUNT, "94110", "42"))
    forged_dm = httpx.post(
        desk.url + "/webhooks/x",
        content=body,
        headers={"x-twitter-webhooks-signature": sign_body(body, "wrong-secret")},
    )
    altered = httpx.post(
        desk.url + "/webhooks/x",
        content=body.replace(b"94110", b"10001"),
        headers={"x-twitter-webhooks-signature": sign_body(body, "sandbox-x-consumer-secret")},
    )
    unsigned_dm = httpx.post(desk.url + "/webhooks/x", content=body)

    assert [r.status_code for r in (forged, unsigned, forged_dm, altered, unsigned_dm)] == [
        403,
        401,
        403,
        403,
        401,
    ]
    time.sleep(0.3)
    assert desk.sandbox.messages() == [] and desk.messages() == []


def test_a_redelivered_webhook_is_answered_once(desk: Desk) -> None:
    for _ in range(3):
        assert desk.text(ADA, "94110", sid="SM" + "1" * 32).status_code == 200
        assert desk.dm(DM_SENDER, "94110", event_id="777").status_code == 200

    assert len(desk.replies(expect=2)) == 2
    time.sleep(0.3)
    assert len(desk.sandbox.messages()) == 2
    assert sum(r["direction"] == "out" for r in desk.messages()) == 2


def test_our_own_dm_echoed_back_by_x_is_not_answered(desk: Desk) -> None:
    desk.sandbox.set_dm_webhook(desk.url + "/webhooks/x")  # X delivers the account's own DMs too

    desk.dm(DM_SENDER, "hello")
    desk.replies("x", expect=1)
    time.sleep(0.5)  # the echo of our reply has arrived by now; it must not start a loop

    assert len(desk.sandbox.messages("x")) == 1
    assert [r["direction"] for r in desk.messages()] == ["in", "out"]


def test_machines_and_our_own_numbers_are_never_answered(desk: Desk) -> None:
    for sender in ("72345", "ALERTS", NUMBER):  # a short code, an alphanumeric sender id, our own number
        assert desk.text(sender, "94110").status_code == 200
    time.sleep(0.3)
    assert desk.sandbox.messages() == []
    assert desk.messages() == []  # not even recorded: no address key of a machine


def test_an_auto_responder_echoing_our_reply_gets_no_answer(desk: Desk) -> None:
    desk.text(ADA, "hello")
    [fallback] = desk.replies("twilio", expect=1)
    desk.text(ADA, fallback["text"])  # another bot parrots our fallback back
    time.sleep(0.3)
    desk.settle()
    assert len(desk.sandbox.messages()) == 1
    assert desk.messages()[-1]["reason"] == "echo"


def test_fallbacks_stop_after_two_in_a_row_and_replies_after_five_an_hour(desk: Desk) -> None:
    for i in range(4):
        desk.text(ADA, f"what? {i}")
    assert len(desk.replies(expect=2)) == 2  # fallbacks_in_a_row: 2, then silence until a rule matches
    for zip_code in ("94110", "10001", "60614", "73301", "02134"):
        desk.text(ADA, zip_code)
    replies = desk.replies(expect=5)
    time.sleep(0.3)
    assert len(desk.sandbox.messages()) == 5  # replies_per_hour: 5
    reasons = [r["reason"] for r in desk.messages() if r["direction"] == "in"]
    assert reasons.count("fallback_limit") == 2 and reasons.count("hourly_cap") == 2
    assert len(replies) == 5


def test_a_suppressed_sender_gets_only_the_compliance_confirmations(desk: Desk) -> None:
    desk.text(ADA, "STOP")
    desk.dm(DM_SENDER, "stop")
    desk.replies(expect=1)
    desk.text(ADA, "94110")
    desk.dm(DM_SENDER, "94110")
    time.sleep(0.4)
    desk.settle()

    sent = desk.sandbox.messages()
    assert [(m["provider"], m["text"]) for m in sent] == [
        ("x", "You will get no more messages from us. Send START to opt back in.")
    ]  # on SMS, Twilio itself confirms STOP
    assert desk.ledger.suppressed(Kind.SMS) == {ADA} and desk.ledger.suppressed("x") == {DM_SENDER}
    ignored = [r["reason"] for r in desk.messages() if r["direction"] == "in" and r["state"] == "ignored"]
    assert ignored == ["suppressed", "suppressed"]
    desk.dm(DM_SENDER, "START")
    desk.dm(DM_SENDER, "94110")
    assert len(desk.replies("x", expect=3)) == 3  # back in: the confirmation, then the answer


def test_a_question_is_asked_and_its_answer_handled(desk: Desk) -> None:
    desk.text(BEN, "Volunteer!")
    desk.replies(expect=1)
    desk.text(BEN, "pardon?")  # not a zip: asked again once
    desk.replies(expect=2)
    desk.text(BEN, "it's 60614")
    replies = desk.replies(expect=3)

    texts = [m["text"] for m in replies]
    assert texts[0].startswith("Thank you! Which zip code")
    assert texts[1] == "Please send the 5 digits of your zip code, e.g. 94110."
    assert texts[2].startswith("Great: a volunteer lead near Chicago, IL")
    rules = [r["rule"] for r in desk.messages() if r["direction"] == "out"]
    assert rules == ["volunteer", "volunteer/retry", "volunteer/answer"]
