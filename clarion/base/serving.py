"""Serving an ASGI app from a background thread of this process (tests, demos, `clarion run --sandbox`)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any, Literal

import uvicorn

START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0


class BackgroundServer:
    """uvicorn on 127.0.0.1 in a daemon thread; `port=0` picks a free port. A context manager."""

    def __init__(
        self,
        app: Any,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        lifespan: Literal["on", "off"] = "on",
        name: str = "server",
        **uvicorn_options: Any,
    ) -> None:
        self.app = app
        self.host = host
        self.lifespan = lifespan
        self.name = name
        self.options = uvicorn_options  # e.g. http="h11", loop="asyncio"
        self._requested_port = port
        self._port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"the {self.name} is not running")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> BackgroundServer:
        if self._thread is not None:
            raise RuntimeError(f"the {self.name} is already running")
        # IPPROTO_TCP explicitly: asyncio turns Nagle off only on sockets whose proto says TCP, and without
        # that every response waits ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._requested_port))
        except OSError:
            sock.close()
            raise
        self._socket, self._port = sock, sock.getsockname()[1]
        options: dict[str, Any] = {
            "lifespan": self.lifespan,
            "access_log": False,
            "log_config": None,  # leave the host program's logging alone
            "log_level": "warning",
            "timeout_graceful_shutdown": 2,
            **self.options,
        }
        config = uvicorn.Config(self.app, **options)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"{self.name}-{self._port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the {self.name} did not start on {self.host}:{self._port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        server, thread, sock = self._server, self._thread, self._socket
        self._server = self._thread = self._socket = None
        self._port = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(STOP_TIMEOUT)
            if thread.is_alive() and server is not None:
                server.force_exit = True
                thread.join(STOP_TIMEOUT)
        if sock is not None:
            sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
