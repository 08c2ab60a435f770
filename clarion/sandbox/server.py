"""Running the sandbox: `Sandbox`, in a background thread of this process, and `serve`, in the foreground."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import uvicorn

from clarion.sandbox.app import FaultsInput, SandboxState
from clarion.sandbox.faults import FaultConfig, check_provider
from clarion.sandbox.store import MAX_REQUESTS

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def _config(state: SandboxState, host: str, port: int, *, quiet: bool) -> uvicorn.Config:
    return uvicorn.Config(
        state.app,
        host=host,
        port=port,
        loop="asyncio",
        http="h11",
        lifespan="off",
        access_log=False,
        # In-process, leave the host program's logging alone; in the foreground, uvicorn's own set-up.
        log_config=None if quiet else uvicorn.config.LOGGING_CONFIG,
        log_level="warning" if quiet else "info",
        timeout_graceful_shutdown=2,
    )


class Sandbox:
    """The provider sandbox on 127.0.0.1, served by uvicorn in a background thread.

    >>> with Sandbox(port=0) as sb:           # doctest: +SKIP
    ...     SendGridAPIClient(api_key="SG.x", host=sb.url).send(mail)
    ...     sb.messages("sendgrid")
    """

    def __init__(
        self,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        faults: FaultsInput | None = None,
        opted_out: Iterable[str] = (),
        max_requests: int = MAX_REQUESTS,
    ) -> None:
        self.host = host
        self.state = SandboxState(faults, opted_out, max_requests)
        self._requested_port = port
        self._port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the sandbox is not running; use it as a context manager or call start()")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Sandbox:
        if self._thread is not None:
            raise RuntimeError("the sandbox is already running")
        # IPPROTO_TCP explicitly: asyncio turns Nagle off only on sockets whose proto says TCP, and without
        # that every response waits ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._requested_port))
        except OSError:
            sock.close()
            raise
        self._socket = sock
        self._port = sock.getsockname()[1]
        self.state.stopping.clear()
        self._server = uvicorn.Server(_config(self.state, self.host, self._port, quiet=True))
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"clarion-sandbox-{self._port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the provider sandbox did not start on {self.host}:{self._port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        server, thread, sock = self._server, self._thread, self._socket
        self._server = self._thread = self._socket = None
        self._port = None
        self.state.stopping.set()
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(STOP_TIMEOUT)
            if thread.is_alive() and server is not None:
                server.force_exit = True
                thread.join(STOP_TIMEOUT)
        if sock is not None:
            sock.close()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- what tests and demos use -----------------------------------------------------------------

    def messages(self, provider: str | None = None) -> list[dict[str, Any]]:
        """Messages accepted so far, oldest first; `provider` is "sendgrid", "twilio" or "x"."""
        return self.state.store.messages(provider)

    def requests(self, provider: str | None = None) -> list[dict[str, Any]]:
        """Every provider request received (faulted and refused ones too), credentials redacted."""
        return self.state.store.requests(provider)

    def reset(self) -> None:
        """Forget messages, requests and posts; fault settings stay and their sequences restart."""
        self.state.reset()

    def set_faults(self, provider: str, faults: FaultConfig | Mapping[str, Any] | None) -> None:
        """Replace one provider's fault settings; None turns its faults off."""
        self.state.set_faults(check_provider(provider), faults)

    def faults(self, provider: str) -> FaultConfig | None:
        return self.state.faults.get(check_provider(provider))

    def set_metrics(self, tweet_id: str | int, **public_metrics: int) -> dict[str, int]:
        """Set a post's public metrics (like_count=3, ...), as X's lookup will report them."""
        return self.state.store.set_metrics(str(tweet_id), public_metrics)

    def set_opted_out(self, numbers: Iterable[str]) -> None:
        """Replace the numbers Twilio refuses with error 21610."""
        self.state.twilio.set_opted_out(numbers)


def serve(
    host: str = "127.0.0.1",
    port: int = 8025,
    faults: FaultsInput | None = None,
    opted_out: Iterable[str] = (),
) -> None:
    """Serve the sandbox in the foreground until interrupted (Ctrl-C), for `clarion sandbox`."""
    state = SandboxState(faults, opted_out)
    server = uvicorn.Server(_config(state, host, port, quiet=False))
    try:
        server.run()
    finally:
        state.stopping.set()
