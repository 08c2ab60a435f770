"""One sandbox for the whole sandbox suite, emptied and fault-free before each test, and SDK clients for it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sendgrid import SendGridAPIClient
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from clarion import channels
from clarion.sandbox import Sandbox

PROVIDERS = channels.providers()

ACCOUNT_SID = "AC" + "0" * 32
OPTED_OUT = "+15005550009"


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[Sandbox]:
    with Sandbox(port=0, opted_out={OPTED_OUT}) as box:
        yield box


@pytest.fixture
def sb(sandbox_server: Sandbox) -> Iterator[Sandbox]:
    sandbox_server.reset()
    for provider in PROVIDERS:
        sandbox_server.set_faults(provider, None)
    yield sandbox_server
    for provider in PROVIDERS:
        sandbox_server.set_faults(provider, None)


@pytest.fixture
def sendgrid_client(sb: Sandbox) -> SendGridAPIClient:
    return SendGridAPIClient(api_key="SG.test", host=sb.url)


def twilio_client(url: str, timeout: float | None = None) -> Client:
    client = Client(ACCOUNT_SID, "token", http_client=TwilioHttpClient(timeout=timeout))
    client.api.base_url = url
    return client


@pytest.fixture
def twilio(sb: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    for var in ("TWILIO_EDGE", "TWILIO_REGION"):
        monkeypatch.delenv(var, raising=False)
    client = twilio_client(sb.url)
    yield client
    client.http_client.session.close()


@pytest.fixture
def x(sb: Sandbox) -> Iterator[httpx.Client]:
    """A client for the X endpoints with a bearer token, as tweepy sends it."""
    with httpx.Client(base_url=sb.url, headers={"Authorization": "Bearer x-token"}, timeout=5) as client:
        yield client


@pytest.fixture
def http(sb: Sandbox) -> Iterator[httpx.Client]:
    """A plain client for the sandbox's own endpoints."""
    with httpx.Client(base_url=sb.url, timeout=5) as client:
        yield client
