"""Settling uncertain Mastodon statuses through the account's own statuses.

`GET /api/v1/accounts/{id}/statuses` (replies and boosts excluded) lists them newest first, 40 a page; the
listing is read until a status older than the earliest attempt (complete for that window) or a page cap.
Mastodon returns a status's text as HTML (`<p>`, `<br>`, links wrapped in spans), so the text is taken
back out of the HTML before comparing. The tracked link names the run: an older status of the same words
never passes for this one.

A status Mastodon took under an Idempotency-Key can also be resent safely within the hour (`clarion run
--resend-uncertain`): Mastodon answers with the status it already made.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html.parser import HTMLParser
from typing import Any

from clarion.channels.base import ProviderError
from clarion.channels.mastodon.calls import call as _call
from clarion.channels.reconcile import Found, Listed, Lookup, match_posts, unknown

PER_PAGE = 40
MAX_PAGES = 25


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("br", "p"):
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def status_text(content: str) -> str:
    """The text of a status's HTML `content`, as people wrote it (links whole, tags gone)."""
    parser = _Text()
    parser.feed(content)
    parser.close()
    return "".join(parser.parts).strip()


def look_up(client: Any, lookups: Sequence[Lookup]) -> list[Found]:
    since = min(lookup.since for lookup in lookups)
    statuses: list[Listed] = []
    complete = False
    try:
        me = _call(client, "check the token", client.account_verify_credentials)
        max_id = None
        for _ in range(MAX_PAGES):
            page = _call(
                client,
                "list the account's statuses",
                lambda m=max_id: client.account_statuses(
                    me["id"], exclude_replies=True, exclude_reblogs=True, limit=PER_PAGE, max_id=m
                ),
            )
            for status in page:
                at = _when(status.get("created_at"))
                statuses.append((str(status["id"]), status_text(str(status.get("content") or "")), at))
                if at is not None and at < since:
                    complete = True
            if complete or len(page) < PER_PAGE:
                complete = True
                break
            max_id = page[-1]["id"]
    except ProviderError as exc:
        return unknown(lookups, f"cannot list the account's statuses: {exc.message}")
    return match_posts(
        lookups,
        statuses,
        complete=complete,
        sent="Mastodon has it as status {}",
        where="the account's statuses",
        more="the account has more statuses than Clarion reads back",
    )


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None
