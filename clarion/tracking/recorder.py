"""Group commit: concurrent requests' records are written together, and each request waits for its commit.

A click or a webhook is answered only once what it carried is in the ledger (a provider retries a webhook
that was not acknowledged, so acknowledging first could lose it). Writing each request in its own
transaction would cap the service at the database's commit rate; instead one writer thread takes everything
queued since its last commit and writes it in one transaction. Under load batches grow by themselves; when
idle, a lone click is written at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio.to_thread

from clarion.ledger import Click, Conversion, Ledger, ProviderEvent

log = logging.getLogger("clarion.tracking")

MAX_BATCH = 5_000  # records per transaction


@dataclass
class _Pending:
    clicks: Sequence[Click] = ()
    events: Sequence[ProviderEvent] = ()
    conversions: Sequence[Conversion] = ()
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def size(self) -> int:
        return len(self.clicks) + len(self.events) + len(self.conversions)


class Recorder:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._queue: list[_Pending] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.written = 0

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="clarion-recorder")

    async def stop(self) -> None:
        """Write what is queued, then stop."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        while self._queue:
            await self._write_some()
        self._task = None

    async def write(
        self,
        clicks: Sequence[Click] = (),
        events: Sequence[ProviderEvent] = (),
        conversions: Sequence[Conversion] = (),
    ) -> None:
        """Returns once the records are committed; raises what the ledger raised if they could not be."""
        pending = _Pending(clicks, events, conversions)
        if not pending.size:
            return
        if self._wake is None:
            raise RuntimeError("the recorder is not started")
        self._queue.append(pending)
        self._wake.set()
        await pending.done

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                await self._write_some()

    async def _write_some(self) -> None:
        batch: list[_Pending] = []
        size = 0
        while self._queue and (not batch or size + self._queue[0].size <= MAX_BATCH):
            item = self._queue.pop(0)
            batch.append(item)
            size += item.size
        try:
            await anyio.to_thread.run_sync(self._commit, batch)
        except Exception:
            # One bad record must not fail its neighbours: write each request on its own.
            for item in batch:
                try:
                    await anyio.to_thread.run_sync(self._commit, [item])
                except Exception as exc:
                    log.error("could not record %d records: %s", item.size, exc)
                    _settle(item.done, exc)
                else:
                    _settle(item.done)
        else:
            for item in batch:
                _settle(item.done)

    def _commit(self, batch: Sequence[_Pending]) -> None:
        self.ledger.record(
            [c for item in batch for c in item.clicks],
            [e for item in batch for e in item.events],
            [c for item in batch for c in item.conversions],
        )
        self.written += sum(item.size for item in batch)


def _settle(future: asyncio.Future[None], exc: BaseException | None = None) -> None:
    if future.done():
        return
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(exc)
