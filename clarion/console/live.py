"""Live updates: each page's fragments, re-rendered from the ledger and pushed as server-sent events.

A page names its fragments (elements with an id) and the stream that keeps them fresh; the stream renders
the same templates every POLL seconds and sends a fragment only when its HTML changed, as
`event: fragment` with `{"id", "html"}`. console.js swaps it in. A stream ends after MAX_STREAM seconds
(the browser's EventSource reconnects by itself), so a server shutting down never waits on it for long,
and says `signed-out` when the session ended, so the page goes back to the sign-in form.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable

import anyio
import anyio.to_thread
from starlette.requests import Request

POLL = 1.0
MAX_STREAM = 120.0

Render = Callable[[], dict[str, str]]  # fragment id -> its HTML, read from the ledger (blocking)
Alive = Callable[[], bool]  # whether the session is still good (blocking)


async def stream(request: Request, render: Render, alive: Alive, poll: float = POLL) -> AsyncIterator[str]:
    """The events of one page's stream, until the client leaves, the session ends or MAX_STREAM."""
    yield "retry: 2000\n\n"
    sent: dict[str, str] = {}
    deadline = time.monotonic() + MAX_STREAM
    while time.monotonic() < deadline:
        if await request.is_disconnected():
            return
        if not await anyio.to_thread.run_sync(alive):
            yield "event: signed-out\ndata: {}\n\n"
            return
        fragments = await anyio.to_thread.run_sync(render)
        for fragment_id, html in fragments.items():
            if sent.get(fragment_id) != html:
                sent[fragment_id] = html
                yield f"event: fragment\ndata: {json.dumps({'id': fragment_id, 'html': html})}\n\n"
        yield ": still here\n\n"  # a comment: proxies keep the connection, the client ignores it
        await anyio.sleep(poll)


__all__ = ["MAX_STREAM", "POLL", "stream"]
