"""The sandbox's X DM endpoints through tweepy (the adapter), and people writing in through its HTTP API."""

from __future__ import annotations

import httpx
import pytest

from clarion.channels.base import SendOutcome
from clarion.responders.model import DmChannel
from clarion.responders.sender import make_adapter
from clarion.sandbox import Sandbox
from tests.conftest import point_adapters_at
from tests.responders.conftest import Desk


def test_direct_messages_through_tweepy(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    point_adapters_at(sandbox, monkeypatch, timeout=5)
    adapter = make_adapter("dm", DmChannel(provider="x", account_id="1500000000000000001"))

    sent = adapter.direct_message("3001969357", "Hello from the responder")
    page = adapter.direct_message_events()

    assert sent.outcome is SendOutcome.SENT and sent.provider_id
    [record] = sandbox.messages("x")
    assert (
        record["kind"] == "dm" and record["to"] == "3001969357" and record["provider_id"] == sent.provider_id
    )
    [event] = page["data"]
    assert event["id"] == sent.provider_id and event["sender_id"] == "1500000000000000001"
    assert event["dm_conversation_id"] == "1500000000000000001-3001969357"
    too_long = adapter.direct_message("3001969357", "x" * 10_001)
    assert too_long.outcome is SendOutcome.REJECTED and too_long.code == "400"


def test_people_write_in_through_the_sandbox_api(desk: Desk) -> None:
    write = desk.sandbox.url + "/_sandbox/people/write"
    sms = httpx.post(
        write,
        json={
            "provider": "twilio",
            "from": "+14155550100",
            "text": "94110",
            "webhook": desk.url + "/webhooks/twilio/inbound",
        },
    )
    dm = httpx.post(
        write,
        json={
            "provider": "x",
            "from": "3001969357",
            "text": "VOLUNTEER",
            "webhook": desk.url + "/webhooks/x",
        },
    )
    wrong = httpx.post(write, json={"provider": "fax", "from": "1", "text": "x", "webhook": desk.url})

    assert sms.json()["status"] == dm.json()["status"] == 200
    assert wrong.status_code == 400 and "twilio (SMS) or x (DM)" in wrong.json()["error"]
    assert {m["provider"] for m in desk.replies(expect=2)} == {"twilio", "x"}


def test_clarion_report_shows_a_responders_funnel(desk: Desk) -> None:
    from typer.testing import CliRunner

    from clarion.cli.main import app
    from tests.responders.conftest import EXAMPLE

    desk.text("+14155550100", "94110")
    desk.text("+14155550101", "what is this")
    desk.replies(expect=2)
    result = CliRunner().invoke(app, ["report", str(EXAMPLE / "responder.yaml")])

    assert result.exit_code == 0, result.output
    assert "2 people wrote in" in result.output and "zip" in result.output
    assert "what is this" in result.output  # what fell through to the fallback
    data = CliRunner().invoke(app, ["report", "responder-register-by-zip", "--json"])
    assert '"inbound_people": 2' in data.output
