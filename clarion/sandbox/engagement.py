"""Simulated recipients: the sandbox delivers, opens, clicks and converts, through the real tracking service.

For demos and tests. Every message the sandbox accepts is queued; worker threads then act as its recipient
would, over HTTP, exactly as the providers and a landing page would in production:

- email: SendGrid Event Webhook batches (processed, delivered or bounce, open), ECDSA-signed with the
  sandbox's own key (`Sandbox.sendgrid_public_key` is what the tracking service is given);
- SMS: Twilio status callbacks (sent, then delivered or undelivered) to the message's StatusCallback URL,
  signed with the account's auth token, as twilio's RequestValidator checks them;
- every channel: a click is a GET of the message's tracked link; a conversion, after a click, is a signed
  POST to /webhooks/conversion; a post on X gets impressions and public metrics, and clicks from its audience.

A message's channel and variant are learnt as a link scanner would: HEAD on its tracked link (which the
tracking service answers without counting) reveals utm_source and utm_content. Randomness is seeded per
message, so a run engages the same way whatever the threads' timing. Tracked links' hosts are replaced by
`tracking_url` (a campaign's public tracking domain does not resolve here).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

log = logging.getLogger("clarion.sandbox")

TOKEN = re.compile(r"(?:/c/|[?&]ct=)([A-Za-z0-9_-]{16,64})")
SENDGRID_BATCH = 500
RETRIES = 3


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Amount(_Strict):
    mean: float = Field(default=25, ge=0)
    sd: float = Field(default=0, ge=0)
    min: float = Field(default=1, ge=0)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")


Rate = float | dict[str, float]  # one probability, or per variant id with "default" for the others


class Behaviour(_Strict):
    """How the recipients of one channel behave."""

    delivered: float = Field(default=1.0, ge=0, le=1)
    open: float = Field(default=0.0, ge=0, le=1)
    click: Rate = 0.0
    convert: Rate = 0.0
    amount: Amount = Field(default_factory=Amount)
    impressions: int | dict[str, int] = 0
    likes: float = Field(default=0.0, ge=0, le=1)
    reposts: float = Field(default=0.0, ge=0, le=1)
    replies: float = Field(default=0.0, ge=0, le=1)
    quotes: float = Field(default=0.0, ge=0, le=1)
    bookmarks: float = Field(default=0.0, ge=0, le=1)
    # opting out: email recipients press their mail client's unsubscribe button (RFC 8058 one-click POST
    # to the List-Unsubscribe URL) or report spam; SMS recipients reply STOP
    unsubscribe: float = Field(default=0.0, ge=0, le=1)
    spam_report: float = Field(default=0.0, ge=0, le=1)
    stop: float = Field(default=0.0, ge=0, le=1)


class Delay(_Strict):
    min: int = Field(default=0, ge=0)
    max: int = Field(default=0, ge=0)


class EngagementConfig(_Strict):
    tracking_url: str = Field(pattern=r"^https?://")
    conversion_secret: SecretStr | None = None
    twilio_auth_token: SecretStr | None = None
    seed: int = 0
    delay_ms: Delay = Field(default_factory=Delay)
    channels: dict[str, Behaviour] = Field(default_factory=dict)  # channel id, or "*" for any other
    max_social_clicks: int = Field(default=500, ge=0)
    workers: int = Field(default=4, ge=1, le=32)

    @classmethod
    def load(cls, source: EngagementConfig | Mapping[str, Any] | Path | str) -> EngagementConfig:
        """From a model, a mapping or a YAML file; ValueError naming the field on a mistake."""
        if isinstance(source, EngagementConfig):
            return source
        if isinstance(source, (Path, str)):
            import yaml

            source = yaml.safe_load(Path(source).read_text(encoding="utf-8")) or {}
        try:
            return cls.model_validate(source)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'engagement'}: {e['msg']}" for e in exc.errors()
            )
            raise ValueError(f"engagement settings: {problems}") from None

    def behaviour(self, channel: str) -> Behaviour:
        return self.channels.get(channel) or self.channels.get("*") or Behaviour()


def _rate(rate: Rate | int | dict[str, int], variant: str) -> float:
    if isinstance(rate, dict):
        return float(rate.get(variant, rate.get("default", 0)))
    return float(rate)


class Engagement:
    """The simulated recipients of one sandbox: a queue of accepted messages and worker threads."""

    def __init__(
        self,
        config: EngagementConfig,
        *,
        sign_sendgrid: Callable[[bytes, str], str],
        set_metrics: Callable[[str, dict[str, int]], Any],
        opt_out: Callable[[str], Any] = lambda number: None,
    ) -> None:
        self.config = config
        self._sign_sendgrid = sign_sendgrid
        self._set_metrics = set_metrics
        self._opt_out = opt_out  # Twilio's own opt-out list: later texts to the number get 21610
        self._queue: queue.Queue[Mapping[str, Any] | None] = queue.Queue()
        self._seen: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []
        self.stats: Counter[str] = Counter()
        self.last_error: str | None = None
        self._client = httpx.Client(base_url=config.tracking_url.rstrip("/"), timeout=30)
        self._threads = [
            threading.Thread(target=self._work, name=f"sandbox-engage-{i}", daemon=True)
            for i in range(config.workers)
        ]
        for thread in self._threads:
            thread.start()

    # -- feeding and waiting ----------------------------------------------------------------------

    def offer(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Queue messages just accepted; each message is engaged at most once."""
        for record in records:
            key = (str(record.get("provider")), str(record.get("provider_id")), str(record.get("to")))
            with self._lock:
                if key in self._seen:
                    continue
                self._seen.add(key)
            self._count("queued")
            self._queue.put(record)

    def wait(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"engagement still has {self._queue.unfinished_tasks} messages after {timeout} s"
                )
            time.sleep(0.05)
        self._flush_events(force=True)
        return self.snapshot()

    def snapshot(self) -> dict[str, Any]:
        keys = (
            "queued",
            "done",
            "clicks",
            "opens",
            "conversions",
            "events_posted",
            "callbacks_posted",
            "unsubscribes",
            "spam_reports",
            "stops",
            "failures",
        )
        with self._lock:
            return {**{k: self.stats[k] for k in keys}, "last_error": self.last_error}

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(5)
        self._client.close()

    # -- one recipient --------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            record = self._queue.get()
            try:
                if record is None:
                    return
                self._engage(record)
                self._count("done")
            except Exception as exc:  # a simulated recipient never takes the sandbox down
                self._fail(f"{type(exc).__name__}: {exc}")
            finally:
                self._queue.task_done()

    def _engage(self, record: Mapping[str, Any]) -> None:
        text = " ".join(str(record.get(k) or "") for k in ("html", "text"))
        args = record.get("custom_args") or {}
        match = TOKEN.search(text)
        token = args.get("clarion_token") or (match.group(1) if match else None)
        if not token:
            return
        # Seeded by who and which link, not by provider ids: the same run engages the same way every time.
        seed = f"{self.config.seed}:{record.get('provider')}:{record.get('to')}:{token}"
        rng = random.Random(hashlib.sha256(seed.encode()).digest())
        delay = self.config.delay_ms
        if delay.max:
            time.sleep(rng.uniform(delay.min, max(delay.min, delay.max)) / 1000)
        channel, variant = args.get("clarion_channel"), args.get("clarion_variant")
        if not channel or not variant:
            channel, variant = self._learn(token)
            if channel is None:
                return
        behaviour = self.config.behaviour(channel)
        provider = record.get("provider")
        if provider == "x":
            self._audience(rng, record, token, str(variant), behaviour)
            return
        delivered = rng.random() < behaviour.delivered
        if provider == "sendgrid":
            self._email_events(rng, record, delivered, behaviour)
            if delivered:
                self._email_opt_out(rng, record, behaviour)
        elif provider == "twilio":
            self._status_callbacks(record, delivered)
            if delivered and rng.random() < behaviour.stop:
                self._reply_stop(record)
        if delivered and rng.random() < _rate(behaviour.click, str(variant)):
            self._click(
                rng, token, str(variant), behaviour, f"{record.get('provider_id')}-{record.get('to')}"
            )

    def _learn(self, token: str) -> tuple[str | None, str | None]:
        response = self._request("HEAD", f"/c/{token}")
        if response is None or response.status_code != 302:
            return None, None
        query = parse_qs(urlsplit(response.headers.get("location", "")).query)
        return query.get("utm_source", [None])[0], query.get("utm_content", [None])[0]

    def _click(self, rng: random.Random, token: str, variant: str, behaviour: Behaviour, key: str) -> None:
        response = self._request("GET", f"/c/{token}")
        if response is None or response.status_code != 302:
            return
        self._count("clicks")
        if rng.random() < _rate(behaviour.convert, variant):
            self._convert(rng, token, behaviour.amount, f"{token}-{key}")

    def _convert(self, rng: random.Random, token: str, amount: Amount, key: str) -> None:
        secret = self.config.conversion_secret
        if secret is None:
            self._fail("a conversion is due but the engagement settings have no conversion_secret")
            return
        value = max(amount.min, rng.gauss(amount.mean, amount.sd) if amount.sd else amount.mean)
        body = json.dumps(
            {
                "id": f"sandbox-{hashlib.sha256(key.encode()).hexdigest()[:24]}",
                "token": token,
                "amount": round(value, 2),
                "currency": amount.currency,
                "occurred_at": datetime.now(UTC).isoformat(),
            }
        ).encode()
        stamp = str(int(time.time()))
        signature = hmac.new(secret.get_secret_value().encode(), stamp.encode() + b"." + body, hashlib.sha256)
        headers = {
            "Content-Type": "application/json",
            "X-Clarion-Timestamp": stamp,
            "X-Clarion-Signature": "v1=" + signature.hexdigest(),
        }
        response = self._request("POST", "/webhooks/conversion", content=body, headers=headers)
        if response is not None and response.status_code == 200:
            self._count("conversions")

    # -- providers' events ----------------------------------------------------------------------------

    def _email_events(
        self, rng: random.Random, record: Mapping[str, Any], delivered: bool, b: Behaviour
    ) -> None:
        base = {
            "email": record.get("to"),
            "sg_message_id": f"{record.get('provider_id')}.sandbox.{record.get('personalization', 0)}",
            **(record.get("custom_args") or {}),
        }
        kinds = ["processed", "delivered" if delivered else "bounce"]
        if delivered and rng.random() < b.open:
            kinds.append("open")
            self._count("opens")
        now = int(time.time())
        with self._lock:
            for kind in kinds:
                event = {
                    **base,
                    "event": kind,
                    "timestamp": now,
                    "sg_event_id": f"sbx-{rng.getrandbits(96):024x}",
                }
                if kind == "bounce":
                    event.update(reason="550 5.1.1 mailbox unavailable (sandbox)", type="bounce")
                self._events.append(event)
        self._flush_events(force=False)

    def _flush_events(self, *, force: bool) -> None:
        while True:
            with self._lock:
                if not self._events or (not force and len(self._events) < SENDGRID_BATCH):
                    return
                batch, self._events = self._events[:SENDGRID_BATCH], self._events[SENDGRID_BATCH:]
            body = json.dumps(batch).encode()
            stamp = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                "X-Twilio-Email-Event-Webhook-Signature": self._sign_sendgrid(body, stamp),
                "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
            }
            response = self._request("POST", "/webhooks/sendgrid", content=body, headers=headers)
            if response is not None and response.status_code == 200:
                self._count("events_posted", len(batch))

    def _email_opt_out(self, rng: random.Random, record: Mapping[str, Any], b: Behaviour) -> None:
        draw = rng.random()
        if draw < b.unsubscribe:
            header = str((record.get("headers") or {}).get("List-Unsubscribe", "")).strip("<>")
            if not header:
                self._fail("an unsubscribe is due but the email has no List-Unsubscribe header")
                return
            path = urlsplit(header).path  # the campaign's public host stands for this tracking service
            body = b"List-Unsubscribe=One-Click"
            form = {"Content-Type": "application/x-www-form-urlencoded"}
            response = self._request("POST", path, content=body, headers=form)
            if response is not None and response.status_code == 200:
                self._count("unsubscribes")
        elif draw < b.unsubscribe + b.spam_report:
            event = {
                "email": record.get("to"),
                "event": "spamreport",
                "timestamp": int(time.time()),
                "sg_event_id": f"sbx-{rng.getrandbits(96):024x}",
                **(record.get("custom_args") or {}),
            }
            with self._lock:
                self._events.append(event)
            self._count("spam_reports")

    def _reply_stop(self, record: Mapping[str, Any]) -> None:
        token = self.config.twilio_auth_token
        if token is None:
            self._fail("a STOP reply is due but the engagement settings have no twilio_auth_token")
            return
        from twilio.request_validator import RequestValidator

        number = str(record.get("to") or "")
        self._opt_out(number)
        url = self.config.tracking_url.rstrip("/") + "/webhooks/twilio/inbound"
        params = {
            "MessageSid": f"SM{hashlib.sha256(number.encode()).hexdigest()[:32]}",
            "From": number,
            "To": str(record.get("from") or ""),
            "Body": "STOP",
            "OptOutType": "STOP",
        }
        signature = RequestValidator(token.get_secret_value()).compute_signature(url, params)
        headers = {"X-Twilio-Signature": signature}
        response = self._request("POST", url, data=params, headers=headers)
        if response is not None and response.status_code == 200:
            self._count("stops")

    def _status_callbacks(self, record: Mapping[str, Any], delivered: bool) -> None:
        callback = record.get("status_callback")
        token = self.config.twilio_auth_token
        if not callback:
            return
        if token is None:
            self._fail("an SMS callback is due but the engagement settings have no twilio_auth_token")
            return
        from twilio.request_validator import RequestValidator

        parts = urlsplit(callback)
        target = urlsplit(self.config.tracking_url)
        url = urlunsplit((target.scheme, target.netloc, parts.path, parts.query, ""))
        validator = RequestValidator(token.get_secret_value())
        for status in ("sent", "delivered" if delivered else "undelivered"):
            params = {
                "AccountSid": str(record.get("account_sid") or ""),
                "MessageSid": str(record.get("provider_id")),
                "SmsSid": str(record.get("provider_id")),
                "MessageStatus": status,
                "SmsStatus": status,
                "To": str(record.get("to") or ""),
                "From": str(record.get("from") or ""),
                "ApiVersion": "2010-04-01",
            }
            if status == "undelivered":
                params["ErrorCode"] = "30003"
            # Signed for the URL actually posted to: the service validates against the URL it is reached at.
            headers = {"X-Twilio-Signature": validator.compute_signature(url, params)}
            response = self._request("POST", url, data=params, headers=headers)
            if response is not None and response.status_code == 200:
                self._count("callbacks_posted")

    def _audience(
        self, rng: random.Random, record: Mapping[str, Any], token: str, variant: str, b: Behaviour
    ) -> None:
        impressions = int(_rate(b.impressions, variant))
        clicks = sum(rng.random() < _rate(b.click, variant) for _ in range(impressions))
        for i in range(min(clicks, self.config.max_social_clicks)):
            self._click(rng, token, variant, b, str(i))

        def share(p: float) -> int:
            return sum(rng.random() < p for _ in range(impressions))

        metrics = {
            "impression_count": impressions,
            "like_count": share(b.likes),
            "retweet_count": share(b.reposts),
            "reply_count": share(b.replies),
            "quote_count": share(b.quotes),
            "bookmark_count": share(b.bookmarks),
        }
        self._set_metrics(str(record.get("provider_id")), metrics)

    # -- plumbing ---------------------------------------------------------------------------------------

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response | None:
        for attempt in range(RETRIES):
            try:
                response = self._client.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                error = f"{method} {urlsplit(url).path}: {type(exc).__name__}"
            else:
                if response.status_code < 500:
                    if response.status_code >= 400:
                        self._fail(
                            f"{method} {urlsplit(url).path}: {response.status_code} {response.text[:120]}"
                        )
                    return response
                error = f"{method} {urlsplit(url).path}: {response.status_code}"
            time.sleep(0.05 * 2**attempt)
        self._fail(error)
        return None

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.stats[name] += n

    def _fail(self, error: str) -> None:
        with self._lock:
            self.stats["failures"] += 1
            self.last_error = error
        log.warning("sandbox engagement: %s", error)
