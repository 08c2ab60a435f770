"""Settling uncertain emails through SendGrid's Email Activity API (`GET /v3/messages?query=...`).

The API needs the paid "additional email activity history" add-on: without it SendGrid answers 400
"authorization required", and an API key without Email Activity access (scope `messages.read`) gets 403.
Either way these emails cannot be settled by asking: they stay uncertain, and the reason names the add-on
or the key. A mail send that timed out has no X-Message-Id, so recipients are found by address, sender,
subject and time: up to GROUP recipients a query, `(to_email="a" OR to_email="b" ...) AND
from_email="..." AND last_event_time BETWEEN TIMESTAMP "..." AND TIMESTAMP "..."`. The API has no paging:
an answer holding LIMIT rows may have left some out, and proves nothing about who is not in it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from clarion.channels.reconcile import CLOCK_SKEW, Found, Lookup, Verdict, missing, same_text, unknown

GROUP = 50
LIMIT = 1000
ADD_ON = (
    "SendGrid's Email Activity API is not available to this account: it needs the paid \"additional "
    'email activity history" add-on (SendGrid answered 400 authorization required). Buy the add-on and '
    "give the API key Email Activity access, or check these emails in SendGrid's Activity Feed by hand"
)
SCOPE = (
    "the API key may not read Email Activity (SendGrid answered 403): give it Email Activity access "
    "(scope messages.read) in SendGrid's API key settings"
)


class CannotAsk(Exception):
    """SendGrid cannot be asked now; the remaining lookups stay unknown, for this reason."""


def look_up(client: Any, sender: str, lookups: Sequence[Lookup]) -> list[Found]:
    """One answer per lookup, in order; `sender` is the From address the channel sends with."""
    found: list[Found] = []
    claimed: set[str] = set()
    for start in range(0, len(lookups), GROUP):
        group = lookups[start : start + GROUP]
        try:
            listed = _list(client, sender, group)
        except CannotAsk as exc:
            return found + unknown(lookups[start:], str(exc))
        complete = len(listed) < LIMIT
        for lookup in group:
            found.append(_match(listed, lookup, claimed, complete))
    return found


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _list(client: Any, sender: str, group: Sequence[Lookup]) -> list[dict[str, Any]]:
    addresses = sorted({(lookup.message.to or "").lower() for lookup in group})
    anyone = " OR ".join(f"to_email={_quoted(a)}" for a in addresses)
    since = min(lookup.since for lookup in group)
    until = datetime.now(UTC) + CLOCK_SKEW
    query = (
        f"({anyone}) AND from_email={_quoted(sender)} AND last_event_time BETWEEN "
        f'TIMESTAMP "{_stamp(since)}" AND TIMESTAMP "{_stamp(until)}"'
    )
    body = _ask(client, query)
    rows = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(rows, list):
        raise CannotAsk("SendGrid's Email Activity answer held no `messages` list")
    return [row for row in rows if isinstance(row, dict)]


def _match(listed: list[dict[str, Any]], lookup: Lookup, claimed: set[str], complete: bool) -> Found:
    address = (lookup.message.to or "").lower()
    for row in listed:
        msg_id = str(row.get("msg_id") or "")
        if msg_id in claimed or str(row.get("to_email") or "").lower() != address:
            continue
        if not same_text(lookup.message.subject or "", str(row.get("subject") or "")):
            continue
        claimed.add(msg_id)
        detail = (
            f"SendGrid's Email Activity lists {msg_id} ({row.get('status')}, last event "
            f"{row.get('last_event_time')})"
        )
        # the ledger keeps the X-Message-Id of a send: msg_id is that, then a per-recipient suffix
        return Found(lookup.recipient, Verdict.SENT, detail, msg_id.split(".", 1)[0])
    if not complete:
        why = f"SendGrid's Email Activity returned its maximum of {LIMIT:,} rows; some may be missing"
        return Found(lookup.recipient, Verdict.UNKNOWN, why)
    return missing(lookup, "SendGrid's Email Activity for this address")


def _ask(client: Any, query: str) -> Any:
    import http.client
    import urllib.error

    from python_http_client import exceptions as sg_errors

    try:
        response = client.client.messages.get(query_params={"query": query, "limit": LIMIT})
    except sg_errors.HTTPError as exc:
        raise CannotAsk(_why(int(getattr(exc, "status_code", 0) or 0), getattr(exc, "body", b""))) from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        raise CannotAsk(f"cannot reach SendGrid's Email Activity API: {type(exc).__name__}") from exc
    try:
        return json.loads(response.body or b"{}")
    except ValueError as exc:
        raise CannotAsk("SendGrid's Email Activity answer is not JSON") from exc


def _why(status: int, body: Any) -> str:
    try:
        errors = json.loads(body or b"{}").get("errors") or []
        said = "; ".join(str(e.get("message")) for e in errors if isinstance(e, dict))
    except (ValueError, AttributeError, TypeError):
        said = ""
    if status == 400 and "authorization required" in said.lower():
        return ADD_ON
    if status == 403:
        return SCOPE
    if status == 401:
        return "SendGrid refused the API key (HTTP 401): check SENDGRID_API_KEY"
    if status == 429:
        return "SendGrid's rate limit on Email Activity: run `clarion reconcile` again in a minute"
    return f"SendGrid answered HTTP {status} to the Email Activity query: {said or 'no reason given'}"
