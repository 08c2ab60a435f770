"""One atproto call at a time, its errors mapped to Clarion's tree (channels/base.py)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import httpx

from clarion.channels.base import RateLimited, Rejected, Retryable, Uncertain, seconds_until


def call(what: str, call: Any, *, writes: bool = False, login: bool = False) -> Any:
    """Run one SDK call, mapping atproto's errors to ours (see channels/base.py)."""
    from atproto_client import exceptions as ex

    try:
        return call()
    except ex.RateLimitExceededError as exc:
        wait = exc.retry_after
        if wait is None and exc.response is not None:
            wait = seconds_until(exc.response.headers.get("ratelimit-reset"), time.time())
        raise RateLimited(f"Bluesky rate limit: {_detail(exc)}", "429", wait) from exc
    except ex.UnauthorizedError as exc:
        status = exc.response.status_code if exc.response is not None else 401
        hint = (
            "check BLUESKY_HANDLE and BLUESKY_APP_PASSWORD (an app password, not the account's own)"
            if login
            else _detail(exc)
        )
        raise Rejected(f"Bluesky refused to {what} ({status}): {hint}", str(status)) from exc
    except ex.BadRequestError as exc:
        raise Rejected(f"Bluesky refused to {what} (400): {_detail(exc)}", "400") from exc
    except ex.InvokeTimeoutError as exc:
        if not writes or isinstance(exc.__cause__, httpx.ConnectTimeout):
            raise Retryable(f"cannot reach Bluesky to {what}: timed out") from exc
        raise Uncertain("Bluesky did not answer in time; the post may have been published") from exc
    except ex.NetworkError as exc:
        if exc.response is not None:  # 409, 413, 502 are raised as network errors by the SDK
            status = exc.response.status_code
            if status == 502:
                raise Retryable(f"Bluesky server error 502: {_detail(exc)}", "5xx") from exc
            raise Rejected(f"Bluesky refused to {what} ({status}): {_detail(exc)}", str(status)) from exc
        if not writes or isinstance(exc.__cause__, httpx.ConnectError):
            raise Retryable(f"cannot reach Bluesky: {type(exc.__cause__).__name__}") from exc
        raise Uncertain(
            "connection to Bluesky dropped mid-request; the post may have been published"
        ) from exc
    except ex.RequestException as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status >= 500:
            raise Retryable(f"Bluesky server error {status}: {_detail(exc)}", "5xx") from exc
        raise Rejected(f"Bluesky refused to {what} ({status}): {_detail(exc)}", str(status)) from exc
    except ex.ModelError as exc:
        if writes:
            raise Uncertain(
                f"Bluesky's answer could not be read ({exc}); the post may have been published"
            ) from exc
        raise Retryable(f"Bluesky's answer could not be read: {exc}") from exc


def _detail(exc: Any) -> str:
    """Bluesky's own `error: message`, else the status."""
    response = getattr(exc, "response", None)
    content = getattr(response, "content", None)
    error = getattr(content, "error", None)
    if error:
        message = getattr(content, "message", None)
        return f"{error}: {message}" if message else str(error)
    return str(getattr(response, "status_code", "")) or type(exc).__name__


def created_at(record: Any) -> datetime | None:
    """A post record's `createdAt`, or None when unreadable."""
    raw = getattr(record, "created_at", None) or getattr(record, "createdAt", None)
    if raw is None and isinstance(record, dict):  # a record type the SDK does not know, as plain data
        raw = record.get("createdAt")
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
