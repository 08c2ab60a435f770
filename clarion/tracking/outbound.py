"""Signed outbound events (`webhooks_out`): what happened in a run, posted to a CRM, ActionKit or any URL.

    webhooks_out:
      - url: https://crm.example.org/hooks/clarion
        events: [sent, delivered, clicked, converted, unsubscribed, suppressed]
        secret: ${CRM_WEBHOOK_SECRET}

Two halves, both idempotent, so any number of processes may run them at once:

- `fill` reads the ledger's own tables from per-endpoint cursors (sends settled as sent, provider
  `delivered` events, first clicks, conversions and their refunds, suppressions made since the endpoint was
  first seen) and writes one outbox row per event and endpoint, with a deterministic event id. Nothing on
  the send or webhook path waits for this: sending never slows for an endpoint.
- `deliver` claims what is due (a 60 s lease, so concurrent deliverers never post one event together)
  and posts it, one JSON event per request, signed like Clarion's own conversion webhook:
  `X-Clarion-Signature: v1=hex(HMAC-SHA256(secret, "<X-Clarion-Timestamp>.<body>"))`, with
  `X-Clarion-Event-Id` (the receiver de-duplicates on it: delivery is at least once) and
  `X-Clarion-Event-Type`. A 2xx settles the event; anything else, or no answer within
  CLARION_WEBHOOKS_TIMEOUT, retries it with exponential backoff and jitter (30 s doubling, at most 6 h)
  up to CLARION_WEBHOOKS_MAX_ATTEMPTS tries, then it is `dead` (`clarion webhooks retry` revives it). An
  endpoint that fails is skipped for the rest of the round and its other events wait with the failed one
  (in order), so a dead endpoint costs one request per backoff step and delays no other endpoint.

They run in `clarion serve` (a background thread, unless `--no-webhooks`), in `clarion webhooks deliver`
(once, or `--every N`), and as the Prefect flow `clarion-webhooks` (clarion.flows.outbound). Payloads name
contacts by their id, never by address, except opt-out events (`unsubscribed`, `suppressed`), which carry
the address so the CRM can sync the opt-out.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from clarion.base import signing
from clarion.base.consent import Reason
from clarion.ledger import Ledger
from clarion.ledger.outbox import OutboxItem

log = logging.getLogger("clarion.tracking.outbound")

PAGE = 1_000
RECENT_RUNS = 200
BASE_DELAY = 30.0
MAX_DELAY = 6 * 3600.0
#: Opt-outs a person made themselves; other suppressions (bounces, complaints, an operator's list) are
#: `suppressed`.
UNSUBSCRIBED = {
    Reason.UNSUBSCRIBE_LINK.value,
    Reason.SENDGRID_UNSUBSCRIBE.value,
    Reason.SENDGRID_GROUP_UNSUBSCRIBE.value,
    Reason.SMS_STOP.value,
    Reason.DM_STOP.value,
    Reason.TWILIO_21610.value,
}
EVENT_ID_HEADER = "X-Clarion-Event-Id"
EVENT_TYPE_HEADER = "X-Clarion-Event-Type"


def shown(url: str) -> str:
    """An endpoint's URL as logs and tables show it: no user info, no query (either may hold a key)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "..." if parts.query else "", ""))


def endpoint_id(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:32]


def event_id(*parts: object) -> str:
    return "evt_" + hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:40]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _at(value: Any) -> datetime:
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class Hook:
    url: str
    events: tuple[str, ...]
    secret_env: str

    @property
    def endpoint(self) -> str:
        return endpoint_id(self.url)


@dataclass
class _Batch:
    items: list[OutboxItem] = field(default_factory=list)
    cursors: list[tuple[str, str, str, str]] = field(default_factory=list)


def body(event_type: str, ident: str, at: datetime | None, /, **fields: Any) -> str:
    """The exact JSON an endpoint receives (and the signature covers)."""
    event = {"id": ident, "type": event_type, "occurred_at": _iso(at), **fields}
    return json.dumps(event, separators=(",", ":"), sort_keys=True, default=str)


# -- filling the outbox from the ledger ----------------------------------------------------------------


def fill(ledger: Ledger, *, runs: int = RECENT_RUNS) -> int:
    """Queue every event of the newest runs (and suppressions) not yet in the outbox; returns how many."""
    added = 0
    for record in ledger.list_runs(limit=runs):
        hooks = [
            Hook(str(h["url"]), tuple(h.get("events") or ()), str(h["secret_env"]))
            for h in record.options.get("webhooks_out") or []
        ]
        for hook in hooks:
            base = {"campaign": record.campaign, "run": record.id}
            for stream in ("sent", "delivered", "clicked", "converted"):
                if stream in hook.events:
                    added += _fill_run(ledger, hook, record.id, stream, base)
            if {"unsubscribed", "suppressed"} & set(hook.events):
                added += _fill_suppressions(ledger, hook, record.created_at)
    return added


def _fill_run(ledger: Ledger, hook: Hook, run_id: str, stream: str, base: dict[str, Any]) -> int:
    added = 0
    while True:
        batch = _Batch()
        position = ledger.cursor(hook.endpoint, run_id, stream)
        if stream == "sent":
            after = None
            if position:
                at, _, last = position.partition("|")
                after = (datetime.fromisoformat(at), int(last))
            rows = ledger.stream_sent(run_id, after, PAGE)
            for row in rows:
                ident = event_id("sent", run_id, row["id"])
                payload = body(
                    "sent",
                    ident,
                    row["settled_at"],
                    **base,
                    channel=row["channel"],
                    variant=row["variant"],
                    contact=row["contact_id"],
                    provider_id=row["provider_id"],
                )
                batch.items.append(_item(hook, ident, "sent", run_id, payload))
            if rows:
                last_row = rows[-1]
                batch.cursors.append(
                    (
                        hook.endpoint,
                        run_id,
                        stream,
                        f"{_at(last_row['settled_at']).isoformat()}|{last_row['id']}",
                    )
                )
        else:
            after_id = int(position or 0)
            if stream == "delivered":
                rows = ledger.stream_events(run_id, after_id, ["delivered"], PAGE)
            elif stream == "clicked":
                rows = ledger.stream_clicks(run_id, after_id, PAGE)
            else:
                rows = ledger.stream_conversions(run_id, after_id, PAGE)
            for row in rows:
                ident = event_id(stream, run_id, row["id"])
                batch.items.append(_item(hook, ident, stream, run_id, _run_event(stream, ident, row, base)))
            if rows:
                batch.cursors.append((hook.endpoint, run_id, stream, str(rows[-1]["id"])))
        if not batch.cursors:
            return added
        added += ledger.enqueue(batch.items, batch.cursors)
        if len(batch.items) < PAGE:
            return added


def _run_event(stream: str, ident: str, row: dict[str, Any], base: dict[str, Any]) -> str:
    who = {"channel": row["channel"], "contact": row.get("contact_id")}
    if stream == "delivered":
        return body("delivered", ident, row["occurred_at"], **base, **who, variant=row["variant"])
    if stream == "clicked":
        return body("clicked", ident, row["first_at"], **base, **who, variant=row["variant"])
    amount = int(row["amount_minor"])
    return body(
        "converted",
        ident,
        row["occurred_at"],
        **base,
        **who,
        arm=row["arm"],
        source=row["source"],
        external_id=row["external_id"],
        kind=row["kind"],
        refers_to=row["refers_to"],
        amount=f"{amount / 100:.2f}",
        amount_minor=amount,
        currency=row["currency"],
    )


def _fill_suppressions(ledger: Ledger, hook: Hook, since: datetime) -> int:
    added = 0
    while True:
        position = ledger.cursor(hook.endpoint, "", "suppressed")
        after: tuple[datetime, str, str] | None
        if position:
            at, kind, address = position.split("|", 2)
            after = (datetime.fromisoformat(at), kind, address)
        else:  # a new endpoint hears of opt-outs from its first run on, not the whole history
            after = (since, "", "")
        rows = ledger.stream_suppressions(after, PAGE)
        if not rows:
            return added
        batch = _Batch()
        for row in rows:
            kind = "unsubscribed" if row["reason"] in UNSUBSCRIBED else "suppressed"
            if kind not in hook.events:
                continue
            ident = event_id(kind, row["kind"], row["address"], _at(row["created_at"]).isoformat())
            payload = body(
                kind,
                ident,
                row["created_at"],
                address_kind=row["kind"],
                address=row["address"],
                reason=row["reason"],
                source=row["source"],
            )
            batch.items.append(_item(hook, ident, kind, None, payload))
        last = rows[-1]
        cursor = f"{_at(last['created_at']).isoformat()}|{last['kind']}|{last['address']}"
        batch.cursors.append((hook.endpoint, "", "suppressed", cursor))
        added += ledger.enqueue(batch.items, batch.cursors)
        if len(rows) < PAGE:
            return added


def _item(hook: Hook, ident: str, kind: str, run_id: str | None, payload: str) -> OutboxItem:
    return OutboxItem(hook.endpoint, ident, hook.url, hook.secret_env, kind, run_id, payload)


# -- delivering ------------------------------------------------------------------------------------------


@dataclass
class Delivery:
    """One round's outcome."""

    delivered: int = 0
    failed: int = 0
    dead: int = 0
    skipped: int = 0  # due, but their endpoint failed earlier in the round


#: The jitter's own generator: a retry never moves the process's `random` state (engine/retry.py likewise)
_JITTER = random.Random()


def backoff(attempts: int, *, rng: Callable[[], float] = _JITTER.random) -> float:
    """Seconds before the next try after `attempts` failed ones: 30 s doubling, at most 6 h, +-20% jitter."""
    delay = min(BASE_DELAY * (2 ** max(attempts - 1, 0)), MAX_DELAY)
    return float(delay * (0.8 + 0.4 * rng()))


def deliver(
    ledger: Ledger,
    client: httpx.Client,
    *,
    environ: Mapping[str, str],
    max_attempts: int,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    limit: int = 500,
) -> Delivery:
    """Post every due event once (oldest first); settle, reschedule or bury each."""
    outcome = Delivery()
    failing: set[str] = set()
    for item in ledger.outbox_due(now(), limit):
        if item.endpoint in failing:
            outcome.skipped += 1
            continue
        error = _post(client, item, environ)
        if error is None:
            ledger.outbox_settle(item.id, delivered=True)
            outcome.delivered += 1
            continue
        failing.add(item.endpoint)
        tries = item.attempts + 1
        if tries >= max_attempts or error.startswith("410"):
            ledger.outbox_settle(item.id, delivered=False, error=error)
            outcome.dead += 1
            log.warning(
                "event %s to %s is dead after %d tries: %s", item.event_id, shown(item.url), tries, error
            )
        else:
            retry_at = now() + timedelta(seconds=backoff(tries))
            ledger.outbox_settle(item.id, delivered=False, error=error, retry_at=retry_at)
            ledger.outbox_postpone(item.endpoint, retry_at)  # its other events wait with it, in order
            outcome.failed += 1
            log.info(
                "event %s to %s failed (%s); next try %s", item.event_id, item.url, error, _iso(retry_at)
            )
    return outcome


def _post(client: httpx.Client, item: OutboxItem, environ: Mapping[str, str]) -> str | None:
    """None when the endpoint took the event; else why not (never the secret, never the body)."""
    secret = environ.get(item.secret_env, "")
    if not secret:
        return f"the environment variable {item.secret_env} (the endpoint's secret) is not set"
    payload = item.body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "clarion-webhooks/1",
        EVENT_ID_HEADER: item.event_id,
        EVENT_TYPE_HEADER: item.kind,
        **signing.signed_headers(secret.encode(), payload),
    }
    try:
        response = client.post(item.url, content=payload, headers=headers)
    except httpx.TimeoutException:
        return "no answer in time"
    except httpx.HTTPError as exc:
        return f"cannot reach the endpoint: {type(exc).__name__}"
    if 200 <= response.status_code < 300:
        return None
    return f"{response.status_code} {response.reason_phrase}".strip()


def run_once(
    ledger: Ledger, client: httpx.Client, *, environ: Mapping[str, str], max_attempts: int
) -> Delivery:
    fill(ledger)
    return deliver(ledger, client, environ=environ, max_attempts=max_attempts)


class OutboxWorker:
    """Fills and delivers the outbox every `every` seconds in a daemon thread (for `clarion serve`)."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        environ: Mapping[str, str],
        timeout: float,
        max_attempts: int,
        every: float = 5.0,
    ) -> None:
        self.ledger = ledger
        self.environ = environ
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="clarion-webhooks-out", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 5)

    def _loop(self) -> None:
        with httpx.Client(timeout=self.timeout, follow_redirects=False) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    run_once(self.ledger, client, environ=self.environ, max_attempts=self.max_attempts)
                except Exception:  # a bad round (database away) is logged; the next round tries again
                    log.exception("outbound events: round failed")
                self._stop.wait(max(self.every - (time.monotonic() - started), 0.5))
