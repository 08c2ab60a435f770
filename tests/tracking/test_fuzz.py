"""Arbitrary input to the webhooks never produces a 500, and never records anything unsigned."""

from __future__ import annotations

import json
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.tracking.conftest import RUN, Tracked

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def nothing_recorded(tracked: Tracked) -> bool:
    found = tracked.ledger.engagement(RUN)
    return not (found.events or found.conversions or found.total_clicks)


@FUZZ
@given(body=st.binary(max_size=300), signed=st.booleans())
def test_sendgrid_never_fails_on_arbitrary_bytes(tracked: Tracked, body: bytes, signed: bool) -> None:
    headers = tracked.sendgrid_headers(body) if signed else {"Content-Type": "application/json"}
    response = tracked.client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert response.status_code < 500
    assert nothing_recorded(tracked)


@FUZZ
@given(events=json_values)
def test_sendgrid_never_fails_on_arbitrary_signed_json(tracked: Tracked, events: object) -> None:
    body = json.dumps(events).encode()
    response = tracked.client.post("/webhooks/sendgrid", content=body, headers=tracked.sendgrid_headers(body))
    assert response.status_code < 500
    assert nothing_recorded(tracked)  # no genuine token anywhere in it


@FUZZ
@given(
    params=st.dictionaries(
        st.sampled_from(["MessageSid", "MessageStatus", "ErrorCode", "To", "x"]),
        st.text(max_size=30),
        max_size=5,
    ),
    token=st.text(alphabet=string.ascii_letters + string.digits + "-_", max_size=40),
)
def test_twilio_never_fails_on_arbitrary_signed_forms(
    tracked: Tracked, params: dict[str, str], token: str
) -> None:
    response = tracked.post_twilio(token, params)
    assert response.status_code < 500
    assert nothing_recorded(tracked)


@FUZZ
@given(payload=json_values)
def test_conversions_never_fail_on_arbitrary_signed_json(tracked: Tracked, payload: object) -> None:
    response = tracked.post_conversion(payload)  # type: ignore[arg-type]
    assert response.status_code < 500
    assert nothing_recorded(tracked)


@FUZZ
@given(
    params=st.dictionaries(
        st.sampled_from(["From", "Body", "OptOutType", "To", "MessageSid"]),
        st.text(max_size=30),
        max_size=5,
    ),
)
def test_sms_replies_never_fail_on_arbitrary_signed_forms(tracked: Tracked, params: dict[str, str]) -> None:
    response = tracked.client.post(
        "http://testserver/webhooks/twilio/inbound",
        data=params,
        headers={
            "X-Twilio-Signature": tracked.twilio_signature(
                "http://testserver/webhooks/twilio/inbound", params
            )
        },
    )
    assert response.status_code in (200, 400, 415)  # 415: an empty form is sent without its type
    assert "Traceback" not in response.text


@FUZZ
@given(body=st.binary(max_size=200), sender=st.text(max_size=20))
def test_unsigned_sms_replies_suppress_no_one(tracked: Tracked, body: bytes, sender: str) -> None:
    response = tracked.client.post(
        "/webhooks/twilio/inbound",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert 400 <= response.status_code < 500
    assert tracked.ledger.suppressed("sms") == set()


@FUZZ
@given(
    token=st.text(alphabet=string.ascii_letters + string.digits + "-_=%.", max_size=60),
    body=st.binary(max_size=100),
)
def test_unsubscribe_never_fails_and_forged_tokens_suppress_no_one(
    tracked: Tracked, token: str, body: bytes
) -> None:
    response = tracked.client.post(f"/u/{token}", content=body)
    assert response.status_code in (404, 405, 413) or (response.status_code == 200 and token)
    if response.status_code != 200:
        assert tracked.ledger.suppressed("email") == set()
