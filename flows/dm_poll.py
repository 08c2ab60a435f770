"""The polling fallback for X direct messages: a Prefect flow that reads the account's newest DM events
(`GET /2/dm_events` through tweepy's `get_direct_message_events`) and answers them as the webhook would,
for accounts without webhook (Account Activity) access.

`clarion responders poll FILE` runs it once; `--every 60` serves it as a Prefect deployment with an
interval schedule. Nothing is answered twice: every event goes through the same ledger `receive` as a
webhook delivery, which finds an event id it has seen (the previous poll's, or the webhook's) and does
nothing. Mind X's limit on the lookup (15 requests per 15 minutes per user in its current table): poll
every 60 s or slower.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect import flow, get_run_logger

from clarion.base.consent import classify_reply
from clarion.base.settings import ClarionSettings
from clarion.channels.base import ProviderError
from clarion.channels.x.webhooks import parse_dm_events
from clarion.ledger import Ledger, Suppression
from clarion.messages.links import LinkSigner
from clarion.responders.engine import Responders
from clarion.responders.model import DmChannel
from clarion.responders.sender import ReplySender, make_adapter
from clarion.responders.validation import validate_responder


@flow(name="clarion-dm-poll", log_prints=False)
def poll_direct_messages(files: list[str]) -> dict[str, int]:
    """Read each responder's X account's newest DMs, answer what is new; returns what happened, counted."""
    return poll_once(files, get_run_logger())


def poll_once(files: list[str], logger: Any) -> dict[str, int]:
    """One poll of every responder's X account (the flow's body; tests call it directly)."""
    ledger = Ledger.open()
    loaded = [validate_responder(f).loaded for f in files]
    answering = Responders(loaded, ledger, LinkSigner.from_settings(), ClarionSettings().signing_key())
    answering.start()
    sender = ReplySender(answering, workers=2, interval=3600)
    try:
        for item in loaded:
            found = item.responder.channel_by_provider("x")
            if found is None:
                logger.warning("responder %s has no X channel: nothing to poll", item.name)
                continue
            cid, channel = found
            assert isinstance(channel, DmChannel)
            try:
                page = make_adapter(cid, channel).direct_message_events()
            except ProviderError as exc:
                logger.error("responder %s: %s", item.name, exc.message)
                continue
            parsed = parse_dm_events(page, channel.account_id)
            for message in reversed(parsed.messages):  # X lists newest first: answer in order
                reply = classify_reply(message.text)
                if reply is not None and message.sender is not None and reply.value == "stop":
                    ledger.suppress(
                        [Suppression("x", message.sender, "dm_stop", "x:poll", message.message_id)]
                    )
                elif reply is not None and message.sender is not None and reply.value == "start":
                    ledger.lift("x", message.sender)
                answering.receive(message, reply)  # a reply is handed to the sender's threads
    finally:
        sender.close()  # waits for the replies queued above
    logger.info("direct messages: %s", answering.counts)
    return dict(answering.counts)


def serve_polling(files: list[str], every: int) -> None:
    """Serve the flow with an interval schedule (Prefect deployment), until interrupted."""
    poll_direct_messages.serve(
        name="clarion-dm-poll", parameters={"files": files}, interval=timedelta(seconds=every)
    )
