"""The production shape on one machine: `prefect server` on PostgreSQL with Redis messaging, a process
work pool, and N workers that share only network services (as separate machines would).

Each worker has its own PREFECT_HOME and CLARION_HOME; they share the ledger (PostgreSQL), Redis (the
launches' shared coordination) and the Prefect server. The send deployment (`clarion-send`, a module
entrypoint of the installed package) is registered on the pool, so a launch with CLARION_SEND_POOL sends its
shards there. `clarion devstack up` runs this in the foreground; tests use `stack()`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from clarion.base.errors import ClarionError
from clarion.flows.deploy import register_send_deployment
from clarion.sandbox.devstack import BIN, clean_environment, prefect_server

POOL = "clarion"
PREFECT_REDIS_DB = 5  # Prefect's own keys carry no prefix: they get a Redis database of their own


@dataclass
class Stack:
    """A running stack: where the server answers, the pool, the workers, and the environment to use it."""

    api_url: str
    pool: str
    env: dict[str, str]  # what a shell (or a launch) needs: PREFECT_API_URL, CLARION_* shared settings
    root: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def add_worker(self, index: int) -> subprocess.Popen[bytes]:
        """Start one more worker of the pool, with homes of its own."""
        home = self.root / f"worker-{index}"
        (home / "prefect").mkdir(parents=True, exist_ok=True)
        log = self.root / f"worker-{index}.log"
        env = {
            **clean_environment(os.environ),
            **self.env,
            "PREFECT_HOME": str(home / "prefect"),
            "CLARION_HOME": str(home / "clarion"),
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "5",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
        with log.open("ab") as out:  # the worker keeps its own copy of the descriptor
            process = subprocess.Popen(
                [
                    str(BIN / "prefect"),
                    "worker",
                    "start",
                    "--pool",
                    self.pool,
                    "--name",
                    f"w{index}",
                    "--limit",
                    "1",
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killing it takes its flow runs with it
            )
        self.workers.append(process)
        self.logs.append(log)
        return process

    def kill_worker(self, index: int) -> None:
        """kill -9 of a worker and every process it started (a machine gone): its flow runs too, which
        Prefect's process worker starts each in a session of its own (outside the worker's group)."""
        process = self.workers[index]
        for pid in process_tree(process.pid):  # the whole tree first: a child whose parent died moves
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(10)

    def wait_online(self, count: int, timeout: float = 120.0) -> None:
        """Until `count` workers of the pool are online."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                found = httpx.post(
                    f"{self.api_url}/work_pools/{self.pool}/workers/filter", json={}, timeout=5
                )
                online = [w for w in found.json() if w.get("status") == "ONLINE"]
                if len(online) >= count:
                    return
            time.sleep(0.5)
        raise ClarionError(
            f"only some of {count} workers of pool {self.pool!r} came online in {timeout:.0f} s"
        )


def children_by_parent() -> dict[int, list[int]]:
    """Each running process's children, by parent pid, from one walk of /proc (empty where there is none)."""
    children: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue  # gone meanwhile
                children.setdefault(parent, []).append(int(entry.name))
    return children


def process_tree(root: int, children: dict[int, list[int]] | None = None) -> list[int]:
    """`root` and every process descended from it (`children`: a walk of /proc already made)."""
    children = children_by_parent() if children is None else children
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def prefect_database(database_url: str, name: str) -> str:
    """A database for the Prefect server beside the ledger's (created, with pg_trgm), as asyncpg's URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(database_url).set(drivername="postgresql+psycopg", query={})
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if not conn.execute(text("select 1 from pg_database where datname = :n"), {"n": name}).first():
            conn.execute(text(f'create database "{name}"'))
    engine.dispose()
    prefect = create_engine(url.set(database=name), isolation_level="AUTOCOMMIT")
    with prefect.connect() as conn:
        conn.execute(text("create extension if not exists pg_trgm"))
    prefect.dispose()
    return url.set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)


def redis_db(redis_url: str, db: int) -> str:
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(redis_url)._replace(path=f"/{db}"))


@contextlib.contextmanager
def stack(
    root: Path,
    *,
    workers: int,
    database_url: str,
    redis_url: str,
    env: Mapping[str, str] | None = None,
    pool: str = POOL,
) -> Iterator[Stack]:
    """Server, pool, send deployment and `workers` workers, stopped on exit. `env` is what every worker and
    launch shares besides the ledger and Redis (provider credentials, CLARION_SECRET_KEY, ...)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ClarionError(f"--root {root}: cannot make the folder ({exc.strerror}); name a folder") from None
    database = prefect_database(database_url, f"clarion_prefect_{secrets.token_hex(3)}")
    shared = {
        **dict(env or {}),
        "CLARION_DATABASE_URL": database_url,
        "CLARION_REDIS_URL": redis_url,
        "CLARION_SEND_POOL": pool,
    }
    with prefect_server(
        root / "server",
        database_url=database,
        redis_url=redis_db(redis_url, PREFECT_REDIS_DB),
        log=root / "server.log",
    ) as api_url:
        shared["PREFECT_API_URL"] = api_url
        created = httpx.post(f"{api_url}/work_pools/", json={"name": pool, "type": "process"}, timeout=30)
        if created.status_code not in (201, 409):
            raise ClarionError(
                f"cannot create work pool {pool!r}: HTTP {created.status_code} {created.text[:200]}"
            )
        register_send_deployment(pool, api_url)
        running = Stack(api_url, pool, shared, root)
        try:
            for index in range(workers):
                running.add_worker(index)
            running.wait_online(workers)
            yield running
        finally:
            for process in running.workers:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
            for process in running.workers:
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(5)


__all__ = ["POOL", "Stack", "children_by_parent", "prefect_database", "process_tree", "stack"]
