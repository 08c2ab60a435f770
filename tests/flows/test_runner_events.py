"""`clarion worker` hears a served deployment's new flow run from Prefect's event stream, instead of at its
next poll; where the stream cannot be heard it says so once and goes on polling."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import uuid

import pytest

from clarion.flows.runner import RELISTEN, _listen


def test_a_new_flow_run_of_a_served_deployment_wakes_the_worker(prefect_server: str) -> None:
    from prefect import get_client

    async def scenario() -> tuple[float, bool]:
        async with get_client() as client:
            flow_id = await client.create_flow_from_name(f"served-{uuid.uuid4().hex[:6]}")
            served = await client.create_deployment(flow_id, "served")
            other = await client.create_deployment(flow_id, "other")
            wake, listening = asyncio.Event(), asyncio.Event()
            listener = asyncio.create_task(_listen([served], wake, listening))
            await asyncio.wait_for(listening.wait(), 30)
            await asyncio.sleep(1.0)  # whatever the subscription replays from before has arrived
            wake.clear()
            await client.create_flow_run_from_deployment(other)  # not served here: no wake
            await asyncio.sleep(2.0)
            stray = wake.is_set()
            started = time.monotonic()
            await client.create_flow_run_from_deployment(served)
            await asyncio.wait_for(wake.wait(), 30)
            heard = time.monotonic() - started
            listener.cancel()  # as the worker stops: the subscription's socket is closed, not left behind
            await asyncio.gather(listener, return_exceptions=True)
            return heard, stray

    heard, stray = asyncio.run(scenario())
    gc.collect()  # an unclosed socket warns here, in this test, not in whichever test runs next
    assert not stray, "a run of a deployment this worker does not serve woke it"
    assert heard < 5.0, f"the new run was heard {heard:.1f} s after it was made"


def test_a_worker_that_cannot_hear_events_says_so_once_and_polls(caplog: pytest.LogCaptureFixture) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def listen(after: float) -> bool:
        wake, listening = asyncio.Event(), asyncio.Event()
        with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):  # nothing listens there
            await asyncio.wait_for(_listen([uuid.uuid4()], wake, listening, after=after), 60)
        return listening.is_set()

    with caplog.at_level(logging.DEBUG, logger="clarion.worker"):
        assert not asyncio.run(listen(0.0))
        assert not asyncio.run(listen(0.01))  # a retry, RELISTEN s later in the worker
    said = [r for r in caplog.records if "not hearing the server's events" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.WARNING, logging.DEBUG]
    assert "polling every 0.25s" in said[0].getMessage()
    assert RELISTEN > 1
