"""Simulated recipients: the sandbox delivers, opens, clicks and converts, through the real tracking service.

For demos and tests. Every message the sandbox accepts is queued; worker threads then act as its recipient
would, over HTTP, exactly as the providers and a landing page would in production. What is
provider-specific (SendGrid's signed event batches, Twilio's signed status callbacks and STOP replies, a
post's audience on X) is each provider emulator's `engage` (channels/<provider>/emulator.py); what every
channel shares is here:

- a click is a GET of the message's tracked link; a conversion, after a click, is a signed POST to
  /webhooks/conversion (clarion.base.signing);
- a message's channel and variant are learnt as a link scanner would: HEAD on its tracked link (which the
  tracking service answers without counting) reveals utm_source and utm_content;
- some recipients sit behind a mail-security scanner (`scanner` per channel): on delivery it GETs every
  link of the message at once, as Safe Links or Mimecast do, with a scanner's or a browser's User-Agent;
- people take their time: with `click_delay_s`, a click (and its conversion) happens that many seconds
  after delivery, scheduled without holding a worker.

Randomness is seeded per message, so a run engages the same way whatever the threads' timing. Tracked
links' hosts are replaced by `tracking_url` (a campaign's public tracking domain does not resolve here).
"""

from __future__ import annotations

import hashlib
import heapq
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
from urllib.parse import parse_qs, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from clarion.base import signing
from clarion.channels.emulation import Amount, Behaviour, Emulator, rate

log = logging.getLogger("clarion.sandbox")

TOKEN = re.compile(r"(?:/c/|[?&]ct=)([A-Za-z0-9_-]{16,64})")
RETRIES = 3
HUMAN_AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Safari/605.1.15"
)
SCANNER_AGENTS = (
    "Mozilla/5.0 (compatible; BingPreview/1.0b)",
    "Mimecast URL Protect",
    "Proofpoint URL Defense",
)
BROWSER_LIKE = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0"
UNSUBSCRIBE = re.compile(r"/u/([A-Za-z0-9_-]{16,64})")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Delay(_Strict):
    min: int = Field(default=0, ge=0)
    max: int = Field(default=0, ge=0)


class EngagementConfig(_Strict):
    tracking_url: str = Field(pattern=r"^https?://")
    conversion_secret: SecretStr | None = None
    twilio_auth_token: SecretStr | None = None
    #: Other providers' webhook secrets, by environment variable name.
    secrets: dict[str, SecretStr] = Field(default_factory=dict)
    seed: int = 0
    delay_ms: Delay = Field(default_factory=Delay)
    click_delay_s: Delay = Field(default_factory=Delay)  # how long after delivery a person clicks
    channels: dict[str, Behaviour] = Field(default_factory=dict)  # channel id, or "*" for any other
    max_social_clicks: int = Field(default=500, ge=0)
    workers: int = Field(default=4, ge=1, le=32)

    @classmethod
    def load(cls, source: EngagementConfig | Mapping[str, Any] | Path | str) -> EngagementConfig:
        """From a model, a mapping or a YAML file; ValueError naming the field on a mistake."""
        if isinstance(source, EngagementConfig):
            return source
        if isinstance(source, Path | str):
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

    def secret(self, name: str) -> str | None:
        """A provider's webhook secret by its variable's name; `twilio_auth_token` names Twilio's."""
        value = self.secrets.get(name)
        if value is None and name == "TWILIO_AUTH_TOKEN":
            value = self.twilio_auth_token
        return value.get_secret_value() if value is not None else None


class SimulatedRecipients:
    """The simulated recipients of one sandbox: a queue of accepted messages and worker threads.

    It is the `Recipients` the emulators' `engage` hooks act through."""

    def __init__(self, config: EngagementConfig, emulators: Mapping[str, Emulator]) -> None:
        self.config = config
        self.tracking_url = config.tracking_url.rstrip("/")
        self.max_social_clicks = config.max_social_clicks
        self._emulators = emulators
        self._queue: queue.Queue[Mapping[str, Any] | Callable[[], None] | None] = queue.Queue()
        self._later: list[tuple[float, int, Callable[[], None]]] = []  # (due, order, action): a heap
        self._later_ready = threading.Condition()
        self._order = 0
        self._seen: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()
        self.stats: Counter[str] = Counter()
        self.last_error: str | None = None
        self._client = httpx.Client(base_url=self.tracking_url, timeout=30)
        self._threads = [
            threading.Thread(target=self._work, name=f"sandbox-engage-{i}", daemon=True)
            for i in range(config.workers)
        ]
        self._threads.append(threading.Thread(target=self._schedule, name="sandbox-later", daemon=True))
        self._closing = False
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
            self.count("queued")
            self._queue.put(record)

    def wait(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks or self._later:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"engagement still has {self._queue.unfinished_tasks} messages after {timeout} s"
                )
            time.sleep(0.05)
        for emulator in self._emulators.values():
            emulator.flush(self, force=True)
        return self.snapshot()

    def snapshot(self) -> dict[str, Any]:
        keys = (
            "queued",
            "done",
            "clicks",
            "scanner_clicks",
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
        with self._later_ready:
            self._closing = True
            self._later_ready.notify_all()
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(5)
        self._client.close()

    def later(self, delay: float, action: Callable[[], None]) -> None:
        """Run `action` on a worker after `delay` seconds (a person reading before clicking)."""
        with self._later_ready:
            self._order += 1
            heapq.heappush(self._later, (time.monotonic() + delay, self._order, action))
            self._later_ready.notify()

    def _schedule(self) -> None:
        with self._later_ready:
            while not self._closing:
                if not self._later:
                    self._later_ready.wait()
                    continue
                due = self._later[0][0] - time.monotonic()
                if due > 0:
                    self._later_ready.wait(due)
                    continue
                _, _, action = heapq.heappop(self._later)
                self._queue.put(action)

    # -- one recipient --------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            record = self._queue.get()
            try:
                if record is None:
                    return
                if callable(record):
                    record()
                    continue
                self._engage(record)
                self.count("done")
            except Exception as exc:  # a simulated recipient never takes the sandbox down
                self.fail(f"{type(exc).__name__}: {exc}")
            finally:
                self._queue.task_done()

    def _engage(self, record: Mapping[str, Any]) -> None:
        text = " ".join(str(record.get(k) or "") for k in ("html", "text"))
        args = record.get("custom_args") or {}
        match = TOKEN.search(text)
        token = args.get("clarion_token") or (match.group(1) if match else None)
        emulator = self._emulators.get(str(record.get("provider")))
        if not token or emulator is None:
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
        delivered = emulator.engage(self, record, rng, behaviour, token, str(variant))
        if delivered and behaviour.scanner and rng.random() < behaviour.scanner:
            self._scan(rng, token, text, behaviour)
        if delivered and rng.random() < rate(behaviour.click, str(variant)):
            key = f"{record.get('provider_id')}-{record.get('to')}"
            wait = self.config.click_delay_s
            if wait.max:
                pause = rng.uniform(wait.min, max(wait.min, wait.max))
                self.later(pause, lambda: self.click(rng, token, str(variant), behaviour, key))
            else:
                self.click(rng, token, str(variant), behaviour, key)

    def _scan(self, rng: random.Random, token: str, text: str, behaviour: Behaviour) -> None:
        """A mail-security scanner fetches every link of the message on delivery."""
        agent = rng.choice(SCANNER_AGENTS) if rng.random() < behaviour.scanner_agent else BROWSER_LIKE
        headers = {"User-Agent": agent}
        response = self.request("GET", f"/c/{token}", headers=headers)
        if response is not None and response.status_code == 302:
            self.count("scanner_clicks")
        unsubscribe = UNSUBSCRIBE.search(text)
        if unsubscribe:
            self.request("GET", f"/u/{unsubscribe.group(1)}", headers=headers)

    def _learn(self, token: str) -> tuple[str | None, str | None]:
        response = self.request("HEAD", f"/c/{token}")
        if response is None or response.status_code != 302:
            return None, None
        query = parse_qs(urlsplit(response.headers.get("location", "")).query)
        return query.get("utm_source", [None])[0], query.get("utm_content", [None])[0]

    # -- what the emulators act through (channels.emulation.Recipients) ---------------------------------

    def secret(self, name: str) -> str | None:
        return self.config.secret(name)

    def click(self, rng: random.Random, token: str, variant: str, behaviour: Behaviour, key: str) -> None:
        response = self.request("GET", f"/c/{token}", headers={"User-Agent": HUMAN_AGENT})
        if response is None or response.status_code != 302:
            return
        self.count("clicks")
        if rng.random() < rate(behaviour.convert, variant):
            self._convert(rng, token, behaviour.amount, f"{token}-{key}")

    def _convert(self, rng: random.Random, token: str, amount: Amount, key: str) -> None:
        secret = self.config.conversion_secret
        if secret is None:
            self.fail("a conversion is due but the engagement settings have no conversion_secret")
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
        headers = {
            "Content-Type": "application/json",
            **signing.signed_headers(secret.get_secret_value().encode(), body),
        }
        response = self.request("POST", "/webhooks/conversion", content=body, headers=headers)
        if response is not None and response.status_code == 200:
            self.count("conversions")

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response | None:
        error = ""
        for attempt in range(RETRIES):
            try:
                response = self._client.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                error = f"{method} {urlsplit(url).path}: {type(exc).__name__}"
            else:
                if response.status_code < 500:
                    if response.status_code >= 400:
                        self.fail(
                            f"{method} {urlsplit(url).path}: {response.status_code} {response.text[:120]}"
                        )
                    return response
                error = f"{method} {urlsplit(url).path}: {response.status_code}"
            time.sleep(0.05 * 2**attempt)
        self.fail(error)
        return None

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.stats[name] += n

    def fail(self, error: str) -> None:
        with self._lock:
            self.stats["failures"] += 1
            self.last_error = error
        log.warning("sandbox engagement: %s", error)


__all__ = ["EngagementConfig", "SimulatedRecipients"]
