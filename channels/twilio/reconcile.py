"""Settling uncertain texts through Twilio's Messages list (`GET /2010-04-01/Accounts/{sid}/Messages.json`).

Twilio creates the Message resource when it accepts the request, so a text it took is listed at once. The
list is read per recipient, filtered by `To` and `From` (with a Messaging Service, by `To`, then its sid),
and matched on the body and the creation time. Not by `DateSent`: a text still queued has no send date,
and those are exactly the ones an uncertain send is about. Twilio lists the newest first; reading stops at
the first page older than the attempt, and a page out of that order makes it read on (at most MAX_PAGES).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import requests

from clarion.channels.reconcile import Found, Lookup, Verdict, missing, same_text, unknown

#: A text with our words and another link: ours, rendered under another signing key, or someone else's.
DOUBTFUL = (
    "Twilio lists {sid} to this number with the same words but another link (was CLARION_SECRET_KEY "
    "changed since the run?); check it in Twilio's console"
)
PAGE_SIZE = 100
MAX_PAGES = 20
_T = TypeVar("_T")


class CannotAsk(Exception):
    """Twilio cannot be asked now (credentials refused, rate limited, unreachable): the rest stay unknown."""


def look_up(client: Any, sender: str | None, service: str | None, lookups: Sequence[Lookup]) -> list[Found]:
    """One answer per lookup, in order; `sender` is the channel's From number, `service` its Messaging
    Service sid (when it sends through one)."""
    found: list[Found] = []
    claimed: set[str] = set()  # a listed message settles one send at most
    for i, lookup in enumerate(lookups):
        try:
            found.append(_one(client, sender, service, lookup, claimed))
        except CannotAsk as exc:
            return found + unknown(lookups[i:], str(exc))
    return found


def _one(client: Any, sender: str | None, service: str | None, lookup: Lookup, claimed: set[str]) -> Found:
    filters: dict[str, Any] = {"to": lookup.message.to, "page_size": PAGE_SIZE}
    if sender:
        filters["from_"] = sender
    page = _ask(client, client.messages.page, **filters)
    newest_first, oldest, pages, doubtful = True, None, 0, None
    while page is not None:
        pages += 1
        for listed in page:
            created = listed.date_created
            if oldest is not None and created is not None and created > oldest:
                newest_first = False
            oldest = created if created is not None else oldest
            if listed.sid in claimed or not _ours(listed, lookup, service):
                continue
            if same_text(lookup.message.text, str(listed.body or "")):
                claimed.add(listed.sid)
                stamp = created.isoformat(timespec="seconds") if created else "?"
                detail = f"Twilio lists {listed.sid} ({listed.status}, created {stamp})"
                return Found(lookup.recipient, Verdict.SENT, detail, str(listed.sid))
            if same_text(lookup.message.text, str(listed.body or ""), without_links=True):
                doubtful = listed.sid
        if newest_first and oldest is not None and oldest < lookup.since:
            break  # everything after this page is older than the attempt
        if page.next_page_url and pages >= MAX_PAGES:
            read = f"{pages * PAGE_SIZE:,}"
            return Found(
                lookup.recipient,
                Verdict.UNKNOWN,
                f"Twilio lists over {read} texts to this number, not newest first; read them in the console",
            )
        page = _ask(client, page.next_page)
    if doubtful is not None:
        return Found(lookup.recipient, Verdict.UNKNOWN, DOUBTFUL.format(sid=doubtful))
    return missing(lookup, "Twilio's Messages list for this number")


def _ours(listed: Any, lookup: Lookup, service: str | None) -> bool:
    """Whether a listed text could be this send's: sent by us, to them, since the attempt."""
    if not str(listed.direction or "").startswith("outbound"):
        return False
    if listed.date_created is not None and listed.date_created < lookup.since:
        return False
    # listed by `To` only with a Messaging Service: another sender's text to the same number is not ours
    return not service or listed.messaging_service_sid == service


def _ask(client: Any, call: Callable[..., _T], **kwargs: Any) -> _T:
    """`call(**kwargs)`, with Twilio's refusals turned into CannotAsk saying why (never a credential)."""
    from twilio.base.exceptions import TwilioException, TwilioRestException

    try:
        return call(**kwargs)
    except TwilioRestException as exc:
        raise CannotAsk(_why(exc.status, exc.code)) from exc
    except TwilioException as exc:  # a page Twilio refused: the status is on the response kept last
        last = getattr(client.http_client, "last_seen", None)
        raise CannotAsk(_why(getattr(last, "status_code", 0), None)) from exc
    except requests.RequestException as exc:
        raise CannotAsk(f"cannot reach Twilio to list its messages: {type(exc).__name__}") from exc
    except (ValueError, KeyError) as exc:  # a page that is not Twilio's JSON
        raise CannotAsk("Twilio's Messages list answered with something other than a page") from exc


def _why(status: int, code: int | None) -> str:
    if status in (401, 403):
        return (
            f"Twilio refused the credentials (HTTP {status}): check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
        )
    if status == 429 or code == 20429:
        return "Twilio's rate limit: run `clarion reconcile` again in a minute"
    return f"Twilio answered HTTP {status} to the Messages list; run `clarion reconcile` again later"
