"""A responder answering through the tracking service (uvicorn, in a thread) and the provider sandbox."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clarion.base.serving import BackgroundServer
from clarion.base.settings import TrackingSettings
from clarion.ledger import Ledger
from clarion.responders.validation import validate_responder
from clarion.sandbox import Sandbox
from clarion.tracking import build_app
from tests.conftest import REPO, point_adapters_at

EXAMPLE = REPO / "examples/register-by-zip"
NUMBER = "+15005550006"  # the example's number
ACCOUNT = "1500000000000000001"  # the example's (and the sandbox's) X account


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as running:
        yield running


@dataclass
class Desk:
    """The service answering with one responder, and the sandbox playing the people who write in."""

    sandbox: Sandbox
    server: BackgroundServer
    ledger: Ledger
    app: Any

    @property
    def url(self) -> str:
        return self.server.url

    def text(self, sender: str, body: str, *, sid: str | None = None, to: str = NUMBER) -> Any:
        return self.sandbox.write_sms(
            sender, body, webhook=self.url + "/webhooks/twilio/inbound", to=to, message_sid=sid
        )

    def dm(self, sender: str, body: str, *, event_id: str | None = None) -> Any:
        return self.sandbox.write_dm(sender, body, webhook=self.url + "/webhooks/x", event_id=event_id)

    def replies(
        self, provider: str | None = None, *, expect: int | None = None, timeout: float = 10
    ) -> list[dict[str, Any]]:
        """Replies at the sandbox; with `expect`, wait until that many arrived (and a moment for more)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.sandbox.messages(provider)]
            if expect is None or len(found) >= expect or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        self.settle()
        return list(self.sandbox.messages(provider))

    def settle(self, timeout: float = 10) -> None:
        """Wait until no reply is queued or being sent."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.ledger.conversation_messages("register-by-zip")
            if not any(r["state"] in ("queued", "sending") for r in rows):
                return
            time.sleep(0.02)

    def messages(self) -> list[dict[str, Any]]:
        return self.ledger.conversation_messages(self.app.state.service.replies.responders.loaded[0].name)


def start_desk(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, responder: Path, **settings: Any) -> Desk:
    point_adapters_at(sandbox, monkeypatch, timeout=5)
    ledger = Ledger.open()
    loaded = validate_responder(responder).loaded
    tracking = TrackingSettings(clarion_rate_limit="off", clarion_reject_limit="off", **settings)
    app = build_app(ledger, settings=tracking, environ=sandbox.webhook_environment(), responders=[loaded])
    server = BackgroundServer(app, name="tracking service").start()
    return Desk(sandbox, server, ledger, app)


@pytest.fixture
def desk(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[Desk]:
    running = start_desk(sandbox, monkeypatch, EXAMPLE / "responder.yaml")
    try:
        yield running
    finally:
        running.server.stop()
        running.ledger.close()


@pytest.fixture
def responder_copy(tmp_path: Path) -> Path:
    """A copy of the example responder folder, to edit."""
    target = tmp_path / "register-by-zip"
    shutil.copytree(EXAMPLE, target)
    return target / "responder.yaml"
