"""The SendGrid, Twilio and conversion webhooks: verified, matched to sends, idempotent; forgeries record nothing."""

from __future__ import annotations

import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.tracking.conftest import RUN, Tracked


def sendgrid_event(
    tracked: Tracked, kind: str, seq: int, variant: str = "a", **extra: object
) -> dict[str, object]:
    return {
        "email": "ada@example.org",
        "timestamp": 1795000000 + seq,
        "event": kind,
        "sg_event_id": f"evt-{kind}-{seq}",
        "sg_message_id": f"msg{seq}.filter",
        "clarion_run": RUN,
        "clarion_channel": "email",
        "clarion_variant": variant,
        "clarion_token": tracked.token("email", variant, seq),
        **extra,
    }


def test_sendgrid_events_are_recorded_per_channel_variant_and_kind(tracked: Tracked) -> None:
    events = [
        sendgrid_event(tracked, "delivered", 0),
        sendgrid_event(tracked, "delivered", 1),
        sendgrid_event(tracked, "open", 1),
        sendgrid_event(tracked, "bounce", 3, "b", reason="550 mailbox unavailable", type="bounce"),
    ]
    response = tracked.post_sendgrid(events)
    assert response.status_code == 200
    assert response.json() == {"recorded": 4, "unmatched": 0}
    assert tracked.ledger.engagement(RUN).events == {
        ("email", "a", "delivered"): 2,
        ("email", "a", "open"): 1,
        ("email", "b", "bounce"): 1,
    }


def test_a_redelivered_sendgrid_batch_is_recorded_once(tracked: Tracked) -> None:
    events = [sendgrid_event(tracked, "delivered", 0), sendgrid_event(tracked, "open", 0)]
    for _ in range(3):
        assert tracked.post_sendgrid(events).status_code == 200
    with tracked.ledger.engine.connect() as conn:
        from sqlalchemy import func, select

        from clarion.ledger.schema import events as table

        assert conn.execute(select(func.count()).select_from(table)).scalar() == 2


def test_events_without_a_genuine_token_are_acknowledged_but_not_recorded(tracked: Tracked) -> None:
    forged = sendgrid_event(tracked, "delivered", 0)
    forged["clarion_token"] = str(forged["clarion_token"])[:-2] + "zz"
    response = tracked.post_sendgrid(
        [forged, {"event": "delivered"}, "junk", sendgrid_event(tracked, "whatever", 1)]
    )
    assert response.json() == {"recorded": 0, "unmatched": 4}
    assert tracked.ledger.engagement(RUN).events == {}


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="unsigned"),
        pytest.param(
            {
                "X-Twilio-Email-Event-Webhook-Signature": "bm9wZQ==",
                "X-Twilio-Email-Event-Webhook-Timestamp": "1",
            },
            id="bad-signature",
        ),
        pytest.param(
            {"X-Twilio-Email-Event-Webhook-Signature": "%%%", "X-Twilio-Email-Event-Webhook-Timestamp": "1"},
            id="not-base64",
        ),
    ],
)
def test_a_sendgrid_batch_without_a_valid_signature_records_nothing(
    tracked: Tracked, headers: dict[str, str]
) -> None:
    body = json.dumps([sendgrid_event(tracked, "delivered", 0)]).encode()
    response = tracked.client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert response.status_code in (401, 403)
    assert tracked.ledger.engagement(RUN).events == {}


def test_a_sendgrid_batch_signed_by_another_key_or_altered_after_signing_records_nothing(
    tracked: Tracked,
) -> None:
    body = json.dumps([sendgrid_event(tracked, "delivered", 0)]).encode()
    other = ec.generate_private_key(ec.SECP256R1())
    assert (
        tracked.client.post(
            "/webhooks/sendgrid", content=body, headers=tracked.sendgrid_headers(body, key=other)
        ).status_code
        == 403
    )
    headers = tracked.sendgrid_headers(body)
    altered = body.replace(b"delivered", b"bounce")
    assert tracked.client.post("/webhooks/sendgrid", content=altered, headers=headers).status_code == 403
    assert tracked.ledger.engagement(RUN).events == {}


def test_oversized_and_malformed_bodies_get_a_4xx(tracked: Tracked) -> None:
    huge = b"[" + b" " * (9 * 1024 * 1024) + b"]"
    assert (
        tracked.client.post(
            "/webhooks/sendgrid", content=huge, headers=tracked.sendgrid_headers(huge)
        ).status_code
        == 413
    )
    not_json = b"{nope"
    assert (
        tracked.client.post(
            "/webhooks/sendgrid", content=not_json, headers=tracked.sendgrid_headers(not_json)
        ).status_code
        == 400
    )
    obj = b'{"event": "delivered"}'
    assert (
        tracked.client.post(
            "/webhooks/sendgrid", content=obj, headers=tracked.sendgrid_headers(obj)
        ).status_code
        == 400
    )


def test_twilio_status_callbacks_are_recorded_once_per_message_and_status(tracked: Tracked) -> None:
    token = tracked.token("sms", "b", 1)
    for status in ("sent", "delivered", "delivered"):
        params = {"MessageSid": "SM" + "1" * 32, "MessageStatus": status, "AccountSid": "AC" + "0" * 32}
        response = tracked.post_twilio(token, params)
        assert response.status_code == 200, response.text
    failed = {"MessageSid": "SM" + "2" * 32, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    assert tracked.post_twilio(tracked.token("sms", "a", 2), failed).status_code == 200
    assert tracked.ledger.engagement(RUN).events == {
        ("sms", "b", "sent"): 1,
        ("sms", "b", "delivered"): 1,
        ("sms", "a", "undelivered"): 1,
    }


def test_a_twilio_callback_signed_with_another_token_or_for_another_url_records_nothing(
    tracked: Tracked,
) -> None:
    params = {"MessageSid": "SM" + "1" * 32, "MessageStatus": "delivered"}
    assert tracked.post_twilio(tracked.token("sms", "b", 1), params, auth="wrong-token").status_code == 403
    signed_for = tracked.token("sms", "b", 1)
    from twilio.request_validator import RequestValidator

    signature = RequestValidator("twilio-auth-token-for-tests-0000").compute_signature(
        f"http://testserver/webhooks/twilio?ct={signed_for}", params
    )
    moved = f"/webhooks/twilio?ct={tracked.token('sms', 'a', 0)}"  # a genuine signature, replayed elsewhere
    assert (
        tracked.client.post(moved, data=params, headers={"X-Twilio-Signature": signature}).status_code == 403
    )
    assert tracked.client.post(moved, data=params).status_code == 401
    assert tracked.ledger.engagement(RUN).events == {}


def test_conversions_by_token_are_attributed_to_channel_variant_and_contact(tracked: Tracked) -> None:
    token = tracked.token("email", "b", 1)
    payload = {"id": "don-1", "token": token, "amount": 25.5, "currency": "usd"}
    for _ in range(2):  # a retried delivery
        response = tracked.post_conversion(payload)
        assert response.status_code == 200, response.text
    tracked.post_conversion({"id": "don-2", "token": token, "amount": 10})
    found = tracked.ledger.engagement(RUN)
    assert found.conversions == {("b", "email"): (1, 2, 3550, 3550**2)}
    assert found.currencies == {"USD"}


def test_conversions_by_email_or_phone_need_the_run_and_find_the_contact(tracked: Tracked) -> None:
    assert tracked.post_conversion(
        {"id": "d1", "run": RUN, "email": "BEN@example.org", "amount": 5}
    ).json() == {"recorded": 1, "unmatched": 0}
    assert tracked.post_conversion(
        {"id": "d2", "run": RUN, "phone": "(212) 555-0142", "amount": 7}
    ).json() == {"recorded": 1, "unmatched": 0}
    outsider = tracked.post_conversion({"id": "d3", "run": RUN, "email": "stranger@example.net", "amount": 9})
    assert outsider.json() == {"recorded": 0, "unmatched": 1}
    assert tracked.post_conversion({"id": "d4", "email": "ben@example.org"}).status_code == 422
    assert (
        tracked.post_conversion({"id": "d5", "run": "no-such-run", "email": "ben@example.org"}).status_code
        == 404
    )
    arms = tracked.ledger.engagement(RUN).arm_conversions
    assert sum(people for people, *_ in arms.values()) == 2


@pytest.mark.parametrize(
    ("change", "status"),
    [
        pytest.param({"secret": "a different secret, same length!"}, 403, id="wrong-secret"),
        pytest.param({"at": time.time() - 3600}, 401, id="replayed-an-hour-later"),
        pytest.param({"at": time.time() + 3600}, 401, id="from-the-future"),
    ],
)
def test_conversions_not_signed_with_the_secret_now_record_nothing(
    tracked: Tracked, change: dict[str, object], status: int
) -> None:
    payload = {"id": "don-x", "token": tracked.token("sms", "a", 0), "amount": 50}
    assert tracked.post_conversion(payload, **change).status_code == status  # type: ignore[arg-type]
    assert tracked.ledger.engagement(RUN).conversions == {}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        pytest.param({"token": "t"}, "id", id="no-id"),
        pytest.param({"id": "1", "token": "t", "amount": -5}, "amount", id="negative-amount"),
        pytest.param({"id": "1", "token": "t", "currency": "dollars"}, "currency", id="bad-currency"),
        pytest.param({"id": "1", "token": "t", "bonus": 1}, "bonus", id="unknown-field"),
        pytest.param({"id": "1"}, "names no one", id="no-one"),
    ],
)
def test_an_invalid_conversion_body_gets_a_422_naming_the_field(
    tracked: Tracked, payload: dict[str, object], field: str
) -> None:
    response = tracked.post_conversion(payload)
    assert response.status_code == 422
    assert field in response.text


def test_webhooks_refuse_everything_when_their_key_is_not_configured(campaign_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from clarion.base.settings import TrackingSettings
    from clarion.ledger import Ledger
    from clarion.tracking import build_app
    from tests.tracking.conftest import AppClient

    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    client = AppClient(build_app(ledger, settings=TrackingSettings(), environ={}))
    for path in ("/webhooks/sendgrid", "/webhooks/twilio", "/webhooks/conversion"):
        response = client.post(path, content=b"[]")
        assert response.status_code == 403
        assert "is not set" in response.text
    client.close()
    ledger.close()
