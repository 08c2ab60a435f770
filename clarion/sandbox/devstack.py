"""A local Prefect server and a `clarion worker` as child processes, for tests, benchmarks and trying the
operations commands on one machine (what `prefect server start` and `clarion worker` do in production).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def prefect_server(
    home: Path,
    *,
    database_url: str | None = None,
    redis_url: str | None = None,
    timeout: float = 240.0,
    log: Path | None = None,
) -> Iterator[str]:
    """`prefect server start` on a free port with its own PREFECT_HOME; yields its API URL.

    `database_url` (postgresql+asyncpg://...) puts the server's own state on PostgreSQL, as Prefect
    advises beyond one user: on its SQLite default, bursts of events can hold the database locked
    for seconds. `redis_url` (a Redis database of its own: Prefect's keys carry no prefix) moves its
    messaging, cache, event ordering and lease storage to Redis (prefect-redis), as in Prefect's
    self-hosting guide for several servers and workers."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        **clean_environment(os.environ),
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    if database_url:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
    if redis_url:
        env.update(redis_messaging(redis_url))
    out = (log or home / "server.log").open("ab")
    process = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        _wait_healthy(url, process, timeout)
        yield url
    finally:
        _stop(process)
        out.close()


@contextlib.contextmanager
def clarion_worker(
    paths: list[Path],
    api_url: str,
    env: Mapping[str, str],
    *,
    log: Path,
    expect: int | None = None,
    ready_timeout: float = 120.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """`clarion worker PATHS...` against `api_url`, with `env` (ledger, credentials) added; ready once
    `expect` deployments (default: one per path) are registered."""
    full = {
        **clean_environment(os.environ),
        **env,
        "PREFECT_API_URL": api_url,
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    out = log.open("ab")
    process = subprocess.Popen(
        [str(BIN / "clarion"), "worker", *map(str, paths)], env=full, stdout=out, stderr=subprocess.STDOUT
    )
    try:
        _wait_served(api_url, process, expect or len(paths), ready_timeout, log)
        yield process
    finally:
        _stop(process)
        out.close()


def redis_messaging(redis_url: str) -> dict[str, str]:
    """The settings that put a Prefect server's messaging on Redis (prefect-redis)."""
    return {
        "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
        "PREFECT_REDIS_MESSAGING_URL": redis_url,
        "PREFECT_SERVER_DOCKET_URL": redis_url,
    }


def clean_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment minus any Prefect API/home this process was pointed at (tests' own server)."""
    return {k: v for k, v in environ.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME")}


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"prefect server at {url} not healthy after {timeout:.0f} s")


def _wait_served(url: str, process: subprocess.Popen[bytes], count: int, timeout: float, log: Path) -> None:
    """Until the worker has registered its deployments (it does so when it starts serving)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"clarion worker exited with {process.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            found = httpx.post(f"{url}/deployments/filter", json={"limit": 200}, timeout=5).json()
            if isinstance(found, list) and len(found) >= count:
                time.sleep(1.0)  # the runner starts polling right after registering
                return
        time.sleep(0.5)
    raise RuntimeError(f"clarion worker did not register {count} deployments in {timeout:.0f} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


__all__ = ["BIN", "clarion_worker", "clean_environment", "free_port", "prefect_server", "redis_messaging"]
