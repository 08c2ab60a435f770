"""What every provider's sandbox emulator builds on: the record of what arrived, the emulator base class,
the providers' wire helpers, and the hooks the sandbox's simulated recipients call.

An emulator (channels/<provider>/emulator.py) answers the provider's own API paths in its wire format and
errors, refuses credentials its `Account` says are revoked, and, for simulated recipients, acts as the
provider would after accepting a message (delivery events, status callbacks, opt-outs), over HTTP to the
tracking service, signed as the provider signs. The sandbox (clarion/sandbox) mounts every registered
provider's emulator on one port and adds fault injection in front of them.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import random
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

Record = dict[str, Any]
#: A provider endpoint: the request and its body, already read, in; the answer out. It runs on the event
#: loop and must not block; it stores what it accepts before returning.
Handler = Callable[[Request, bytes], Response]
Route = tuple[str, str, Handler]  # method, path, handler

REDACTED = "[REDACTED]"
#: Requests kept in the log; the oldest go first.
MAX_REQUESTS = 20_000


def utc_now_iso() -> str:
    """Now in ISO 8601, UTC, with microseconds: how the sandbox stamps what it receives."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


class ReadOnlyRecord(dict[str, Any]):
    """A stored message or request: a dict that refuses changes, so readers can share it without copies.

    `messages()` is polled while thousands of messages arrive; handing out the stored records instead of
    copies keeps that cheap. `dict(record)` gives a mutable copy.
    """

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("sandbox records are read-only; copy one with dict(record)")

    __setitem__ = __delitem__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only
    __ior__ = _read_only

    def __reduce__(self) -> tuple[Any, ...]:
        return (ReadOnlyRecord, (dict(self),))

    def __copy__(self) -> ReadOnlyRecord:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> ReadOnlyRecord:
        import copy

        return ReadOnlyRecord(copy.deepcopy(dict(self), memo))


class Store:
    """What the sandbox received: every provider's accepted messages and the request log.

    One lock guards everything. Handlers build their records outside it and hand them over in one call, so a
    request holding 1,000 recipients takes the lock once.
    """

    def __init__(self, providers: Sequence[str], max_requests: int = MAX_REQUESTS) -> None:
        self.providers = tuple(providers)
        self._lock = threading.Lock()
        self._messages: list[Record] = []
        self._counts: Counter[str] = Counter()
        self._requests: deque[Record] = deque(maxlen=max_requests)
        self._next_message = 1
        self._next_request = 1
        #: called, outside the lock, with each batch of newly accepted messages (simulated recipients)
        self.listeners: list[Callable[[Sequence[Record]], None]] = []

    def check_provider(self, provider: str) -> str:
        if provider not in self.providers:
            raise ValueError(f"unknown provider {provider!r} (known: {', '.join(self.providers)})")
        return provider

    # -- writing ----------------------------------------------------------------------------------

    def add_messages(self, records: Iterable[Record]) -> list[Record]:
        """Store accepted messages (each gets an `id`), tell the listeners; returns the stored records."""
        added: list[Record] = []
        with self._lock:
            for record in records:
                record["id"] = self._next_message
                self._next_message += 1
                stored = ReadOnlyRecord(record)
                self._messages.append(stored)
                added.append(stored)
                self._counts[record["provider"]] += 1
        for listener in list(self.listeners):
            listener(added)
        return added

    def log_request(self, entry: Record) -> None:
        with self._lock:
            entry["id"] = self._next_request
            self._next_request += 1
            self._requests.append(ReadOnlyRecord(entry))

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def reset(self) -> None:
        with self._lock:
            self._messages.clear()
            self._counts.clear()
            self._requests.clear()

    # -- reading ----------------------------------------------------------------------------------

    def messages(self, provider: str | None = None) -> list[Record]:
        if provider is not None:
            self.check_provider(provider)
        with self._lock:
            if provider is None:
                return list(self._messages)
            return [m for m in self._messages if m["provider"] == provider]

    def requests(self, provider: str | None = None) -> list[Record]:
        if provider is not None:
            self.check_provider(provider)
        with self._lock:
            return [r for r in self._requests if provider is None or r["provider"] == provider]

    def latest(self, count: int) -> list[Record]:
        with self._lock:
            return self._messages[-count:]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {p: self._counts[p] for p in self.providers}


# -- the wire --------------------------------------------------------------------------------------------


def json_response(
    content: Any, status: int = 200, headers: Mapping[str, str] | None = None, media_type: str | None = None
) -> Response:
    body = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status, dict(headers or {}), media_type or "application/json")


def parse_json(body: bytes) -> Any:
    """The body as JSON, or ValueError (nested too deeply included: Python's parser recurses)."""
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(str(exc)) from None
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None


def bearer_token(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def basic_credentials(request: Request) -> tuple[str, str] | None:
    value = request.headers.get("authorization", "")
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def redacted_headers(request: Request) -> dict[str, str]:
    """The request's headers with the credentials replaced: the scheme stays, so tests can check it."""
    headers = {}
    for name, value in request.headers.items():
        if name in ("authorization", "proxy-authorization"):
            scheme = value.split(" ", 1)[0] if " " in value else ""
            value = f"{scheme} {REDACTED}" if scheme else REDACTED
        elif name == "cookie":
            value = REDACTED
        headers[name] = value
    return headers


# -- simulated recipients --------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Amount(_Strict):
    mean: float = Field(default=25, ge=0)
    sd: float = Field(default=0, ge=0)
    min: float = Field(default=1, ge=0)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")


Rate = float | dict[str, float]  # one probability, or per variant id with "default" for the others


class Behaviour(_Strict):
    """How the recipients of one channel behave (each provider's emulator reads what applies to it)."""

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
    # corporate mail security: a share of recipients sit behind a scanner that GETs every link of a message
    # on delivery (the tracked link and the unsubscribe page), half of them announcing themselves in the
    # User-Agent, the rest looking like a browser (the timing rules catch those)
    scanner: float = Field(default=0.0, ge=0, le=1)
    scanner_agent: float = Field(default=0.5, ge=0, le=1)


def rate(value: Rate | int | dict[str, int], variant: str) -> float:
    """A behaviour's rate for one variant (a dict names variants, with "default" for the others)."""
    if isinstance(value, dict):
        return float(value.get(variant, value.get("default", 0)))
    return float(value)


class Recipients(Protocol):
    """What the sandbox's simulated recipients lend an emulator while it plays one message's recipient."""

    tracking_url: str
    max_social_clicks: int  # clicks at most from one post's audience

    def secret(self, name: str) -> str | None:
        """A webhook secret by its environment variable's name (e.g. TWILIO_AUTH_TOKEN); None if unset."""

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response | None:
        """An HTTP request to the tracking service (a path, or a full URL), retried; None when it failed."""

    def count(self, name: str, n: int = 1) -> None:
        """Add to one of the engagement counters (clicks, events_posted, stops, ...)."""

    def fail(self, error: str) -> None:
        """Record a failure (counted and logged; the recipient gives up on this message)."""

    def click(self, rng: random.Random, token: str, variant: str, behaviour: Behaviour, key: str) -> None:
        """Follow the tracked link of `token` (and maybe convert), as a person would."""


def audience(
    people: Recipients, rng: random.Random, behaviour: Behaviour, token: str, variant: str
) -> dict[str, int]:
    """A social post's audience: `impressions` people see it, some click its link (at most
    `max_social_clicks`, through the tracking service), and some like, repost, reply, quote or bookmark
    it. Returns those counts, for the emulator to report in the provider's own metric names."""
    impressions = int(rate(behaviour.impressions, variant))
    clicks = sum(rng.random() < rate(behaviour.click, variant) for _ in range(impressions))
    for i in range(min(clicks, people.max_social_clicks)):
        people.click(rng, token, variant, behaviour, str(i))

    def share(p: float) -> int:
        return sum(rng.random() < p for _ in range(impressions))

    return {
        "impressions": impressions,
        "clicks": clicks,
        "likes": share(behaviour.likes),
        "reposts": share(behaviour.reposts),
        "replies": share(behaviour.replies),
        "quotes": share(behaviour.quotes),
        "bookmarks": share(behaviour.bookmarks),
    }


class Posts:
    """A sandbox account's published posts (id -> text, when, metrics in the provider's own names),
    newest last; thread-safe. Social emulators keep theirs here, and tests set metrics through it."""

    def __init__(self, metric_names: Sequence[str]) -> None:
        self.metric_names = tuple(metric_names)
        self._lock = threading.Lock()
        self._posts: dict[str, Record] = {}

    def add(self, post_id: str, text: str, created_at: str, **extra: Any) -> None:
        with self._lock:
            self._posts[post_id] = {
                "id": post_id,
                "text": text,
                "created_at": created_at,
                "metrics": dict.fromkeys(self.metric_names, 0),
                **extra,
            }

    def get(self, post_id: str) -> Record | None:
        with self._lock:
            post = self._posts.get(post_id)
            return None if post is None else {**post, "metrics": dict(post["metrics"])}

    def newest_first(self) -> list[Record]:
        with self._lock:
            return [{**p, "metrics": dict(p["metrics"])} for p in reversed(self._posts.values())]

    def texts(self) -> set[str]:
        with self._lock:
            return {str(p["text"]) for p in self._posts.values()}

    def set_metrics(self, post_id: str, metrics: Mapping[str, Any]) -> dict[str, int]:
        """Set some of a post's metrics; KeyError for an unknown post, ValueError for a bad name or value."""
        unknown = set(metrics) - set(self.metric_names)
        if unknown:
            raise ValueError(
                f"unknown metric(s) {', '.join(sorted(unknown))} (known: {', '.join(self.metric_names)})"
            )
        for name, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        with self._lock:
            post = self._posts.get(post_id)
            if post is None:
                raise KeyError(f"no post with id {post_id!r} in the sandbox")
            post["metrics"].update(metrics)
            return dict(post["metrics"])

    def clear(self) -> None:
        with self._lock:
            self._posts.clear()

    def control(self, request: Request, body: bytes) -> Response:
        """`PUT /_sandbox/<provider>/metrics/{post_id}` with {"<metric>": n, ...}."""
        post_id = request.path_params["post_id"]
        try:
            payload = parse_json(body)
            if not isinstance(payload, dict):
                raise ValueError("expected an object of metric names and counts")
            updated = self.set_metrics(post_id, payload)
        except KeyError as exc:
            return json_response({"error": str(exc.args[0])}, 404)
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response({"id": post_id, "metrics": updated})


class FixedWindow:
    """Requests counted in fixed windows of `seconds`, as providers count them for their rate-limit
    headers; thread-safe."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._window = (time.time(), 0)

    def reset(self) -> None:
        with self._lock:
            self._window = (time.time(), 0)

    def count(self) -> tuple[float, int]:
        """Count one request: (when its window began, requests in that window so far)."""
        now = time.time()
        with self._lock:
            start, used = self._window
            if now - start >= self.seconds:
                start, used = now, 0
            used += 1
            self._window = (start, used)
        return start, used


# -- the emulator ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Account:
    """What the account behind the sandbox's credentials answers; providers add their own settings."""

    revoked: bool = False  # every request with these credentials gets the provider's 401


class Emulator(ABC):
    """One provider's API: its routes, its answers when faulted, and its recipients' behaviour."""

    name: ClassVar[str]
    label: ClassVar[str]  # how the sandbox's page names its messages, e.g. "Email (SendGrid)"
    prefixes: ClassVar[tuple[str, ...]] = ()  # path prefixes of its API, for 404s in its format
    account_type: ClassVar[type[Account]] = Account
    #: Dummy credentials the adapter needs to talk to the sandbox (environment variables).
    credentials: ClassVar[dict[str, str]] = {}
    #: The environment variable pointing the adapter at another host (the sandbox's URL).
    url_variable: ClassVar[str | None] = None
    #: Environment variables that would send the adapter elsewhere or change how it signs in: unset.
    cleared_variables: ClassVar[tuple[str, ...]] = ()
    #: Requests with bodies larger than this are handled in a worker thread, so that one big request (1,000
    #: personalizations to expand) does not hold up the event loop and every other provider's requests.
    #: Only for emulators whose handlers are thread-safe; None: always on the event loop.
    offload_bytes: ClassVar[int | None] = None

    def __init__(self, store: Store) -> None:
        self.store = store
        self._account_lock = threading.Lock()
        self._account = self.account_type()

    # -- the account --------------------------------------------------------------------------------

    @property
    def account(self) -> Account:
        with self._account_lock:
            return self._account

    def update_account(self, settings: Mapping[str, Any]) -> Account:
        """Change some of the account's settings; ValueError naming an unknown one or a wrong type."""
        current = self.account
        known = {f.name: getattr(current, f.name) for f in dataclasses.fields(current)}
        values = dict(settings)
        for key, value in settings.items():
            if key not in known:
                raise ValueError(f"unknown account setting {key!r}; known: {', '.join(sorted(known))}")
            if isinstance(known[key], tuple):
                if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                    raise ValueError(f"{key}: expected a list of strings")
                values[key] = tuple(value)
            elif type(value) is not type(known[key]):
                raise ValueError(f"{key}: expected {type(known[key]).__name__}")
        updated = dataclasses.replace(current, **values)
        with self._account_lock:
            self._account = updated
        return updated

    def account_dict(self) -> dict[str, Any]:
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self.account).items()
        }

    # -- the API ------------------------------------------------------------------------------------

    @abstractmethod
    def routes(self) -> list[Route]:
        """(method, path, handler) for each of the provider's endpoints."""

    def controls(self) -> list[Route]:
        """(method, path, handler) of test controls under /_sandbox/ (e.g. Twilio's opted-out numbers)."""
        return []

    @abstractmethod
    def rate_limited(self, retry_after: float) -> Response:
        """The provider's 429."""

    @abstractmethod
    def server_error(self, status: int) -> Response:
        """The provider's 500 or 503."""

    def not_found(self, request: Request) -> Response:
        return json_response({"message": "Not Found", "status": 404}, 404)

    def finish(self, request: Request, response: Response) -> Response:
        """Add the headers the provider puts on every answer."""
        return response

    def reset(self) -> None:
        """Forget per-run state (counters, windows, posts) and restore the account's defaults."""
        with self._account_lock:
            self._account = self.account_type()

    def environment(self, url: str) -> dict[str, str]:
        """What the adapter needs to send here: dummy credentials and the sandbox's URL."""
        found = dict(self.credentials)
        if self.url_variable:
            found[self.url_variable] = url
        return found

    def webhook_environment(self) -> dict[str, str]:
        """What the tracking service needs to verify the webhooks this emulator signs."""
        return {}

    # -- simulated recipients -----------------------------------------------------------------------

    def engage(
        self,
        people: Recipients,
        record: Mapping[str, Any],
        rng: random.Random,
        behaviour: Behaviour,
        token: str,
        variant: str,
    ) -> bool:
        """Play the recipient of one accepted message (delivery events, opt-outs); True when it was
        delivered, so the recipient may go on to click."""
        return rng.random() < behaviour.delivered

    def flush(self, people: Recipients, *, force: bool) -> None:  # noqa: B027 (optional hook)
        """Send what this provider batches (SendGrid posts events in batches); `force`: all of it."""


class SocialEmulator(Emulator):
    """A social provider's API: its account's posts (`self.posts`, in the provider's own metric names) and
    an audience for each post that fills those metrics."""

    metric_names: ClassVar[tuple[str, ...]]
    #: The post id in the metrics control's path (`{post_id:path}` where ids hold slashes).
    metrics_post_id: ClassVar[str] = "{post_id}"

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.posts = Posts(self.metric_names)

    def reset(self) -> None:
        super().reset()
        self.posts.clear()

    def controls(self) -> list[Route]:
        """`PUT /_sandbox/<provider>/metrics/{post_id}`: set a post's metrics (see `Posts.control`)."""
        return [("PUT", f"/_sandbox/{self.name}/metrics/{self.metrics_post_id}", self.posts.control)]

    @abstractmethod
    def refusal(self, request: Request) -> Response | None:
        """The provider's answer to a request its credentials (or headers) do not allow, or None."""

    def _guard(self, handler: Handler) -> Handler:
        """`handler`, behind the provider's check of credentials (`refusal`)."""

        def guarded(request: Request, body: bytes) -> Response:
            refused = self.refusal(request)
            return refused if refused is not None else handler(request, body)

        return guarded

    @abstractmethod
    def audience_metrics(self, seen: Mapping[str, int]) -> dict[str, int]:
        """What the provider reports for a post its `audience` saw: its metric names -> counts."""

    def engage(
        self,
        people: Recipients,
        record: Mapping[str, Any],
        rng: random.Random,
        behaviour: Behaviour,
        token: str,
        variant: str,
    ) -> bool:
        """A post's audience: readers click its link and like, repost, reply to or quote it; its metrics
        say so afterwards. False: its audience clicked here, there is no one person to click after it."""
        seen = audience(people, rng, behaviour, token, variant)
        self.posts.set_metrics(str(record.get("provider_id")), self.audience_metrics(seen))
        return False


__all__ = [
    "MAX_REQUESTS",
    "Account",
    "Amount",
    "Behaviour",
    "Emulator",
    "FixedWindow",
    "Handler",
    "Posts",
    "Rate",
    "ReadOnlyRecord",
    "Recipients",
    "Record",
    "Route",
    "SocialEmulator",
    "Store",
    "audience",
    "basic_credentials",
    "bearer_token",
    "json_response",
    "parse_json",
    "rate",
    "redacted_headers",
    "utc_now_iso",
]
