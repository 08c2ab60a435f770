"""X direct messages through tweepy: sending one (`create_direct_message`) and reading the account's
newest DM events (`get_direct_message_events`, the polling alternative to the webhook).

X's documented limits for the DM endpoints differ between its pages (15 per 15 minutes and 1,440 per
24 hours per user in the current rate-limit table; 200 per 15 minutes and 1,000 per 24 hours in the
older migration guide): plan for the lower, about one DM a minute per account. A 429 carries
`x-rate-limit-reset`; it is mapped to RateLimited with how long to wait.
"""

from __future__ import annotations

import time
from typing import Any

import requests

from clarion.channels.base import (
    RateLimited,
    Rejected,
    Retryable,
    Uncertain,
    retry_after_seconds,
    seconds_until,
)

#: What a DM event must carry for a responder (X sends only id, event_type and text by default).
DM_EVENT_FIELDS = ["id", "event_type", "text", "sender_id", "dm_conversation_id", "created_at"]


def _detail(exc: Any) -> str:
    try:
        body = exc.response.json()
    except ValueError:
        return str(exc.response.reason or "")
    if isinstance(body, dict):
        if body.get("detail"):
            return str(body["detail"])
        errors = body.get("errors") or []
        if errors:
            return "; ".join(str(e.get("message", e)) for e in errors)
    return str(exc.response.reason or "")


def send_direct_message(client: Any, participant_id: str, text: str, user_auth: bool) -> str:
    """The new DM's dm_event_id; raises a ProviderError subclass (Rejected for a 403: the person's DM
    settings refuse us)."""
    import tweepy

    try:
        response = client.create_direct_message(participant_id=participant_id, text=text, user_auth=user_auth)
    except tweepy.TooManyRequests as exc:
        headers = exc.response.headers
        wait = retry_after_seconds(headers.get("retry-after")) or seconds_until(
            headers.get("x-rate-limit-reset"), time.time()
        )
        raise RateLimited(f"X rate limit: {_detail(exc)}", "429", wait) from exc
    except tweepy.TwitterServerError as exc:
        raise Retryable(f"X server error {exc.response.status_code}: {_detail(exc)}", "5xx") from exc
    except tweepy.HTTPException as exc:
        status = exc.response.status_code
        raise Rejected(f"X refused the direct message ({status}): {_detail(exc)}", str(status)) from exc
    except requests.ConnectTimeout as exc:
        raise Retryable("cannot reach X: connection timed out") from exc
    except requests.Timeout as exc:
        raise Uncertain("X did not answer in time; the direct message may have been sent") from exc
    except requests.ConnectionError as exc:
        if "NewConnectionError" in repr(exc) or "ConnectionRefused" in repr(exc):
            raise Retryable(f"cannot reach X: {type(exc).__name__}") from exc
        raise Uncertain("connection to X dropped mid-request; the direct message may have been sent") from exc
    data = response.data or {}
    return str(data.get("dm_event_id", ""))


def read_direct_message_events(client: Any, max_results: int, user_auth: bool) -> dict[str, Any]:
    """The newest page of DM events as X's JSON (`data`, `meta`); raises Retryable or RateLimited."""
    import tweepy

    try:
        response = client.get_direct_message_events(
            dm_event_fields=DM_EVENT_FIELDS,
            event_types="MessageCreate",
            max_results=max_results,
            user_auth=user_auth,
        )
    except tweepy.TooManyRequests as exc:
        wait = seconds_until(exc.response.headers.get("x-rate-limit-reset"), time.time())
        raise RateLimited(f"X rate limit: {_detail(exc)}", "429", wait) from exc
    except tweepy.HTTPException as exc:
        raise Retryable(f"X refused the DM lookup ({exc.response.status_code}): {_detail(exc)}") from exc
    except requests.RequestException as exc:
        raise Retryable(f"cannot reach X: {type(exc).__name__}") from exc
    events = [
        {
            "id": str(e.id),
            "event_type": e.event_type,
            "text": e.text,
            "sender_id": None if e.sender_id is None else str(e.sender_id),
            "dm_conversation_id": e.dm_conversation_id,
        }
        for e in response.data or []
    ]
    return {"data": events, "meta": dict(response.meta or {})}
