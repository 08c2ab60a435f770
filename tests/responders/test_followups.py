"""Follow-ups wait for quiet hours (a reply to someone who just wrote does not); texts expire; polling."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from clarion.sandbox import Sandbox
from tests.responders.conftest import Desk, start_desk

BEN = "+12025550123"  # a Washington, DC number: America/New_York


@pytest.fixture
def quiet_desk(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, responder_copy: Path) -> Iterator[Desk]:
    """The example with a sending window that opens 2 h from now in New York, and questions open 6 h."""
    ny = datetime.now(UTC).astimezone(ZoneInfo("America/New_York"))
    start, end = (ny + timedelta(hours=2)).strftime("%H:%M"), (ny + timedelta(hours=3)).strftime("%H:%M")
    text = responder_copy.read_text()
    text = text.replace(
        "    max_segments: 3\n", f'    max_segments: 3\n    quiet_hours: {{start: "{start}", end: "{end}"}}\n'
    )
    text = text.replace("within: 30m", "within: 6h")
    responder_copy.write_text(text)
    running = start_desk(sandbox, monkeypatch, responder_copy)
    try:
        yield running
    finally:
        running.server.stop()
        running.ledger.close()


def test_quiet_hours_hold_the_reminder_but_not_the_reply(quiet_desk: Desk) -> None:
    desk = quiet_desk
    desk.text(BEN, "VOLUNTEER")
    [reply] = desk.replies(expect=1)  # outside the window, and answered at once
    assert reply["text"].startswith("Thank you!")
    sender = desk.app.state.service.replies
    now = datetime.now(UTC)

    assert sender.sweep(now + timedelta(minutes=11)) == 0  # due, but it is night for Ben: held
    [row] = desk.ledger.due_reminders("register-by-zip", now + timedelta(hours=3))
    assert row["remind_at"] > now + timedelta(hours=1, minutes=55)
    assert row["reply_to"] == BEN  # kept only while the reminder is due

    assert sender.sweep(now + timedelta(hours=2, minutes=1)) == 1
    replies = desk.replies(expect=2)
    assert replies[-1]["text"] == "Still want to volunteer? Send your 5-digit zip code."
    assert desk.ledger.due_reminders("register-by-zip", now + timedelta(days=1)) == []
    conversation = desk.messages()[-1]
    assert conversation["rule"] == "volunteer/remind" and conversation["recipient"] is None


def test_no_reminder_once_the_question_is_answered(quiet_desk: Desk) -> None:
    quiet_desk.text(BEN, "VOLUNTEER")
    quiet_desk.replies(expect=1)
    quiet_desk.text(BEN, "20001")
    quiet_desk.replies(expect=2)
    now = datetime.now(UTC)
    assert quiet_desk.app.state.service.replies.sweep(now + timedelta(hours=2, minutes=1)) == 0
    assert quiet_desk.ledger.due_reminders("register-by-zip", now + timedelta(days=1)) == []


def test_texts_are_erased_after_the_retention_and_the_funnel_stays(desk: Desk) -> None:
    desk.text(BEN, "94110")
    desk.replies(expect=1)
    sender = desk.app.state.service.replies
    sender.sweep(datetime.now(UTC) + timedelta(days=29))
    assert all(r["text"] for r in desk.messages())
    sender.sweep(datetime.now(UTC) + timedelta(days=31))
    rows = desk.messages()
    assert rows and all(r["text"] is None for r in rows)
    from clarion.responders.report import funnel

    [rule] = funnel(desk.ledger, "register-by-zip")["rules"]
    assert rule["replied"]["people"] == 1


def test_polling_answers_new_dms_once(desk: Desk) -> None:
    from clarion.channels.x.inbox import ACCOUNT_ID
    from flows.dm_poll import poll_once
    from tests.responders.conftest import EXAMPLE

    inbox = desk.sandbox.state.control("x").inbox
    inbox._remember("501", "3001969357", ACCOUNT_ID, "94110")  # arrived while no webhook was registered
    log = logging.getLogger("test")
    first = poll_once([str(EXAMPLE / "responder.yaml")], log)
    second = poll_once([str(EXAMPLE / "responder.yaml")], log)

    assert first.get("pattern") == 1 and second.get("duplicate") == 1
    [reply] = desk.sandbox.messages("x")
    assert reply["to"] == "3001969357" and reply["text"].startswith("California")
