"""What the sandbox received: messages, the request log, and the posts on X with their metrics.

One lock guards everything. Handlers build their records outside it and hand them over in one call, so a
request holding 1,000 recipients takes the lock once.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from clarion.sandbox.accounts import Accounts
from clarion.sandbox.faults import PROVIDERS, check_provider

Record = dict[str, Any]


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


PUBLIC_METRICS = (
    "retweet_count",
    "reply_count",
    "like_count",
    "quote_count",
    "bookmark_count",
    "impression_count",
)
#: X's snowflake ids count milliseconds from this instant (2010-11-04T01:42:54.657Z).
X_EPOCH_MS = 1288834974657
#: Requests kept in the log; the oldest go first.
MAX_REQUESTS = 20_000


def utc_now_iso() -> str:
    """Now in ISO 8601, UTC, with microseconds: how the sandbox stamps what it receives."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


class DuplicatePost(Exception):
    """The text of a post equals the text of one already published."""


class Store:
    def __init__(self, max_requests: int = MAX_REQUESTS) -> None:
        self._lock = threading.Lock()
        self._messages: list[Record] = []
        self._counts: Counter[str] = Counter()
        self._requests: deque[Record] = deque(maxlen=max_requests)
        self._next_message = 1
        self._next_request = 1
        self._posts: dict[str, Record] = {}  # tweet id -> {"text", "public_metrics"}
        self._post_texts: set[str] = set()
        self._last_post_id = 0
        self.accounts = Accounts()  # what the credentials belong to (pre-flight checks read it)
        #: called, outside the lock, with each batch of newly accepted messages (sandbox engagement)
        self.listeners: list[Any] = []

    # -- writing ----------------------------------------------------------------------------------

    def add_messages(self, records: Iterable[Record]) -> None:
        added = []
        with self._lock:
            n = self._next_message
            for record in records:
                record["id"] = n
                n += 1
                stored = ReadOnlyRecord(record)
                self._messages.append(stored)
                added.append(stored)
                self._counts[record["provider"]] += 1
            self._next_message = n
        self._announce(added)

    def _announce(self, added: Sequence[Record]) -> None:
        for listener in list(self.listeners):
            listener(added)

    def add_post(self, text: str, make_record: Any) -> Record:
        """Publish `text` on X under a new snowflake id, or raise DuplicatePost.

        `make_record(tweet_id)` builds the message record; check and insert happen under one lock.
        """
        with self._lock:
            if text in self._post_texts:
                raise DuplicatePost(text)
            stamp = (int(time.time() * 1000) - X_EPOCH_MS) << 22
            tweet_id = max(stamp, self._last_post_id + 1)
            self._last_post_id = tweet_id
            key = str(tweet_id)
            self._post_texts.add(text)
            self._posts[key] = {"text": text, "public_metrics": dict.fromkeys(PUBLIC_METRICS, 0)}
            record: Record = make_record(key)
            record["id"] = self._next_message
            self._next_message += 1
            stored = ReadOnlyRecord(record)
            self._messages.append(stored)
            self._counts["x"] += 1
        self._announce([stored])
        return record

    def set_metrics(self, tweet_id: str, metrics: dict[str, int]) -> dict[str, int]:
        unknown = set(metrics) - set(PUBLIC_METRICS)
        if unknown:
            raise ValueError(
                f"unknown public metric(s) {', '.join(sorted(unknown))} (known: {', '.join(PUBLIC_METRICS)})"
            )
        for name, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        with self._lock:
            post = self._posts.get(str(tweet_id))
            if post is None:
                raise KeyError(f"no post with id {tweet_id!r} in the sandbox")
            post["public_metrics"].update(metrics)
            return dict(post["public_metrics"])

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
            self._posts.clear()
            self._post_texts.clear()
        self.accounts.reset()

    # -- reading ----------------------------------------------------------------------------------

    def messages(self, provider: str | None = None) -> list[Record]:
        if provider is not None:
            check_provider(provider)
        with self._lock:
            if provider is None:
                return list(self._messages)
            return [m for m in self._messages if m["provider"] == provider]

    def requests(self, provider: str | None = None) -> list[Record]:
        if provider is not None:
            check_provider(provider)
        with self._lock:
            return [r for r in self._requests if provider is None or r["provider"] == provider]

    def latest(self, count: int) -> list[Record]:
        with self._lock:
            return self._messages[-count:]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {p: self._counts[p] for p in PROVIDERS}

    def posts(self, ids: Iterable[str]) -> list[tuple[str, Record | None]]:
        with self._lock:
            found = []
            for tweet_id in ids:
                post = self._posts.get(tweet_id)
                found.append(
                    (
                        tweet_id,
                        None if post is None else {**post, "public_metrics": dict(post["public_metrics"])},
                    )
                )
            return found
