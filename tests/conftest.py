"""Shared fixtures: an isolated Clarion home per test, and a builder of small campaigns on disk."""

from __future__ import annotations

import contextlib
import os
import socket
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from clarion.ledger.database import resolve_url

REPO = Path(__file__).resolve().parent.parent
POSTGRES_URL = resolve_url(
    os.environ.get("CLARION_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
)
REDIS_URL = os.environ.get("CLARION_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TEST_SECRET = "test-signing-key-0123456789abcdef0123456789"

#: Seconds the slowest test files took (2026-12-05, the whole suite on two workers, `--junitxml`). `make
#: test` hands files to its workers in collection order (`--no-loadscope-reorder`), and these come first,
#: longest first: a long file started last kept one worker busy for a minute or more while the other had
#: nothing left. Files not listed (each under 20 s) follow in their usual order. The order changes how
#: long the suite takes, never what a test finds.
SLOW_FILES = {
    "tests/flows/test_operations.py": 210,
    "tests/flows/test_secrets.py": 181,
    "tests/flows/test_helpers.py": 172,  # with the helpers' rest
    "tests/flows/test_sequence.py": 155,  # once a rollout decided early no longer waited out max_wait
    "tests/flows/test_shards.py": 146,
    "tests/test_badinput.py": 101,
    "tests/flows/test_crash_resume.py": 69,
    "tests/flows/test_interrupt.py": 69,
    "tests/flows/test_openings.py": 68,  # with the helper validating new files
    "tests/flows/test_launch.py": 67,
    "tests/flows/test_helper_rows.py": 66,
    "tests/flows/test_faults.py": 60,
    "tests/flows/test_thompson_flow.py": 56,
    "tests/channels/test_contract.py": 39,
    "tests/test_fuzz_campaign.py": 36,
    "tests/ledger/test_ledger_concurrency.py": 34,
    "tests/report/test_report.py": 33,
    "tests/test_skeleton.py": 32,
    "tests/flows/test_reconcile_e2e.py": 25,
    "tests/test_bandit.py": 25,
    "tests/test_stats.py": 24,
    "tests/test_quiet_errors.py": 23,
    "tests/flows/test_social_e2e.py": 21,
    "tests/flows/test_engagement_e2e.py": 21,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slowest files first (`SLOW_FILES`); within a file, and among the others, the usual order."""
    items.sort(key=lambda item: -SLOW_FILES.get(item.nodeid.split("::", 1)[0], 0))


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test reads or writes the developer's .clarion, or reaches a real provider."""
    home = tmp_path_factory.mktemp("clarion-home")
    monkeypatch.setenv("CLARION_HOME", str(home))
    monkeypatch.setenv("CLARION_SECRET_KEY", TEST_SECRET)
    for var in (
        "CLARION_DATABASE_URL",
        "CLARION_REDIS_URL",
        "CLARION_SEND_POOL",
        "CLARION_SHARDS",
        "CLARION_SEND_HELPERS",
    ):
        monkeypatch.delenv(var, raising=False)
    for var in ("TWILIO_EDGE", "TWILIO_REGION"):
        monkeypatch.delenv(var, raising=False)
    yield


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """A Prefect server for the whole session (the test harness), shared by the flow and console tests;
    yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield str(PREFECT_API_URL.value())


CONTACTS = """\
id,email,phone,first_name,timezone,persona,sms_consent
c-001,ada@example.org,+14155552671,Ada,America/Los_Angeles,cfo,yes
c-002,ben@example.org,+12025550123,Ben,America/New_York,it-director,yes
c-003,,+12125550142,Chloé,America/New_York,cfo,yes
c-004,dana@example.com,,Dana,America/Chicago,ops-manager,no
"""

EMAIL_BODY = (
    "<p>{{ contact.first_name }}, {{ variant.headline }} <a href='{{ link }}'>Give</a></p>"
    "<p><a href='{{ unsubscribe_url }}'>Unsubscribe</a> {{ postal_address }}</p>"
)

CAMPAIGN = """\
name: test-appeal
cta:
  url: https://donate.example.org/appeal
tracking:
  base_url: https://go.example.org
audience:
  contacts: contacts.csv
experiment:
  holdout: 0
  variants:
    - id: a
      vars: {headline: "Chip in now."}
    - id: b
      vars: {headline: "Join 12,000 supporters."}
channels:
  x:
    provider: x
    body: "{{ variant.headline }} {{ link }}"
  email:
    provider: sendgrid
    from: "Team <team@example.org>"
    subject: "{{ variant.headline }}"
    postal_address: "Team Example, PO Box 1, Springfield"
    body: "{{ EMAIL_BODY }}"
  sms:
    provider: twilio
    from: "+15005550006"
    quiet_hours: null  # runs at any hour; quiet hours are tested on their own
    body: "{{ contact.first_name }}, {{ variant.headline }} {{ link }} Reply STOP to opt out"
""".replace("{{ EMAIL_BODY }}", EMAIL_BODY)

#: The same campaign without a tracking service: links go straight to the CTA page (previews only: an email
#: needs the tracking service for its unsubscribe link, so this does not validate).
UNTRACKED = CAMPAIGN.replace("tracking:\n  base_url: https://go.example.org\n", "", 1)


class CampaignDir:
    """A folder holding one campaign file, its contacts and any template files."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, name: str, text: str, *, dedent: bool = True) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text) if dedent else text, encoding="utf-8")
        return path

    def campaign(self, text: str = CAMPAIGN, contacts: str | None = CONTACTS) -> Path:
        if contacts is not None:
            self.write("contacts.csv", contacts)
        return self.write("campaign.yaml", text)


@pytest.fixture
def campaign_dir(tmp_path: Path) -> CampaignDir:
    return CampaignDir(tmp_path)


def clear_sandbox(sandbox: Any) -> None:
    """Take off what a test set on a shared sandbox: its faults and the numbers that replied STOP."""
    sandbox.set_opted_out([])
    for provider in sandbox.state.store.providers:
        sandbox.set_faults(provider, None)


def point_adapters_at(sandbox: Any, monkeypatch: pytest.MonkeyPatch, timeout: float) -> Any:
    """Empty the sandbox, clear its faults, and send every adapter there with dummy credentials."""
    sandbox.reset()
    clear_sandbox(sandbox)  # what an earlier test set
    for key, value in sandbox.environment().items():
        monkeypatch.setenv(key, value)
    for name in sandbox.cleared_variables():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLARION_HTTP_TIMEOUT", str(timeout))
    return sandbox


# -- network services: PostgreSQL and Redis, required in CI (CLARION_REQUIRE_POSTGRES=1) -------------


def _unreachable(what: str, detail: str, variable: str) -> None:
    reason = f"{what} is not reachable ({detail}); set {variable}, or CLARION_REQUIRE_POSTGRES=1 to fail"
    if os.environ.get("CLARION_REQUIRE_POSTGRES") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Engine]:
    """An engine on the test server (for creating and dropping schemas), or a skip saying why not."""
    url = POSTGRES_URL
    engine = create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        engine.dispose()
        reason = (
            f"PostgreSQL at {url.render_as_string(hide_password=True)} is not reachable "
            f"({str(exc.orig).splitlines()[0]}); "
            "set CLARION_TEST_POSTGRES_URL to a server, or CLARION_REQUIRE_POSTGRES=1 to make this a failure"
        )
        if os.environ.get("CLARION_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_url(postgres_server: Engine) -> Iterator[str]:
    """A URL whose connections work in a fresh schema (search_path set through libpq options)."""
    schema = f"clarion_test_{uuid.uuid4().hex[:12]}"
    with postgres_server.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = POSTGRES_URL.update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with postgres_server.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis (CLARION_TEST_REDIS_URL, default the local one), or a skip saying why not."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        _unreachable(f"Redis at {REDIS_URL}", str(exc), "CLARION_TEST_REDIS_URL")
    return REDIS_URL


class Forwarder:
    """A TCP relay to Redis that the test cuts: every connection through it closed, no new one taken (the
    network between a worker and its Redis gone); `cut_at`: cut when these bytes (a command's name, a key)
    go through for the `after` + 1th time, instead of forwarding them."""

    def __init__(self, url: str, cut_at: bytes | None = None, after: int = 0, port: int = 0) -> None:
        parts = urlsplit(url)
        self._trigger, self._left = cut_at, after
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self._listener = socket.create_server(("127.0.0.1", port))  # `port`: one cut before, back
        self.url = f"redis://127.0.0.1:{self._listener.getsockname()[1]}{parts.path or '/0'}"
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # cut
            upstream = socket.create_connection(self._upstream)
            self._sockets += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if self._trigger is not None and self._trigger in data:
                    if self._left == 0:
                        self.cut()
                        return
                    self._left -= 1
                target.sendall(data)
        except OSError:
            pass
        for end in (source, target):
            end.close()

    def cut(self) -> None:
        for end in [self._listener, *self._sockets]:  # a shutdown wakes the accept a close would not
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()
