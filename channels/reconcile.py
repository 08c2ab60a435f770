"""Settling `uncertain` sends by asking the provider what it has: the types every provider's lookup shares.

A send is `uncertain` when its request may have reached the provider without an answer coming back (a read
timeout, a dropped connection, a crash between the call and the ledger's record). Neither SendGrid nor
Twilio takes an idempotency key, so sending it again risks a duplicate; asking is the safe way out. Each
provider looks its messages up in its own way (`Channel.reconcile`, beside the adapter): Twilio's Messages
list, the X account's recent posts, SendGrid's Email Activity API. The answer for one send is a `Found`:

- `SENT`: the provider has the message (its id is kept);
- `NOT_RECEIVED`: the provider's complete listing for that address and time holds no such message;
- `UNKNOWN`: the provider could not be asked, or its listing could not prove either (the reason says why).

A lookup only ever claims `NOT_RECEIVED` from a listing it read to the end; the engine then waits until
the provider has had time to list a late message (`Channel.listing_delay`) before it settles a send failed.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

#: Clocks differ: a provider may stamp a message this much before our own record of the attempt.
CLOCK_SKEW = timedelta(minutes=2)
_URL = re.compile(r"https?://\S+")
_SPACE = re.compile(r"\s+")


class Rendered(Protocol):
    """What a lookup reads of a rendered message (a `channels.base.Message`, kept apart to avoid a cycle)."""

    @property
    def to(self) -> str | None: ...
    @property
    def text(self) -> str: ...
    @property
    def subject(self) -> str | None: ...
    @property
    def link(self) -> str: ...


class Verdict(StrEnum):
    SENT = "sent"  # the provider has it
    NOT_RECEIVED = "not_received"  # the provider's whole listing for it holds no such message
    UNKNOWN = "unknown"  # could not be asked, or the answer proves neither


@dataclass(frozen=True)
class Lookup:
    """One uncertain send to look for: the message as it was rendered, and when its request was made."""

    recipient: str  # its key in the ledger (contact id, or post:<variant>)
    message: Rendered
    attempted_at: datetime  # when it was claimed, just before the request

    @property
    def since(self) -> datetime:
        """The earliest instant the provider can have stamped this message with."""
        return self.attempted_at - CLOCK_SKEW


@dataclass(frozen=True)
class Found:
    """What the provider's answer says about one uncertain send; `detail` is for people (no secrets)."""

    recipient: str
    verdict: Verdict
    detail: str
    provider_id: str | None = None


def unknown(lookups: Iterable[Lookup], detail: str) -> list[Found]:
    """The same `UNKNOWN` answer for every lookup (the provider could not be asked)."""
    return [Found(lookup.recipient, Verdict.UNKNOWN, detail) for lookup in lookups]


def missing(lookup: Lookup, where: str) -> Found:
    """`NOT_RECEIVED`, saying which listing was read."""
    stamp = lookup.since.isoformat(timespec="seconds")
    return Found(lookup.recipient, Verdict.NOT_RECEIVED, f"not in {where} since {stamp}")


def same_text(ours: str, theirs: str, *, without_links: bool = False) -> bool:
    """Whether a provider's copy of a text is ours: NFC, runs of whitespace as one space, trimmed; with
    `without_links`, every URL removed first (X shows its own t.co links instead of ours)."""

    def norm(text: str) -> str:
        text = unicodedata.normalize("NFC", text)
        if without_links:
            text = _URL.sub(" ", text)
        return _SPACE.sub(" ", text).strip()

    return norm(ours) == norm(theirs)


#: A post as a provider lists it back: (its id, its text, when it was created, None when not said).
Listed = tuple[str, str, datetime | None]


def match_posts(
    lookups: Sequence[Lookup],
    posts: Sequence[Listed],
    *,
    complete: bool,
    sent: str,
    where: str,
    more: str,
) -> list[Found]:
    """Each lookup's answer from an account's listing of its posts: `SENT` with the first post not claimed
    yet that has the same text and was not created before the attempt (`sent` with `{}` for its id);
    otherwise `NOT_RECEIVED` when the listing is `complete` (`where`: what was read), `UNKNOWN` (`more`)
    when it is not."""
    claimed: set[str] = set()
    found = []
    for lookup in lookups:
        match = next(
            (
                post_id
                for post_id, text, at in posts
                if post_id not in claimed
                and (at is None or at >= lookup.since)
                and same_text(lookup.message.text, text)
            ),
            None,
        )
        if match is not None:
            claimed.add(match)
            found.append(Found(lookup.recipient, Verdict.SENT, sent.format(match), match))
        elif complete:
            found.append(missing(lookup, where))
        else:
            found.append(Found(lookup.recipient, Verdict.UNKNOWN, more))
    return found


def in_order(found: Sequence[Found], lookups: Sequence[Lookup]) -> list[Found]:
    """`found` in the order of `lookups` (one answer each; a lookup without one is UNKNOWN)."""
    by_recipient = {f.recipient: f for f in found}
    return [
        by_recipient.get(lookup.recipient)
        or Found(lookup.recipient, Verdict.UNKNOWN, "the provider's answer did not cover it")
        for lookup in lookups
    ]


__all__ = [
    "CLOCK_SKEW",
    "Found",
    "Listed",
    "Lookup",
    "Rendered",
    "Verdict",
    "in_order",
    "match_posts",
    "missing",
    "same_text",
    "unknown",
]
