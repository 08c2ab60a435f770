"""Settling uncertain LinkedIn posts through the page's own posts (`GET /rest/posts?q=author`).

LinkedIn lists an author's posts newest first (`sortBy=CREATED`), 50 a page with `start`; the listing is
read until a post created before the earliest attempt (complete for that window) or a page cap. The
commentary comes back in little-text form and is unescaped before comparing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from clarion.channels.base import ProviderError
from clarion.channels.linkedin.rules import unescape_little_text
from clarion.channels.reconcile import Found, Listed, Lookup, match_posts, unknown

#: How the adapter asks LinkedIn: (what, method, path) -> the response; raises a ProviderError.
Ask = Callable[[str, str, str], Any]

PER_PAGE = 50
MAX_PAGES = 20


def look_up(ask: Ask, organization: str, lookups: Sequence[Lookup]) -> list[Found]:
    since = min(lookup.since for lookup in lookups)
    posts: list[Listed] = []
    complete = False
    try:
        for page_number in range(MAX_PAGES):
            query = (
                f"q=author&author={quote(organization, safe='')}&sortBy=CREATED"
                f"&count={PER_PAGE}&start={page_number * PER_PAGE}"
            )
            response = ask("list the page's posts", "GET", f"/rest/posts?{query}")
            data = response.json() if response.content else {}
            elements = data.get("elements") or [] if isinstance(data, dict) else []
            for element in elements:
                created = element.get("createdAt")
                at = datetime.fromtimestamp(created / 1000, UTC) if isinstance(created, int | float) else None
                text = unescape_little_text(str(element.get("commentary") or ""))
                posts.append((str(element.get("id")), text, at))
                if at is not None and at < since:
                    complete = True
            if complete or len(elements) < PER_PAGE:
                complete = True
                break
    except (ProviderError, ValueError) as exc:
        why = exc.message if isinstance(exc, ProviderError) else "its answer was not JSON"
        return unknown(lookups, f"cannot list the page's posts: {why}")
    return match_posts(
        lookups,
        posts,
        complete=complete,
        sent="LinkedIn has it as {}",
        where="the page's posts",
        more="the page has more posts than Clarion reads back",
    )
