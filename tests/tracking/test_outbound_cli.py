"""Outbound events over a real socket: a receiver on 127.0.0.1 gets them from `clarion webhooks deliver`,
from the delivery thread `clarion serve` runs (OutboxWorker), and a signed ping from `clarion webhooks test`;
`clarion webhooks status` and `retry` show and steer the queue."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from typer.testing import CliRunner

from clarion.base import signing
from clarion.base.settings import ClarionSettings
from clarion.campaign.loader import load_campaign
from clarion.cli.main import app
from clarion.engine.plan import plan_run
from clarion.ledger import Click, Conversion, Ledger
from clarion.tracking.outbound import OutboxWorker
from tests.conftest import CAMPAIGN, CampaignDir

SECRET = "hook-secret-for-tests-00000000000"
RUN = "test-appeal-20261203t090000-ef56"


class Receiver:
    def __init__(self) -> None:
        self.events: list[dict[str, object]] = []
        self.status = 204

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        try:
            signing.verify(SECRET.encode(), body, request.headers, what="event")
        except signing.SignatureError:
            return Response(status_code=401)
        if self.status == 204:
            self.events.append(json.loads(body))
        return Response(status_code=self.status)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    found = Receiver()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(Starlette(routes=[Route("/hook", found.hook, methods=["POST"])]), log_level="warning")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield found, f"http://127.0.0.1:{port}/hook"
    server.should_exit = True
    thread.join(5)
    sock.close()


def planned(campaign_dir: CampaignDir, url: str) -> Ledger:
    hooks = f"webhooks_out:\n  - url: {url}\n    events: [clicked, converted]\n    secret: ${{HOOK_SECRET}}\n"
    path = campaign_dir.campaign(CAMPAIGN + hooks)
    ledger = Ledger(ClarionSettings().ledger_url())
    ledger.migrate()
    plan_run(ledger, load_campaign(path), RUN)
    return ledger


def test_the_cli_delivers_reports_and_retries(
    campaign_dir: CampaignDir, receiver: tuple[Receiver, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    found, url = receiver
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    monkeypatch.setenv("CLARION_WEBHOOKS_MAX_ATTEMPTS", "1")
    ledger = planned(campaign_dir, url)
    ledger.record(click_rows=[Click(RUN, "email", "a", 0, datetime.now(UTC))])
    found.status = 500
    failed = CliRunner().invoke(app, ["webhooks", "deliver"])
    assert failed.exit_code == 0, failed.output
    assert "queued 1, delivered 0, failed 0, dead 1" in failed.output
    status = CliRunner().invoke(app, ["webhooks", "status", "--json"])
    assert json.loads(status.output)[url]["dead"] == 1
    found.status = 204
    assert "1 dead event(s) pending again" in CliRunner().invoke(app, ["webhooks", "retry"]).output
    again = CliRunner().invoke(app, ["webhooks", "deliver"])
    assert "delivered 1" in again.output
    assert [e["type"] for e in found.events] == ["clicked"]
    ping = CliRunner().invoke(app, ["webhooks", "test", url, "--secret-env", "HOOK_SECRET"])
    assert ping.exit_code == 0 and "answered 204" in ping.output
    assert found.events[-1]["type"] == "ping"
    unset = CliRunner().invoke(app, ["webhooks", "test", url, "--secret-env", "NOT_SET_ANYWHERE"])
    assert unset.exit_code == 1 and "NOT_SET_ANYWHERE" in unset.output and "Traceback" not in unset.output


def test_the_serve_thread_delivers_as_events_happen(
    campaign_dir: CampaignDir, receiver: tuple[Receiver, str]
) -> None:
    found, _url = receiver
    ledger = planned(campaign_dir, _url)
    worker = OutboxWorker(ledger, environ={"HOOK_SECRET": SECRET}, timeout=5, max_attempts=3, every=0.2)
    worker.start()
    try:
        gift = Conversion(RUN, "stripe", "pi_1", "b", 1500, "USD", datetime.now(UTC), "email", 1)
        ledger.record(conversion_rows=[gift])
        deadline = time.monotonic() + 20
        while not found.events and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.stop()
    assert [(e["type"], e["amount"], e["contact"]) for e in found.events] == [("converted", "15.00", "c-002")]


def test_purge_forgets_only_delivered_events(
    campaign_dir: CampaignDir, receiver: tuple[Receiver, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _found, url = receiver
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    ledger = planned(campaign_dir, url)
    ledger.record(click_rows=[Click(RUN, "email", "a", 0, datetime.now(UTC))])
    CliRunner().invoke(app, ["webhooks", "deliver"])
    assert "0 delivered event(s) forgotten" in CliRunner().invoke(app, ["webhooks", "purge"]).output
    assert (
        "1 delivered event(s) forgotten"
        in CliRunner().invoke(app, ["webhooks", "purge", "--older-than", "0s"]).output
    )
    bad = CliRunner().invoke(app, ["webhooks", "purge", "--older-than", "a while"])
    assert bad.exit_code == 2 and "--older-than" in bad.output
