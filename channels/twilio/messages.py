"""Twilio's Message resource and its list (`GET .../Messages.json`) as the sandbox answers them.

The list filters by `To`, `From` and the send date (`DateSent`, `DateSent<`, `DateSent>`: a date
`YYYY-MM-DD` or an instant `YYYY-MM-DDTHH:MM:SSZ`, as the SDK sends a datetime), newest first, in pages of
`PageSize` (1-1000, default 50) with `Page` and an opaque `PageToken`, in Twilio's page envelope
(`first_page_uri`, `next_page_uri`, ...). The sandbox never sends a text on, so every message stays
`queued` (or `accepted`) with no send date: a `DateSent` filter leaves it out, as Twilio's would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

API_VERSION = "2010-04-01"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
TOKEN_PREFIX = "PASM"


class BadQuery(ValueError):
    """A list query Twilio would refuse: the message is Twilio's."""


def resource(record: Mapping[str, Any]) -> dict[str, Any]:
    """The Message resource of a stored text, as Twilio answers a create, a fetch or a list."""
    sid, account_sid = str(record["provider_id"]), str(record["account_sid"])
    stamp = format_datetime(datetime.fromisoformat(str(record["received_at"])))
    base = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}"
    return {
        "account_sid": account_sid,
        "api_version": API_VERSION,
        "body": record["text"],
        "date_created": stamp,
        "date_sent": None,
        "date_updated": stamp,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": record["from"],
        "messaging_service_sid": record.get("messaging_service_sid"),
        "num_media": str(len(record.get("media_urls") or [])),
        "num_segments": record["num_segments"],
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": record["status"],
        "subresource_uris": {"media": f"{base}/Media.json"},
        "to": record["to"],
        "uri": f"{base}.json",
    }


def _when(value: str, name: str) -> datetime:
    """A DateSent filter's value as an instant (a bare date is its midnight UTC)."""
    text = value.strip().removeprefix("<=").removeprefix(">=")
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        raise BadQuery(f"Invalid {name}: {value!r} is not a date (YYYY-MM-DD)") from None


def _sent_filter(query: Mapping[str, str]) -> bool:
    return any(name in query for name in ("DateSent", "DateSent<", "DateSent>"))


def page(records: Sequence[Mapping[str, Any]], account_sid: str, query: Mapping[str, str]) -> dict[str, Any]:
    """One page of the account's texts matching `query` (the list endpoint's parameters), newest first."""
    size_text = query.get("PageSize", str(DEFAULT_PAGE_SIZE))
    if not size_text.isdigit() or not 1 <= int(size_text) <= MAX_PAGE_SIZE:
        raise BadQuery(f"Invalid PageSize: must be between 1 and {MAX_PAGE_SIZE}")
    size = int(size_text)
    number_text = query.get("Page", "0")
    if not number_text.isdigit():
        raise BadQuery("Invalid Page: must be a non-negative integer")
    number = int(number_text)
    for name in ("DateSent", "DateSent<", "DateSent>"):
        if name in query:
            _when(query[name], name)  # a malformed date is refused even though nothing matches it
    picked = [
        r
        for r in records
        if r.get("account_sid") == account_sid
        and query.get("To") in (None, r.get("to"))
        and query.get("From") in (None, r.get("from"))
        and not _sent_filter(query)  # nothing here has a send date
    ]
    picked.sort(key=lambda r: int(r["id"]), reverse=True)
    token = query.get("PageToken")
    if token:
        if not token.startswith(TOKEN_PREFIX) or not token[len(TOKEN_PREFIX) :].isdigit():
            raise BadQuery(f"Invalid PageToken: {token!r}")
        after = int(token[len(TOKEN_PREFIX) :])
        start_at = next((i for i, r in enumerate(picked) if int(r["id"]) < after), len(picked))
    else:
        start_at = number * size
    rows = picked[start_at : start_at + size]
    path = f"/{API_VERSION}/Accounts/{account_sid}/Messages.json"
    kept = {k: v for k, v in query.items() if k in ("To", "From", "DateSent", "DateSent<", "DateSent>")}

    def uri(n: int, extra: dict[str, str] | None = None) -> str:
        return f"{path}?{urlencode({**kept, 'PageSize': size, 'Page': n, **(extra or {})})}"

    more = start_at + size < len(picked)
    return {
        "messages": [resource(r) for r in rows],
        "end": start_at + len(rows) - 1 if rows else start_at,
        "first_page_uri": uri(0),
        "next_page_uri": uri(number + 1, {"PageToken": f"{TOKEN_PREFIX}{rows[-1]['id']}"}) if more else None,
        "page": number,
        "page_size": size,
        "previous_page_uri": uri(number - 1) if number > 0 else None,
        "start": start_at,
        "uri": uri(number, {"PageToken": token} if token else None),
    }
