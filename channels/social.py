"""Pieces the social providers' adapters share (Bluesky, Mastodon, LinkedIn, Threads): the empty-post
rule, the share kits' compose links, and an HTTP client made once on first use. What each provider says on
the wire stays in its own folder."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar
from urllib.parse import quote, urlencode

import httpx

Problems = list[tuple[str, str]]
T = TypeVar("T")


def with_empty(problems: Problems, text: str, noun: str = "post") -> Problems:
    """The provider's `problems` with a text, and `empty` when there is no text at all."""
    if not text.strip():
        problems.append(("empty", f"{noun} text is empty"))
    return problems


def compose_link(
    provider: str,
    page: str,
    text: str,
    link: str,
    problems: Callable[[str], Problems],
    noun: str = "post",
) -> str:
    """`page?text=<text> <link>`: the composer of the signed-in reader with the post pre-filled; a
    ValueError naming `share_<provider>` when the post with its link breaks the provider's rules."""
    post = f"{text.strip()} {link}"
    broken = problems(post)
    if broken:
        raise ValueError(f"share_{provider}: the pre-filled {noun} with its link: {broken[0][1]}")
    return f"{page}?{urlencode({'text': post}, quote_via=quote)}"


def http_client(base_url: str, timeout: float, headers: Mapping[str, str]) -> httpx.Client:
    """An adapter's httpx client. No idle connections are kept: nothing is left open when the adapter
    goes (a post per variant does not need a pool)."""
    return httpx.Client(
        limits=httpx.Limits(max_keepalive_connections=0),
        base_url=base_url,
        timeout=timeout,
        headers=dict(headers),
    )


class Once(Generic[T]):
    """What `make` returns, made on first use by any of an adapter's threads, then the same each time."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._value: T | None = None

    def get(self) -> T:
        with self._lock:
            if self._value is None:
                self._value = self._make()
            return self._value


__all__ = ["Once", "Problems", "compose_link", "http_client", "with_empty"]
