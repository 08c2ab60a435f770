"""Settling uncertain Bluesky posts through the account's own records (`com.atproto.repo.listRecords`).

The PDS lists the repository's `app.bsky.feed.post` records newest first, straight from the repository
(no AppView delay). One listing covers every lookup: pages are read until a record older than the earliest
attempt (then the listing is complete for that window) or a page cap. A post is ours when its text is the
same and it was created after the attempt; the tracked link in the text names the run, so an older post of
the same words never passes for this one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from clarion.channels.base import ProviderError
from clarion.channels.bluesky.calls import call as _call
from clarion.channels.bluesky.calls import created_at
from clarion.channels.reconcile import Found, Listed, Lookup, match_posts, unknown

PER_PAGE = 100
MAX_PAGES = 30


def look_up(client: Callable[[], Any], lookups: Sequence[Lookup]) -> list[Found]:
    since = min(lookup.since for lookup in lookups)
    try:
        session = client()
        repo = session.me.did if getattr(session, "me", None) else None
        if not repo:
            return unknown(lookups, "Bluesky did not say whose repository the session is")
        records: list[Listed] = []
        cursor: str | None = None
        complete = False
        for _ in range(MAX_PAGES):
            params = {"repo": repo, "collection": "app.bsky.feed.post", "limit": PER_PAGE}
            if cursor:
                params["cursor"] = cursor
            page = _call(
                "list the account's posts",
                lambda p=params: session.com.atproto.repo.list_records(p),
            )
            for record in page.records:
                at = _created(record.value)
                records.append((str(record.uri), str(getattr(record.value, "text", "") or ""), at))
                if at is not None and at < since:
                    complete = True
            cursor = page.cursor
            if complete or not cursor or not page.records:
                complete = True
                break
    except ProviderError as exc:
        return unknown(lookups, f"cannot list the account's posts: {exc.message}")
    return match_posts(
        lookups,
        records,
        complete=complete,
        sent="Bluesky has it as {}",
        where="the account's posts",
        more="the account has more posts than Clarion reads back",
    )


def _created(value: Any) -> datetime | None:
    return created_at(value)
