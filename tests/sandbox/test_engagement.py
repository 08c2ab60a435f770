"""Sandbox engagement: simulated recipients act through a receiver that verifies like the tracking service.

The receiver here is a stand-in for the tracking service, checking the signatures with the providers' own
verifiers (sendgrid's EventWebhook, twilio's RequestValidator) and the conversion HMAC, so these tests pin the
wire contract; tests/flows/test_engagement_e2e.py runs the real service.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections import Counter
from typing import Any
from urllib.parse import parse_qsl

import pytest
from sendgrid import SendGridAPIClient
from sendgrid.helpers.eventwebhook import EventWebhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from clarion.base.serving import BackgroundServer
from clarion.sandbox import Sandbox
from tests.sandbox.conftest import ACCOUNT_SID, twilio_client

SECRET = "conversion-secret-for-sandbox-tests"
AUTH = "sandbox-test-auth-token"


class Receiver:
    """Plays the tracking service: tokens "tok-<variant>-<n>..." redirect with that variant."""

    def __init__(self, sandbox: Sandbox, *, fail: bool = False) -> None:
        self.seen: Counter[str] = Counter()
        self.bad_signatures = 0
        self.events: list[dict[str, Any]] = []
        self.fail = fail
        verifier = EventWebhook(public_key=sandbox.webhook_environment()["SENDGRID_WEBHOOK_PUBLIC_KEY"])

        self.agents: list[str] = []
        self.click_times: list[float] = []

        async def click(request: Request) -> Response:
            token = request.path_params["token"]
            variant = token.split("-")[1]
            if request.method == "GET":
                self.seen[f"click-{variant}"] += 1
                self.agents.append(request.headers.get("user-agent", ""))
                self.click_times.append(time.monotonic())
            return RedirectResponse(
                f"https://cta.example/?utm_source=email&utm_content={variant}&ct={token}", 302
            )

        async def sendgrid(request: Request) -> Response:
            body = await request.body()
            ok = verifier.verify_signature(
                body.decode(),
                request.headers["X-Twilio-Email-Event-Webhook-Signature"],
                request.headers["X-Twilio-Email-Event-Webhook-Timestamp"],
            )
            self.bad_signatures += not ok
            self.events.extend(json.loads(body))
            return JSONResponse({}, 500 if self.fail else 200)

        async def twilio(request: Request) -> Response:
            params = dict(parse_qsl((await request.body()).decode()))
            ok = RequestValidator(AUTH).validate(
                str(request.url), params, request.headers["X-Twilio-Signature"]
            )
            self.bad_signatures += not ok
            self.seen[f"sms-{params['MessageStatus']}"] += 1
            return JSONResponse({})

        async def conversion(request: Request) -> Response:
            body = await request.body()
            stamp = request.headers["X-Clarion-Timestamp"]
            expected = (
                "v1=" + hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
            )
            self.bad_signatures += request.headers["X-Clarion-Signature"] != expected
            self.seen["conversion"] += 1
            return JSONResponse({})

        self.app = Starlette(
            routes=[
                Route("/c/{token}", click, methods=["GET", "HEAD"]),
                Route("/webhooks/sendgrid", sendgrid, methods=["POST"]),
                Route("/webhooks/twilio", twilio, methods=["POST"]),
                Route("/webhooks/conversion", conversion, methods=["POST"]),
            ]
        )


def send_emails(sb: Sandbox, count: int) -> None:
    client = SendGridAPIClient(api_key="SG.test", host=sb.url)
    personalizations = [
        {
            "to": [{"email": f"p{i}@example.org"}],
            "substitutions": {"-link-": f"https://go.example.org/c/tok-{'ab'[i % 2]}-{i:020d}"},
        }
        for i in range(count)
    ]
    payload = {
        "personalizations": personalizations,
        "from": {"email": "team@example.org"},
        "subject": "Hi",
        "content": [{"type": "text/plain", "value": "Give: -link-"}],
    }
    client.client.mail.send.post(request_body=payload)


def settings(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "tracking_url": url,
        "conversion_secret": SECRET,
        "twilio_auth_token": AUTH,
        "seed": 11,
        "channels": {
            "email": {"delivered": 0.9, "open": 0.5, "click": {"a": 0.1, "b": 0.4}, "convert": 0.5},
            "*": {"click": 0.0},
        },
        **extra,
    }


def test_recipients_act_per_variant_with_signatures_that_verify(sb: Sandbox) -> None:
    receiver = Receiver(sb)
    with BackgroundServer(receiver.app, lifespan="off") as server:
        sb.set_engagement(settings(server.url))
        try:
            send_emails(sb, 600)
            stats = sb.wait_engaged(timeout=60)
        finally:
            sb.set_engagement(None)
    assert receiver.bad_signatures == 0
    assert stats["failures"] == 0 and stats["done"] == 600
    kinds = Counter(e["event"] for e in receiver.events)
    assert kinds["processed"] == 600
    assert kinds["delivered"] + kinds["bounce"] == 600
    assert 480 < kinds["delivered"] < 590
    assert receiver.seen["click-b"] > 2 * receiver.seen["click-a"] > 0
    assert 0 < receiver.seen["conversion"] <= receiver.seen["click-a"] + receiver.seen["click-b"]
    assert stats["clicks"] == receiver.seen["click-a"] + receiver.seen["click-b"]


def test_scanners_fetch_on_delivery_and_people_click_later(sb: Sandbox) -> None:
    """A share of recipients sit behind a mail scanner (half announce themselves in the User-Agent); people
    click `click_delay_s` after delivery, scheduled without holding the workers."""
    receiver = Receiver(sb)
    config = settings("", click_delay_s={"min": 1, "max": 2})
    config["channels"]["email"] = {**config["channels"]["email"], "scanner": 0.3, "click": 0.2}
    with BackgroundServer(receiver.app, lifespan="off") as server:
        config["tracking_url"] = server.url
        sb.set_engagement(config)
        try:
            started = time.monotonic()
            send_emails(sb, 300)
            stats = sb.wait_engaged(timeout=60)
        finally:
            sb.set_engagement(None)
    from clarion.sandbox.recipients import HUMAN_AGENT, SCANNER_AGENTS

    people = [t for a, t in zip(receiver.agents, receiver.click_times, strict=True) if a == HUMAN_AGENT]
    scanners = [a for a in receiver.agents if a != HUMAN_AGENT]
    assert stats["failures"] == 0
    assert stats["scanner_clicks"] == len(scanners) and 40 < len(scanners) < 120  # 30% of ~270 delivered
    assert any(a in SCANNER_AGENTS for a in scanners) and any(a not in SCANNER_AGENTS for a in scanners)
    assert people and min(people) - started >= 1.0  # nobody clicks before the delay
    assert stats["clicks"] == len(people)


def test_engagement_is_reproducible_for_a_seed(sb: Sandbox) -> None:
    found = []
    for _ in range(2):
        sb.reset()
        receiver = Receiver(sb)
        with BackgroundServer(receiver.app, lifespan="off") as server:
            sb.set_engagement(settings(server.url))
            send_emails(sb, 200)
            sb.wait_engaged(timeout=60)
            sb.set_engagement(None)
        found.append(dict(receiver.seen))
    assert found[0] == found[1]


def test_sms_status_callbacks_are_signed_for_the_url_they_reach(sb: Sandbox) -> None:
    receiver = Receiver(sb)
    with BackgroundServer(receiver.app, lifespan="off") as server:
        sb.set_engagement(settings(server.url))
        client = twilio_client(sb.url)
        for i in range(5):
            client.messages.create(
                to=f"+1415555{i:04d}"[:12],
                from_="+15005550006",
                body=f"Give https://go.example.org/c/tok-a-{i:020d}",
                status_callback=f"https://go.example.org/webhooks/twilio?ct=tok-a-{i:020d}",
            )
        stats = sb.wait_engaged(timeout=60)
        sb.set_engagement(None)
    assert receiver.bad_signatures == 0
    assert receiver.seen["sms-sent"] == 5
    assert stats["callbacks_posted"] == 10
    assert ACCOUNT_SID


def test_a_failing_receiver_is_retried_then_counted(sb: Sandbox) -> None:
    receiver = Receiver(sb, fail=True)
    with BackgroundServer(receiver.app, lifespan="off") as server:
        sb.set_engagement(settings(server.url, channels={"*": {"delivered": 1.0}}))
        send_emails(sb, 3)
        stats = sb.wait_engaged(timeout=60)
        sb.set_engagement(None)
    assert stats["failures"] == 1
    assert len(receiver.events) == 3 * 2 * 3  # 3 attempts of one batch of 6 events
    assert "500" in str(stats["last_error"])


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({}, "tracking_url"),
        ({"tracking_url": "ftp://x"}, "tracking_url"),
        ({"tracking_url": "http://x", "channels": {"email": {"delivered": 2}}}, "channels.email.delivered"),
        ({"tracking_url": "http://x", "chanels": {}}, "chanels"),
    ],
)
def test_bad_engagement_settings_name_the_field(sb: Sandbox, config: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        sb.set_engagement(config)
