"""Sending replies, off the webhook's path: a small pool of threads, each reply claimed before its call.

SMS replies go through Twilio's REST API (not TwiML in the webhook's answer): the reply's sid comes back
at once and is recorded against the inbound message's row, a redelivered webhook finds that row and
sends nothing, lookups and pacing run outside Twilio's webhook timeout, and X's replies take the same
path. Direct messages are paced per account within X's documented limits (the lower of its two pages:
15 per 15 minutes, 1,440 a day, by default); a reply waits its turn in the queue. A retryable refusal is
tried again up to three times (waiting what the provider said); a timeout is `uncertain`, never resent.

The same object sends due follow-ups (a question's reminder), which wait for the sender's local quiet
hours, and erases message texts older than the responder's retention, every `interval` seconds.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from clarion.base.errors import ClarionError
from clarion.base.timing import parse_clock, quiet_until, zone
from clarion.channels.base import SendOutcome, SendResult
from clarion.ledger.conversations import Outgoing
from clarion.responders.engine import Queued, Responders, Route
from clarion.responders.loader import REMIND_SUFFIX, LoadedResponder
from clarion.responders.model import DmChannel, SmsChannel

log = logging.getLogger("clarion.responders")
# twilio's client logs every request's URL and headers at INFO (`clarion serve` logs at INFO): keep it quiet
logging.getLogger("twilio.http_client").setLevel(logging.WARNING)

ATTEMPTS = 3
MAX_WAIT = 60.0  # seconds a retry may wait for the provider before the reply is failed


class Pacer:
    """At most `limit` calls per `window` seconds (a sliding log); `wait()` blocks until one is free."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self._calls: deque[float] = deque()
        self._lock = threading.Lock()

    def wait(self, stop: threading.Event) -> bool:
        while not stop.is_set():
            with self._lock:
                now = time.monotonic()
                while self._calls and now - self._calls[0] >= self.window:
                    self._calls.popleft()
                if len(self._calls) < self.limit:
                    self._calls.append(now)
                    return True
                delay = self.window - (now - self._calls[0])
            stop.wait(min(delay, 1.0))
        return False


class ReplySender:
    """Sends the replies `Responders` queues, and the follow-ups due; `start()` / `close()`."""

    def __init__(
        self,
        responders: Responders,
        *,
        workers: int = 8,
        interval: float = 30.0,
    ) -> None:
        self.responders = responders
        self.interval = interval
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clarion-reply")
        self._stop = threading.Event()
        self._adapters: dict[tuple[str, str], Any] = {}
        self._adapter_lock = threading.Lock()
        # one pair of pacers per X channel (per account): X counts DMs per user
        self._pacers: dict[tuple[str, str], tuple[Pacer, ...]] = {
            (loaded.name, cid): (Pacer(ch.replies_per_15_minutes, 900.0), Pacer(ch.replies_per_day, 86_400.0))
            for loaded in responders.loaded
            for cid, ch in loaded.responder.channels.items()
            if isinstance(ch, DmChannel)
        }
        self._loop: threading.Thread | None = None
        self.sent = 0
        self.failed = 0
        responders.on_queued = self.submit

    def start(self) -> None:
        for loaded in self.responders.loaded:
            for queued in self.responders.ledger.recover_replies(loaded.name):
                found = loaded.responder.channels.get(queued.channel)
                if found is None or not queued.recipient:
                    continue
                route = Route(loaded, queued.channel, found)
                self.submit(Queued(queued.id, route, queued.recipient, queued.text, None, None))
        self._loop = threading.Thread(target=self._run, name="clarion-followups", daemon=True)
        self._loop.start()

    def close(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=False)
        if self._loop is not None:
            self._loop.join(5)

    def submit(self, queued: Queued) -> None:
        if not self._stop.is_set():
            self._pool.submit(self._guarded, queued)

    def _guarded(self, queued: Queued) -> None:
        try:
            self.send(queued)
        except Exception:  # a bug must not kill the pool thread silently: the reply stays in the ledger
            log.exception("reply %d: not sent", queued.reply_id)

    # -- one reply --------------------------------------------------------------------------------------

    def send(self, queued: Queued) -> None:
        provider = queued.route.channel.provider
        for pacer in self._pacers.get((queued.route.loaded.name, queued.route.channel_id), ()):
            if not pacer.wait(self._stop):
                return  # shutting down: the reply stays queued and is sent after the restart
        ledger = self.responders.ledger
        if not ledger.claim_reply(queued.reply_id):
            return  # settled by someone else (another process recovering the queue)
        result = self._attempts(queued)
        if result.outcome is SendOutcome.SENT:
            ledger.settle_reply(queued.reply_id, "sent", result.provider_id)
            self.sent += 1
            return
        state = "uncertain" if result.outcome is SendOutcome.UNCERTAIN else "failed"
        error = redact(f"{result.code or ''} {result.error or ''}".strip())[:500]
        ledger.settle_reply(queued.reply_id, state, None, error)
        self.failed += 1
        log.warning("reply %d (%s): %s: %s", queued.reply_id, provider, state, error)

    def _attempts(self, queued: Queued) -> SendResult:
        result = self._call(queued)
        for attempt in range(1, ATTEMPTS):
            if result.outcome is not SendOutcome.RETRY:
                break
            wait = result.retry_after if result.retry_after is not None else 0.5 * 2**attempt
            if wait > MAX_WAIT or self._stop.wait(wait):
                break
            result = self._call(queued)
        return result

    def _call(self, queued: Queued) -> SendResult:
        channel = queued.route.channel
        try:
            adapter = self.adapter(queued.route)
        except ClarionError as exc:  # credentials missing: `clarion serve` checks them before it starts
            return SendResult(queued.recipient, SendOutcome.REJECTED, None, "credentials", str(exc))
        if isinstance(channel, SmsChannel):
            sender = queued.sender_number if queued.sender_number in channel.numbers else None
            sender = sender or (channel.numbers[0] if channel.numbers else None)
            base = queued.route.loaded.responder.tracking.base_url
            callback = f"{base}/webhooks/twilio?ct={queued.token}" if base and queued.token else None
            service = None if sender else channel.messaging_service_sid
            result: SendResult = adapter.reply(
                queued.recipient,
                queued.text,
                from_=sender,
                messaging_service_sid=service,
                status_callback=callback,
            )
            return result
        answer: SendResult = adapter.direct_message(queued.recipient, queued.text)
        return answer

    def adapter(self, route: Route) -> Any:
        """The provider's adapter, built once per channel from the environment's credentials."""
        key = (route.loaded.name, route.channel_id)
        with self._adapter_lock:
            found = self._adapters.get(key)
            if found is None:
                found = make_adapter(route.channel_id, route.channel)
                self._adapters[key] = found
            return found

    # -- follow-ups and retention -----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sweep(datetime.now(UTC))
            except Exception:
                log.exception("follow-ups and retention: this round failed; the next one tries again")

    def sweep(self, now: datetime) -> int:
        """Queue the reminders that are due (held to quiet hours) and erase texts past retention."""
        queued = 0
        for loaded in self.responders.loaded:
            queued += self._reminders(loaded, now)
            erased = self.responders.ledger.purge_texts(loaded.name, now - loaded.responder.retention)
            if erased:
                log.info("responder %s: %d message text(s) past retention erased", loaded.name, erased)
        return queued

    def _reminders(self, loaded: LoadedResponder, now: datetime) -> int:
        ledger, queued = self.responders.ledger, 0
        for row in ledger.due_reminders(loaded.name, now):
            cid, channel = row["channel"], loaded.responder.channels.get(row["channel"])
            rule, address = row["pending_rule"], row["reply_to"]
            closed = row["pending_until"] is None or row["pending_until"] <= now
            if channel is None or rule is None or not address or closed:
                ledger.update_conversation(row["id"], remind_at=None, reply_to=None)
                continue
            kind = "sms" if isinstance(channel, SmsChannel) else "x"
            if ledger.suppressed(kind, [address]):
                ledger.update_conversation(row["id"], remind_at=None, reply_to=None)
                continue
            held = self._quiet_until(channel, row.get("zone"), now)
            if held is not None:
                ledger.update_conversation(row["id"], remind_at=held)
                log.info(
                    "conversation %d: reminder held for quiet hours until %s", row["id"], held.isoformat()
                )
                continue
            key = rule + REMIND_SUFFIX
            if key not in loaded.replies:
                ledger.update_conversation(row["id"], remind_at=None, reply_to=None)
                continue
            text = loaded.replies.answer(key, {}, loaded.contact(channel, address), None).text
            outgoing = Outgoing(key, "remind", text, address)
            reply_id = ledger.queue_followup(row["id"], channel.provider, outgoing, rule)
            if reply_id is not None:
                self.submit(Queued(reply_id, Route(loaded, cid, channel), address, text, None, None))
                queued += 1
        return queued

    @staticmethod
    def _quiet_until(
        channel: SmsChannel | DmChannel, zone_name: str | None, now: datetime
    ) -> datetime | None:
        if not isinstance(channel, SmsChannel) or channel.quiet_hours is None:
            return None
        tz = zone(zone_name or channel.default_timezone)
        start, end = parse_clock(channel.quiet_hours.start), parse_clock(channel.quiet_hours.end)
        return quiet_until(now, tz, start, end)


_NUMBER = re.compile(r"\+?\d[\d \-]{6,}\d")


def redact(text: str) -> str:
    """A provider's error without the phone number or account id it may quote ("The 'To' number +1...")."""
    return _NUMBER.sub("[address]", text)


def make_adapter(channel_id: str, channel: SmsChannel | DmChannel) -> Any:
    """The Twilio or X adapter a responder's channel replies through (credentials from the environment)."""
    from clarion import channels

    adapter = channels.get(channel.provider)
    if isinstance(channel, SmsChannel):
        config = adapter.config_model.model_validate(
            {
                "provider": "twilio",
                "from": channel.numbers[0] if channel.numbers else None,
                "messaging_service_sid": channel.messaging_service_sid,
                "body": "(responder)",
            }
        )
    else:
        config = adapter.config_model.model_validate({"provider": "x", "body": "(responder)"})
    settings = adapter.settings_model.load(channel_id)
    return adapter(channel_id, config, settings)


__all__ = ["Pacer", "ReplySender", "make_adapter"]
