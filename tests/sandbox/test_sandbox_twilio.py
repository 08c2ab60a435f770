"""Twilio's Messages endpoint through the real twilio SDK: the Message resource, Twilio's error codes."""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qs

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from clarion.channels.twilio.rules import sms_length
from clarion.sandbox import Sandbox
from tests.sandbox.conftest import ACCOUNT_SID, OPTED_OUT, twilio_client

SENDER = "+15005550006"


def test_a_created_message_looks_like_twilios_resource(
    sb: Sandbox, twilio: Client, http: httpx.Client
) -> None:
    body = "Ada, chip in now: https://l.example/a1 Reply STOP to opt out"
    message = twilio.messages.create(
        to="+14155552671", from_=SENDER, body=body, status_callback="https://hooks.example/twilio"
    )

    assert re.fullmatch(r"SM[0-9a-f]{32}", message.sid)
    assert message.status == "queued"
    assert message.account_sid == ACCOUNT_SID
    assert (message.to, message.from_, message.body) == ("+14155552671", SENDER, body)
    assert message.direction == "outbound-api"
    assert message.error_code is None and message.error_message is None and message.price is None
    assert message.num_segments == str(sms_length(body).segments)  # a string, as Twilio sends it
    assert message.date_created.tzinfo is not None
    assert message.uri == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{message.sid}.json"

    [stored] = sb.messages("twilio")
    assert stored["to"] == "+14155552671"
    assert stored["text"] == body
    assert stored["provider_id"] == message.sid
    assert stored["status_callback"] == "https://hooks.example/twilio"
    assert stored["subject"] is None and stored["html"] is None


def test_the_raw_answer_is_201_json_with_string_segments_and_rfc2822_dates(http: httpx.Client) -> None:
    response = http.post(
        f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
        data={"To": "+14155552671", "From": SENDER, "Body": "ж" * 71},  # UCS-2: 71 units are 2 segments
        auth=(ACCOUNT_SID, "token"),
    )
    assert response.status_code == 201
    resource = response.json()
    assert resource["num_segments"] == "2"
    assert parsedate_to_datetime(resource["date_created"]).utcoffset() is not None
    assert resource["date_created"].endswith("+0000")


def test_the_request_log_has_the_form_and_no_credentials(sb: Sandbox, twilio: Client) -> None:
    twilio.messages.create(to="+14155552671", from_=SENDER, body="hello")
    [entry] = sb.requests("twilio")
    assert entry["path"] == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert entry["status"] == 201
    assert parse_qs(entry["body"]) == {"To": ["+14155552671"], "From": [SENDER], "Body": ["hello"]}
    assert entry["headers"]["authorization"] == "Basic [REDACTED]"
    assert entry["headers"]["content-type"] == "application/x-www-form-urlencoded"


def test_a_messaging_service_replaces_the_sender(sb: Sandbox, twilio: Client) -> None:
    service = "MG" + "1" * 32
    message = twilio.messages.create(to="+14155552671", messaging_service_sid=service, body="hi")
    assert message.status == "accepted"  # Twilio picks the sender later
    assert message.messaging_service_sid == service
    assert sb.messages("twilio")[0]["messaging_service_sid"] == service


@pytest.mark.parametrize(
    ("fields", "code", "message"),
    [
        pytest.param(
            {"To": "4155552671"},
            21211,
            "The 'To' number 4155552671 is not a valid phone number.",
            id="not-e164",
        ),
        pytest.param(
            {"To": "+0123456789"},
            21211,
            "The 'To' number +0123456789 is not a valid phone number.",
            id="zero",
        ),
        pytest.param({"From": None}, 21603, "A 'From' phone number is required.", id="no-sender"),
        pytest.param({"Body": None}, 21602, "Message body is required.", id="no-body"),
        pytest.param(
            {"Body": "x" * 1601},
            21617,
            "The concatenated message body exceeds the 1600 character limit.",
            id="too-long",
        ),
        pytest.param({"To": OPTED_OUT}, 21610, "Attempt to send to unsubscribed recipient", id="opted-out"),
    ],
)
def test_refusals_carry_twilios_code(
    sb: Sandbox, twilio: Client, fields: dict[str, str | None], code: int, message: str
) -> None:
    kwargs = {"to": "+14155552671", "from_": SENDER, "body": "hello"}
    names = {"To": "to", "From": "from_", "Body": "body"}
    for name, value in fields.items():
        if value is None:
            del kwargs[names[name]]
        else:
            kwargs[names[name]] = value
    with pytest.raises(TwilioRestException) as exc:
        twilio.messages.create(**kwargs)
    assert (exc.value.status, exc.value.code) == (400, code)
    assert exc.value.msg == f"Unable to create record: {message}"  # the SDK prefixes Twilio's message
    assert sb.messages() == []
    assert sb.requests("twilio")[0]["status"] == 400


def test_1600_characters_are_allowed(twilio: Client) -> None:
    assert twilio.messages.create(to="+14155552671", from_=SENDER, body="x" * 1600).num_segments == "11"


def test_opt_outs_can_change_at_runtime(sb: Sandbox, twilio: Client, http: httpx.Client) -> None:
    sb.set_opted_out({"+14155552671"})
    try:
        with pytest.raises(TwilioRestException) as exc:
            twilio.messages.create(to="+14155552671", from_=SENDER, body="hello")
        assert exc.value.code == 21610
        assert http.put("/_sandbox/opted-out", json=[OPTED_OUT]).json() == [OPTED_OUT]
        twilio.messages.create(to="+14155552671", from_=SENDER, body="hello")
    finally:
        sb.set_opted_out({OPTED_OUT})


def test_a_user_name_other_than_the_account_sid_is_20003(sb: Sandbox, http: httpx.Client) -> None:
    other = twilio_client(sb.url)
    other.api.account_sid = "AC" + "1" * 32  # the path names another account than the credentials
    try:
        with pytest.raises(TwilioRestException) as exc:
            other.api.v2010.accounts("AC" + "1" * 32).messages.create(
                to="+14155552671", from_=SENDER, body="x"
            )
    finally:
        other.http_client.session.close()
    assert (exc.value.status, exc.value.code) == (401, 20003)
    response = http.post(f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json", data={"To": "+14155552671"})
    assert response.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }
    assert sb.messages() == []
