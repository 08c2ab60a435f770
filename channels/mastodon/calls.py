"""One Mastodon.py call at a time, its errors mapped to Clarion's tree (channels/base.py)."""

from __future__ import annotations

import time
from typing import Any

import requests

from clarion.channels.base import RateLimited, Rejected, Retryable, Uncertain


def call(client: Any, what: str, call: Any, *, writes: bool = False) -> Any:
    """Run one Mastodon.py call, mapping its errors to ours (see channels/base.py)."""
    import mastodon

    try:
        return call()
    except mastodon.MastodonRatelimitError as exc:
        reset = getattr(client, "ratelimit_reset", None)
        wait = max(float(reset) - time.time(), 0.0) if reset else None
        raise RateLimited("Mastodon rate limit: Too many requests", "429", wait) from exc
    except mastodon.MastodonServerError as exc:
        raise Retryable(f"Mastodon server error {_status(exc)}: {_detail(exc)}", "5xx") from exc
    except mastodon.MastodonAPIError as exc:
        status = _status(exc)
        raise Rejected(f"Mastodon refused to {what} ({status}): {_detail(exc)}", str(status)) from exc
    except mastodon.MastodonNetworkError as exc:
        cause = exc.__context__
        if isinstance(cause, requests.ConnectTimeout) or (
            isinstance(cause, requests.ConnectionError)
            and not isinstance(cause, requests.ReadTimeout)
            and ("NewConnectionError" in repr(cause) or "ConnectionRefused" in repr(cause))
        ):
            raise Retryable(f"cannot reach the Mastodon instance: {type(cause).__name__}") from exc
        if not writes:
            raise Retryable(f"the Mastodon instance did not answer: {type(cause).__name__}") from exc
        raise Uncertain(
            "the Mastodon instance did not answer in time; the status may have been published (a resend "
            "within an hour carries the same Idempotency-Key and is not doubled)"
        ) from exc


def _status(exc: Any) -> int | str:
    args: list[Any] = list(getattr(exc, "args", ()))
    return args[1] if len(args) > 1 and isinstance(args[1], int) else "?"


def _detail(exc: Any) -> str:
    args: list[Any] = list(getattr(exc, "args", ()))
    if len(args) > 3 and args[3]:
        return str(args[3])
    if len(args) > 2 and args[2]:
        return str(args[2])
    return type(exc).__name__
