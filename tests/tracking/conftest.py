"""A planned run in a fresh ledger, the tracking app on it (in-process), and signers for its webhooks."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from twilio.request_validator import RequestValidator

from clarion.base.settings import ClarionSettings, TrackingSettings
from clarion.base.signing import sign as conversion_signature
from clarion.campaign.loader import load_campaign
from clarion.engine.plan import plan_run
from clarion.ledger import Ledger
from clarion.messages.links import LinkSigner
from clarion.messages.render import Renderer
from clarion.tracking import build_app
from tests.conftest import CampaignDir

RUN = "test-appeal-20261122t190000-ab12"
TWILIO_TOKEN = "twilio-auth-token-for-tests-0000"
CONVERSION_SECRET = "conversion-secret-for-tests-0000"


class AppClient:
    """An httpx client calling the ASGI app in-process, with the app's lifespan run around it.

    (Starlette's TestClient is deprecated with httpx; this is the same idea on httpx's ASGI transport.)
    """

    def __init__(self, app: Starlette) -> None:
        self._portal_cm = anyio.from_thread.start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        self._lifespan = self._portal.wrap_async_context_manager(app.router.lifespan_context(app))
        self._lifespan.__enter__()
        transport = httpx.ASGITransport(app=app)
        self._client = httpx.AsyncClient(transport=transport, base_url="http://testserver")

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self._portal.call(lambda: self._client.request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def head(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("HEAD", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        self._portal.call(self._client.aclose)
        self._lifespan.__exit__(None, None, None)
        self._portal_cm.__exit__(None, None, None)


@dataclass
class Tracked:
    """The service under test, with what a test needs to make genuine (and forged) requests."""

    client: AppClient
    ledger: Ledger
    renderer: Renderer
    campaign: Path
    sendgrid_key: ec.EllipticCurvePrivateKey

    def token(self, channel: str, variant: str, seq: int | None) -> str:
        return self.renderer.token(channel, variant, seq)

    def sendgrid_headers(
        self, body: bytes, *, key: ec.EllipticCurvePrivateKey | None = None
    ) -> dict[str, str]:
        timestamp = str(int(time.time()))
        signature = (key or self.sendgrid_key).sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        }

    def post_sendgrid(self, events: list[dict[str, object]]) -> httpx.Response:
        body = json.dumps(events).encode()
        return self.client.post("/webhooks/sendgrid", content=body, headers=self.sendgrid_headers(body))

    def post_twilio(self, token: str, params: dict[str, str], *, auth: str = TWILIO_TOKEN) -> httpx.Response:
        url = f"http://testserver/webhooks/twilio?ct={token}"
        signature = RequestValidator(auth).compute_signature(url, params)
        return self.client.post(
            url,
            data=params,
            headers={"X-Twilio-Signature": signature},
        )

    def twilio_signature(self, url: str, params: dict[str, str], *, auth: str = TWILIO_TOKEN) -> str:
        return str(RequestValidator(auth).compute_signature(url, params))

    def post_inbound(
        self, sender: str, body: str, *, auth: str = TWILIO_TOKEN, **extra: str
    ) -> httpx.Response:
        """A reply to one of our texts, as Twilio's inbound-message webhook posts it."""
        url = "http://testserver/webhooks/twilio/inbound"
        params = {"MessageSid": "SM" + "0" * 32, "From": sender, "To": "+15005550006", "Body": body, **extra}
        signature = RequestValidator(auth).compute_signature(url, params)
        return self.client.post(url, data=params, headers={"X-Twilio-Signature": signature})

    def post_conversion(
        self, payload: dict[str, object], *, at: float | None = None, secret: str = CONVERSION_SECRET
    ) -> httpx.Response:
        body = json.dumps(payload).encode()
        timestamp = str(int(time.time() if at is None else at))
        headers = {
            "Content-Type": "application/json",
            "X-Clarion-Timestamp": timestamp,
            "X-Clarion-Signature": conversion_signature(secret.encode(), timestamp, body),
        }
        return self.client.post("/webhooks/conversion", content=body, headers=headers)


def public_key_text(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


@pytest.fixture
def tracked(campaign_dir: CampaignDir) -> Iterator[Tracked]:
    """The service with its per-client limits off (tests/tracking/test_limits.py turns them on)."""
    with tracking_service(campaign_dir, clarion_rate_limit="off", clarion_reject_limit="off") as service:
        yield service


@contextmanager
def tracking_service(campaign_dir: CampaignDir, **settings_: Any) -> Iterator[Tracked]:
    path = campaign_dir.campaign()
    ledger = Ledger(ClarionSettings().ledger_url())
    ledger.migrate()
    plan_run(ledger, load_campaign(path), RUN)
    key = ec.generate_private_key(ec.SECP256R1())
    settings = TrackingSettings(clarion_conversion_secret=CONVERSION_SECRET, **settings_)
    keys = {"SENDGRID_WEBHOOK_PUBLIC_KEY": public_key_text(key), "TWILIO_AUTH_TOKEN": TWILIO_TOKEN}
    app = build_app(ledger, signer=LinkSigner.from_settings(), settings=settings, environ=keys)
    renderer = Renderer(load_campaign(path), LinkSigner.from_settings(), RUN)
    client = AppClient(app)
    try:
        yield Tracked(client, ledger, renderer, path, key)
    finally:
        client.close()
        ledger.close()
