"""Settling uncertain Threads posts through the profile's own posts (`GET /{user}/threads`).

The listing takes `since` (a Unix time) and is read page after page (`paging.cursors.after`) up to a cap;
it is complete when it ends. A post is ours when its text is the same and it was published after the
attempt: the tracked link names the run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from clarion.channels.base import ProviderError
from clarion.channels.reconcile import Found, Listed, Lookup, match_posts, unknown

#: How the adapter asks Threads: (what, method, path, params=...) -> the JSON; raises a ProviderError.
Ask = Callable[..., dict[str, Any]]

PER_PAGE = 100
MAX_PAGES = 20


def look_up(ask: Ask, user: str, lookups: Sequence[Lookup]) -> list[Found]:
    since = min(lookup.since for lookup in lookups)
    posts: list[Listed] = []
    complete = False
    params: dict[str, Any] = {
        "fields": "id,text,timestamp",
        "since": int(since.timestamp()),
        "limit": PER_PAGE,
    }
    try:
        for _ in range(MAX_PAGES):
            page = ask("list the profile's posts", "GET", f"/{user}/threads", params=params)
            for item in page.get("data") or []:
                posts.append((str(item.get("id")), str(item.get("text") or ""), _when(item.get("timestamp"))))
            after = ((page.get("paging") or {}).get("cursors") or {}).get("after")
            if not after or not (page.get("paging") or {}).get("next"):
                complete = True
                break
            params = {**params, "after": after}
    except ProviderError as exc:
        return unknown(lookups, f"cannot list the profile's posts: {exc.message}")
    return match_posts(
        lookups,
        posts,
        complete=complete,
        sent="Threads has it as post {}",
        where="the profile's posts",
        more="the profile has more posts than Clarion reads back",
    )


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:  # Graph API times look like 2026-12-03T07:49:00+0000
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
