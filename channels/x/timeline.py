"""An account's posts as X lists them (`GET /2/users/{id}/tweets`), for the sandbox.

Newest first, `max_results` 5-100 (default 10) a page with `meta.next_token` for the next, bounded by
`start_time` / `end_time` (ISO 8601, second granularity) and `since_id` / `until_id`; the 3,200 most recent
posts at most. As X does, the text shows every link as a t.co link; `tweet.fields=entities` adds the
links' `expanded_url`, `tweet.fields=created_at` the creation instant (derived from the snowflake id).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

#: X's snowflake ids count milliseconds from this instant (2010-11-04T01:42:54.657Z).
X_EPOCH_MS = 1288834974657
MAX_TIMELINE = 3200
_URL = re.compile(r"https?://\S+")
TOKEN_PREFIX = "7140dibdnow9c7btw4"  # X's tokens are opaque; ours name the id to continue below


class BadQuery(ValueError):
    """A parameter X would refuse: (parameter, value, message)."""

    def __init__(self, parameter: str, value: str, message: str) -> None:
        super().__init__(message)
        self.parameter, self.value, self.message = parameter, value, message


def created_at(post_id: str) -> datetime:
    """When a post was created, read from its snowflake id."""
    return datetime.fromtimestamp(((int(post_id) >> 22) + X_EPOCH_MS) / 1000, UTC)


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def shortened(text: str) -> tuple[str, list[dict[str, Any]]]:
    """The text with its links as t.co links, and the `entities.urls` X gives for them."""
    out, urls, last = [], [], 0
    for match in _URL.finditer(text):
        out.append(text[last : match.start()])
        short = "https://t.co/" + hashlib.sha256(match.group().encode()).hexdigest()[:10]
        start = sum(len(part) for part in out)
        out.append(short)
        urls.append(
            {
                "start": start,
                "end": start + len(short),
                "url": short,
                "expanded_url": match.group(),
                "display_url": match.group().split("://", 1)[1][:24] + "…",
            }
        )
        last = match.end()
    out.append(text[last:])
    return "".join(out), urls


def _time(query: Mapping[str, str], name: str) -> datetime | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        raise BadQuery(name, raw, f"Invalid '{name}': '{raw}' is not an ISO 8601 date-time") from None


def _number(query: Mapping[str, str], name: str, low: int, high: int, default: int) -> int:
    raw = query.get(name, str(default))
    if not raw.isdigit() or not low <= int(raw) <= high:
        why = f"The `{name}` query parameter value [{raw}] is not between {low} and {high}"
        raise BadQuery(name, raw, why)
    return int(raw)


def page(posts: Sequence[tuple[str, str]], query: Mapping[str, str]) -> dict[str, Any]:
    """One page of (post id, text) `posts` (any order) under the endpoint's parameters; BadQuery else."""
    size = _number(query, "max_results", 5, 100, 10)
    start, end = _time(query, "start_time"), _time(query, "end_time")
    since, until = query.get("since_id"), query.get("until_id")
    for name, value in (("since_id", since), ("until_id", until)):
        if value is not None and not value.isdigit():
            raise BadQuery(name, value, f"The `{name}` query parameter value [{value}] is not valid")
    token = query.get("pagination_token")
    below: int | None = None
    if token is not None:
        if not token.startswith(TOKEN_PREFIX) or not token[len(TOKEN_PREFIX) :].isdigit():
            why = "The `pagination_token` query parameter value is invalid"
            raise BadQuery("pagination_token", token, why)
        below = int(token[len(TOKEN_PREFIX) :])
    ordered = sorted(posts, key=lambda p: int(p[0]), reverse=True)[:MAX_TIMELINE]
    picked = [
        (pid, text)
        for pid, text in ordered
        if (start is None or created_at(pid) >= start)
        and (end is None or created_at(pid) <= end)
        and (since is None or int(pid) > int(since))
        and (until is None or int(pid) < int(until))
        and (below is None or int(pid) < below)
    ]
    rows, more = picked[:size], len(picked) > size
    fields = {f.strip() for f in query.get("tweet.fields", "").split(",")}
    data = []
    for pid, text in rows:
        shown, urls = shortened(text)
        item: dict[str, Any] = {"id": pid, "text": shown, "edit_history_tweet_ids": [pid]}
        if "created_at" in fields:
            item["created_at"] = _iso(created_at(pid))
        if "entities" in fields and urls:
            item["entities"] = {"urls": urls}
        data.append(item)
    meta: dict[str, Any] = {"result_count": len(rows)}
    if rows:
        meta.update(newest_id=rows[0][0], oldest_id=rows[-1][0])
    if more:
        meta["next_token"] = f"{TOKEN_PREFIX}{rows[-1][0]}"
    return {"data": data, "meta": meta} if data else {"meta": meta}
