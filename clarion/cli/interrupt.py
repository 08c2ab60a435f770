"""`clarion run` stopping cleanly: SIGINT and SIGTERM ask the launch to stop sending new requests, what is
in flight settles, the run is marked `interrupted` in the ledger, and one line says how to resume it.

The launch flow runs in a thread of its own, so that this process's main thread keeps the signals (Prefect
turns SIGTERM into an exception inside a flow run's main thread, and reports it to its API server, which
was often killed by the same signal: that was a two-screen traceback and a minute of retries). The main
thread asks the launch's `Coordination` to stop, waits until no request is in flight, and gives the flow a
few seconds to end on its own. A flow that cannot (its Prefect server is gone) is left behind: the ledger
already holds the truth, so the run is marked interrupted here and the process exits at once.

A second signal skips the wait for what is in flight: those sends stay `in_flight` in the ledger and a
resume lists them as uncertain (never resent unless --resend-uncertain).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from clarion.engine.coordination import Coordination

FLOW_GRACE = 15.0  # seconds the flow gets to end on its own once nothing is in flight (its server alive)
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """The run stopped on a signal (or lost its Prefect server); it is resumable with --run-id."""

    def __init__(self, run_id: str, why: str, exit_code: int, *, abandoned: bool = False) -> None:
        super().__init__(why)
        self.run_id, self.why, self.exit_code, self.abandoned = run_id, why, exit_code, abandoned


class Stopper:
    """Installs the SIGINT and SIGTERM handlers while a launch runs (a context manager, main thread only)."""

    def __init__(self, coordination: Coordination) -> None:
        self.coordination = coordination
        self.signum: int | None = None
        self.forced = threading.Event()
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> Stopper:
        for signum in SIGNALS:
            self._saved[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            self.coordination.request_stop(f"{signal.Signals(signum).name} received")
        else:
            self.forced.set()

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGTERM)


@dataclass
class FlowThread:
    """The launch flow in a daemon thread; its outcome or its exception once it ends."""

    target: Callable[[], Any]
    result: Any = None
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, name="clarion-launch", daemon=True)

    def _run(self) -> None:
        try:
            self.result = self.target()
        except BaseException as exc:  # handed to the main thread, which decides what the user sees
            self.error = exc

    def start(self) -> None:
        self.thread.start()

    def alive(self) -> bool:
        return self.thread.is_alive()

    def wait(self, stopper: Stopper, settle_timeout: float) -> bool:
        """Until the flow ends; after a signal, until what is in flight settled and the flow had its grace.

        Returns False when the flow was left behind (it did not end in time)."""
        while self.alive() and stopper.signum is None:
            self.thread.join(0.2)
        if not self.alive():
            return True
        deadline = time.monotonic() + settle_timeout
        while not stopper.forced.is_set() and time.monotonic() < deadline:
            if stopper.coordination.settled(0.2):
                break
        grace = time.monotonic() + FLOW_GRACE
        while self.alive() and not stopper.forced.is_set() and time.monotonic() < grace:
            if temporary_server_gone():  # the signal took it down: the flow cannot finish talking to it
                break
            self.thread.join(0.2)
        return not self.alive()


def _temporary_servers() -> list[Any]:
    """Prefect's temporary (ephemeral) API servers started by this process."""
    try:
        from prefect.server.api.server import SubprocessASGIServer
    except ImportError:
        return []
    return list(getattr(SubprocessASGIServer, "_instances", {}).values())


def temporary_server_gone() -> bool:
    """Whether this process's Prefect ran a temporary server that has died (killed with the group)."""
    servers = _temporary_servers()
    processes = [getattr(s, "server_process", None) for s in servers]
    return bool(processes) and all(p is None or p.poll() is not None for p in processes)


def stop_temporary_servers() -> None:
    """Stop Prefect's temporary server before leaving at once: `os._exit` skips the exit handler that
    would, and the server would be left running."""
    for server in _temporary_servers():
        with contextlib.suppress(Exception):  # leaving anyway; nothing else to do for it
            server.stop()


def prefect_unreachable(exc: BaseException | None) -> bool:
    """Whether an error came from the Prefect API server going away (connection refused, reset, timeout)."""
    import httpx

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, httpx.TransportError):
            return True
        if isinstance(exc, RuntimeError) and "Prefect API server" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def lost_server_message(exc: BaseException | None = None) -> str:
    url = os.environ.get("PREFECT_API_URL")
    if isinstance(exc, RuntimeError) and "Timed out" in str(exc) and not url:
        return (
            "Prefect's temporary server did not start in time (a busy machine?): raise "
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or run `prefect server start` and set "
            "PREFECT_API_URL"
        )
    if not url:
        return "Prefect's temporary server stopped while the run was going (killed, or short of memory?)"
    return (
        f"lost the Prefect server at {url}: check that it runs (`prefect server start`) and is reachable "
        "from here"
    )


def mark_interrupted(run_ids: list[str], why: str) -> None:
    """The runs that exist and are not over are `interrupted` (the flow could not say so itself)."""
    from clarion.ledger import Ledger, RunStatus

    store = Ledger.open()
    for run_id in run_ids:
        record = store.get_run(run_id)
        if record is not None and not record.status.finished and record.status is not RunStatus.INTERRUPTED:
            store.set_run_status(run_id, RunStatus.INTERRUPTED, error=why[:2000])


__all__ = [
    "FLOW_GRACE",
    "FlowThread",
    "Interrupted",
    "Stopper",
    "lost_server_message",
    "mark_interrupted",
    "prefect_unreachable",
    "stop_temporary_servers",
    "temporary_server_gone",
]
