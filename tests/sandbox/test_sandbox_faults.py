"""Fault injection per provider: seeded 5xx, stalls that time clients out, 429 bursts, latency."""

from __future__ import annotations

import json
import math
import time

import httpx
import pytest
import requests
from python_http_client.exceptions import InternalServerError, ServiceUnavailableError, TooManyRequestsError
from sendgrid import SendGridAPIClient
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from clarion.sandbox import FaultConfig, Sandbox
from tests.sandbox.conftest import twilio_client

SENDER = "+15005550006"
MAIL = {
    "personalizations": [{"to": [{"email": "ada@example.org"}], "subject": "Hi"}],
    "from": {"email": "team@example.org"},
    "content": [{"type": "text/plain", "value": "hello"}],
}


def sms_statuses(twilio: Client, count: int) -> list[int]:
    statuses = []
    for i in range(count):
        try:
            twilio.messages.create(to=f"+1415555{i:04d}", from_=SENDER, body="hello")
            statuses.append(201)
        except TwilioRestException as exc:
            statuses.append(exc.status)
    return statuses


def test_seeded_failures_repeat_and_store_nothing(sb: Sandbox, twilio: Client) -> None:
    sb.set_faults("twilio", FaultConfig(failure_rate=0.4, seed=7))
    first = sms_statuses(twilio, 30)
    assert set(first) <= {201, 500, 503} and 201 in first and len(set(first)) > 1
    assert len(sb.messages("twilio")) == first.count(201)
    logged = [(r["status"], r["fault"]) for r in sb.requests("twilio")]
    assert logged == [(s, None if s == 201 else "failure") for s in first]

    sb.reset()  # settings stay, the seeded sequence restarts
    assert sms_statuses(twilio, 30) == first


def test_twilio_server_errors_have_twilios_body(sb: Sandbox, twilio: Client) -> None:
    sb.set_faults("twilio", FaultConfig(failure_rate=1.0, seed=1))
    with pytest.raises(TwilioRestException) as exc:
        twilio.messages.create(to="+14155552671", from_=SENDER, body="hello")
    assert exc.value.status in (500, 503)
    assert exc.value.code == {500: 20500, 503: 20503}[exc.value.status]
    assert sb.messages() == []


def test_sendgrid_server_errors_raise_the_sdks_errors(
    sb: Sandbox, sendgrid_client: SendGridAPIClient
) -> None:
    sb.set_faults("sendgrid", FaultConfig(failure_rate=1.0, seed=2))
    seen = set()
    for _ in range(12):
        with pytest.raises((InternalServerError, ServiceUnavailableError)) as exc:
            sendgrid_client.send(MAIL)
        seen.add(exc.value.status_code)
        assert json.loads(exc.value.body)["errors"][0]["message"]
    assert seen == {500, 503}
    assert sb.messages() == []


def test_sendgrid_rate_limit_bursts(sb: Sandbox, sendgrid_client: SendGridAPIClient) -> None:
    sb.set_faults("sendgrid", FaultConfig(rate_limit_every=2, rate_limit_burst=1, retry_after=3))
    statuses = []
    for _ in range(6):
        try:
            statuses.append(sendgrid_client.send(MAIL).status_code)
        except TooManyRequestsError as exc:
            statuses.append(exc.status_code)
            assert json.loads(exc.body) == {"errors": [{"field": None, "message": "too many requests"}]}
            assert exc.headers["X-RateLimit-Remaining"] == "0"
            assert exc.headers["X-RateLimit-Limit"].isdigit()
            assert 0 < int(exc.headers["X-RateLimit-Reset"]) - time.time() <= 4
    assert statuses == [202, 202, 429, 202, 202, 429]
    assert len(sb.messages("sendgrid")) == 4
    assert [r["fault"] for r in sb.requests("sendgrid")].count("rate_limit") == 2


def test_twilio_rate_limit_is_20429_with_retry_after(sb: Sandbox, twilio: Client, http: httpx.Client) -> None:
    sb.set_faults("twilio", FaultConfig(rate_limit_every=1, rate_limit_burst=2, retry_after=2))
    twilio.messages.create(to="+14155552671", from_=SENDER, body="hello")
    with pytest.raises(TwilioRestException) as exc:
        twilio.messages.create(to="+14155552671", from_=SENDER, body="hello")
    assert (exc.value.status, exc.value.code) == (429, 20429)
    assert twilio.http_client._test_only_last_response.headers["Retry-After"] == "2"
    assert len(sb.messages("twilio")) == 1


def test_x_rate_limit_says_when_to_come_back(sb: Sandbox, x: httpx.Client) -> None:
    sb.set_faults("x", {"rate_limit": {"every": 1, "burst": 1, "retry_after": 5}})
    assert x.post("/2/tweets", json={"text": "one"}).status_code == 201
    response = x.post("/2/tweets", json={"text": "two"})
    assert response.status_code == 429
    assert response.headers["x-rate-limit-remaining"] == "0"
    assert response.headers["x-rate-limit-limit"].isdigit()
    assert 4 <= int(response.headers["x-rate-limit-reset"]) - math.floor(time.time()) <= 6
    assert response.json()["status"] == 429
    assert [m["text"] for m in sb.messages("x")] == ["one"]


def test_a_stalled_request_times_the_client_out_and_stores_nothing(sb: Sandbox) -> None:
    sb.set_faults("twilio", FaultConfig(timeout_rate=1.0, stall_seconds=2, seed=1))
    client = twilio_client(sb.url, timeout=0.3)
    started = time.monotonic()
    try:
        with pytest.raises(requests.exceptions.Timeout):
            client.messages.create(to="+14155552671", from_=SENDER, body="hello")
    finally:
        client.http_client.session.close()
    assert time.monotonic() - started < 1.5
    assert sb.messages() == []
    [entry] = sb.requests("twilio")
    assert entry["fault"] == "timeout" and entry["status"] == 503


def test_a_patient_client_gets_503_after_the_stall(sb: Sandbox, x: httpx.Client) -> None:
    sb.set_faults("x", FaultConfig(timeout_rate=1.0, stall_seconds=0.3))
    started = time.monotonic()
    response = x.post("/2/tweets", json={"text": "late"})
    assert time.monotonic() - started >= 0.3
    assert response.status_code == 503
    assert sb.messages() == []


def test_latency_is_added_to_every_response(sb: Sandbox, x: httpx.Client) -> None:
    sb.set_faults("x", FaultConfig(latency_ms=200))
    started = time.monotonic()
    assert x.post("/2/tweets", json={"text": "slow"}).status_code == 201
    assert time.monotonic() - started >= 0.2
    assert len(sb.messages("x")) == 1


def test_faults_of_one_provider_leave_the_others_alone(
    sb: Sandbox, twilio: Client, sendgrid_client: SendGridAPIClient
) -> None:
    sb.set_faults("twilio", FaultConfig(failure_rate=1.0))
    assert sendgrid_client.send(MAIL).status_code == 202
    assert sms_statuses(twilio, 1) != [201]


def test_faults_can_be_set_over_http(sb: Sandbox, http: httpx.Client, twilio: Client) -> None:
    response = http.put("/_sandbox/faults", json={"twilio": {"failure_rate": 1, "seed": 3}, "x": None})
    assert response.status_code == 200
    assert response.json()["twilio"]["failure_rate"] == 1
    assert response.json()["sendgrid"] is None
    assert sb.faults("twilio") == FaultConfig(failure_rate=1, seed=3)
    assert sms_statuses(twilio, 2) != [201, 201]

    http.put("/_sandbox/faults", json={"twilio": None})
    assert sb.faults("twilio") is None
    assert sms_statuses(twilio, 1) == [201]


@pytest.mark.parametrize(
    "body",
    [
        {"sms": {"failure_rate": 0.1}},
        {"twilio": {"failure_rate": 2}},
        {"twilio": {"fail_rate": 0.1}},
        {"twilio": {"rate_limit": {"every": 1, "burst": 1, "wait": 1}}},
        ["twilio"],
    ],
    ids=["unknown-provider", "rate-over-1", "unknown-setting", "unknown-rate-limit-key", "not-an-object"],
)
def test_bad_fault_settings_are_400(http: httpx.Client, body: object) -> None:
    response = http.put("/_sandbox/faults", json=body)
    assert response.status_code == 400
    assert response.json()["error"]


def test_fault_config_reads_yaml_shaped_dicts() -> None:
    config = FaultConfig.from_dict(
        {"failure_rate": 0.1, "rate_limit": {"every": 10, "burst": 3, "retry_after": 2}}
    )
    assert config == FaultConfig(failure_rate=0.1, rate_limit_every=10, rate_limit_burst=3, retry_after=2)
    with pytest.raises(ValueError, match="failure_rate"):
        FaultConfig(failure_rate=-0.1)
    with pytest.raises(ValueError, match="must not exceed 1"):
        FaultConfig(failure_rate=0.6, timeout_rate=0.6)
    with pytest.raises(ValueError, match="rate_limit_every"):
        FaultConfig(rate_limit_burst=2)


def test_faults_given_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    with Sandbox(port=0, faults={"x": {"failure_rate": 1.0}, "twilio": FaultConfig(latency_ms=1)}) as box:
        assert box.faults("x") == FaultConfig(failure_rate=1.0)
        with httpx.Client(base_url=box.url, headers={"Authorization": "Bearer t"}) as client:
            assert client.post("/2/tweets", json={"text": "hi"}).status_code in (500, 503)
    with pytest.raises(ValueError, match="unknown provider"):
        Sandbox(faults={"mail": FaultConfig()})
