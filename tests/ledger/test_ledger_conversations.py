"""Conversations on SQLite and PostgreSQL: a message recorded once, one reply per message, concurrent
deliveries of the same message deciding once, the address kept only while a reply is in transit."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from clarion.ledger import Ledger, Suppression
from clarion.ledger.conversations import ConversationState, Decision, InboundMessage, Outgoing


def _message(provider_id: str, *, key: str = "k" * 32, address: str = "+14155550100") -> InboundMessage:
    return InboundMessage(
        "resp", "sms", key, "twilio", provider_id, "94110", datetime.now(UTC), "sms", address
    )


def _reply(state: ConversationState) -> Decision:
    return Decision(
        "zip", "pattern", reply=Outgoing("zip", "reply", f"hi {state.replies_last_hour}", "+14155550100")
    )


def test_a_message_is_received_once_and_answered_once(ledger: Ledger) -> None:
    first = ledger.receive(_message("SM1"), _reply)
    again = ledger.receive(_message("SM1"), _reply)

    assert not first.duplicate and first.reply_id is not None
    assert again.duplicate and again.reply_id is None
    assert ledger.claim_reply(first.reply_id) and not ledger.claim_reply(first.reply_id)
    ledger.settle_reply(first.reply_id, "sent", "SMabc")
    rows = ledger.conversation_messages("resp")
    assert [(r["direction"], r["state"], r["provider_id"], r["recipient"]) for r in rows] == [
        ("in", "answered", "SM1", None),
        ("out", "sent", "SMabc", None),
    ]


def test_state_counts_replies_in_the_last_hour_and_sees_suppression(ledger: Ledger) -> None:
    seen: list[ConversationState] = []

    def look(state: ConversationState) -> Decision:
        seen.append(state)
        return _reply(state)

    ledger.receive(_message("SM1"), look)
    ledger.suppress([Suppression("sms", "+14155550100", "sms_stop", "test")])
    ledger.receive(_message("SM2"), look)

    assert [s.replies_last_hour for s in seen] == [0, 1]
    assert [s.suppressed for s in seen] == [False, True]
    assert seen[1].last_reply == "hi 0" and seen[0].id == seen[1].id


def test_concurrent_deliveries_of_one_message_decide_once(open_ledger: object) -> None:
    ledgers = [open_ledger() for _ in range(4)]  # type: ignore[operator]
    ledgers[0].migrate()
    barrier = threading.Barrier(len(ledgers))
    decided: list[int] = []

    def deliver(store: Ledger) -> None:
        barrier.wait()

        def decide(state: ConversationState) -> Decision:
            decided.append(state.id)
            return _reply(state)

        store.receive(_message("SM-same"), decide)

    threads = [threading.Thread(target=deliver, args=(s,)) for s in ledgers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(decided) == 1
    assert sum(r["direction"] == "out" for r in ledgers[0].conversation_messages("resp")) == 1


def test_a_crash_mid_send_is_uncertain_and_queued_replies_are_recovered(ledger: Ledger) -> None:
    sending = ledger.receive(_message("SM1"), _reply).reply_id
    queued = ledger.receive(_message("SM2", key="q" * 32), _reply).reply_id
    assert sending is not None and queued is not None
    ledger.claim_reply(sending)

    recovered = ledger.recover_replies("resp")

    assert [r.id for r in recovered] == [queued] and recovered[0].recipient == "+14155550100"
    states = ledger.reply_states([sending, queued])
    assert states == {sending: "uncertain", queued: "queued"}


def test_purge_erases_old_texts_only(ledger: Ledger) -> None:
    ledger.receive(_message("SM1"), _reply)
    assert ledger.purge_texts("resp", datetime.now(UTC) - timedelta(days=1)) == 0
    assert ledger.purge_texts("resp", datetime.now(UTC) + timedelta(seconds=1)) == 2
    assert all(r["text"] is None for r in ledger.conversation_messages("resp"))
