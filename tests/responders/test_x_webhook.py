"""X's webhook: the CRC answer and the signature, checked against X's own worked example; AAA parsing."""

from __future__ import annotations

import json

from clarion.channels.x.webhooks import (
    crc_response,
    parse_dm_events,
    parse_webhook,
    sign_body,
    verify_signature,
)

SECRET = "z3ZX4v7mAAUGykl3EcmkqbartmuW8VFOOzCloLx9Q45P0hLrFu"  # X's sample consumer secret (its CRC gists)


def test_crc_matches_xs_worked_example() -> None:
    answer = crc_response("9b4507b3-9040-4669-9ca3-6b94edb50553", SECRET)
    assert answer == {"response_token": "sha256=Cytd4Sq+NvEcV3MMrXxWJGJx5A+y/lXzzU2Maartkx8="}


def test_signature_matches_xs_worked_example_over_the_raw_bytes() -> None:
    body = b'{"for_user_id":"4337869213"}'
    assert sign_body(body, SECRET) == "sha256=5OEASBfLlp2+SCbU77qr2hG/Vv2i2PXIVV/3Ak7n97o="
    assert verify_signature(body, "sha256=5OEASBfLlp2+SCbU77qr2hG/Vv2i2PXIVV/3Ak7n97o=", SECRET)
    assert not verify_signature(body + b" ", "sha256=5OEASBfLlp2+SCbU77qr2hG/Vv2i2PXIVV/3Ak7n97o=", SECRET)
    assert not verify_signature(body, None, SECRET)
    assert not verify_signature(body, "sha256=é", SECRET)


def _event(
    sender: str, recipient: str, text: str, event_id: str, app: str | None = None
) -> dict[str, object]:
    create: dict[str, object] = {
        "target": {"recipient_id": recipient},
        "sender_id": sender,
        "message_data": {"text": text},
    }
    if app:
        create["source_app_id"] = app
    return {
        "type": "message_create",
        "id": event_id,
        "created_timestamp": "1516403560557",
        "message_create": create,
    }


def test_aaa_delivers_our_own_dms_too_and_they_are_dropped() -> None:
    body = {
        "for_user_id": "4337869213",
        "direct_message_events": [
            _event("3001969357", "4337869213", "94110", "1"),
            _event("4337869213", "3001969357", "our reply", "2"),
            {"type": "message_create", "id": "3"},
            _event("3001969357", "4337869213", "from a bot of ours", "4", app="99"),
        ],
        "direct_message_indicate_typing_events": [{}],
    }
    parsed = parse_webhook(json.dumps(body).encode(), own_app_ids=["99"])
    assert [(m.message_id, m.sender, m.text, m.to) for m in parsed.messages] == [
        ("1", "3001969357", "94110", "4337869213")
    ]
    assert {why for _, why in parsed.skipped} == {
        "sent by the subscribed account (our own reply)",
        "incomplete message_create",
        "sent by our own app",
    }


def test_x_activity_api_dm_received_is_read_and_other_events_are_not() -> None:
    event = _event("2222222222222222222", "1111111111111111111", "hello!", "2080765901528535096")
    body = {
        "data": {
            "event_type": "dm.received",
            "filter": {"user_id": "1111111111111111111"},
            "payload": {"direct_message_events": [event]},
        }
    }
    assert [m.text for m in parse_webhook(body).messages] == ["hello!"]
    chat = {"data": {"event_type": "chat.received", "filter": {"user_id": "1"}}}
    assert parse_webhook(chat).messages == []


def test_polled_dm_events_skip_our_own_and_group_conversations() -> None:
    page = {
        "data": [
            {
                "id": "3",
                "event_type": "MessageCreate",
                "text": "94110",
                "sender_id": "7",
                "dm_conversation_id": "1-7",
            },
            {
                "id": "2",
                "event_type": "MessageCreate",
                "text": "ours",
                "sender_id": "1",
                "dm_conversation_id": "1-7",
            },
            {
                "id": "1",
                "event_type": "MessageCreate",
                "text": "group",
                "sender_id": "8",
                "dm_conversation_id": "99",
            },
        ]
    }
    parsed = parse_dm_events(page, "1")
    assert [m.message_id for m in parsed.messages] == ["3"]
