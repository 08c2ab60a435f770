"""`clarion` imports a command's module only when the command runs or its help is asked for
(clarion/cli/lazy.py): `clarion trigger` is the first second of an event's way to its first message, and
it used to spend most of it importing the ledger, the campaign model and every command.

Each check runs in a fresh interpreter, where sys.modules shows what a command really loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

#: What `clarion trigger` must not load: the ledger and its database layer, the campaign model and
#: templates, Prefect, the flows and the engine; nor what only sending and serving need (the phone
#: numbering plans, the rate limiter), though it reads every provider's settings: not their adapters,
#: rules or SDKs (`clarion.settings` entry points).
ADAPTERS = tuple(
    f"clarion.channels.{p}.{m}"
    for p in ("sendgrid", "twilio", "x", "bluesky", "mastodon", "linkedin", "threads")
    for m in ("adapter", "rules")
)
HEAVY = (
    *ADAPTERS,
    "sendgrid",
    "twilio",
    "tweepy",
    "requests",
    "phonenumbers",
    "limits",
    "sqlalchemy",
    "alembic",
    "jinja2",
    "prefect",
    "clarion.ledger",
    "clarion.campaign.model",
    "clarion.messages",
    "clarion.engine",
    "clarion.flows",
    "clarion.tracking",
)

RUN = """
import json, sys
from clarion.cli.main import app
try:
    app(sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)))
"""


def _loaded(*args: str, env: dict[str, str] | None = None) -> set[str]:
    """The modules loaded once `clarion ARGS` has run, in a fresh interpreter."""
    import os

    done = subprocess.run(
        [sys.executable, "-c", RUN, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


class _Events(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, Any]]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def prefect_api() -> Iterator[tuple[str, list[tuple[str, Any]]]]:
    """A stand-in for the Prefect server's REST events endpoint: what `clarion trigger` posted."""
    received: list[tuple[str, Any]] = []
    handler = type("Events", (_Events,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api", received
    finally:
        server.shutdown()
        server.server_close()


def test_trigger_posts_one_event_without_loading_the_rest_of_clarion(
    prefect_api: tuple[str, list[tuple[str, Any]]],
) -> None:
    url, received = prefect_api
    modules = _loaded("trigger", "debate.ended", "--key", "debate-1", env={"PREFECT_API_URL": url})
    assert [path for path, _ in received] == ["/api/events"]  # one request, to the REST endpoint
    [[event]] = [body for _, body in received]
    assert event["event"] == "debate.ended"
    assert event["resource"] == {"prefect.resource.id": "clarion.trigger.debate.ended"}
    assert _heavy(modules) == []
    assert not {"clarion.cli.send", "clarion.cli.campaign", "clarion.cli.webhooks"} & modules


def test_a_commands_help_loads_only_its_module() -> None:
    modules = _loaded("trigger", "--help")
    assert "clarion.cli.ops" in modules
    assert _heavy(modules) == []
    others = {f"clarion.cli.{m}" for m in ("campaign", "send", "results", "suppress", "webhooks", "email")}
    assert not others & modules


def test_the_full_help_lists_every_command_in_order() -> None:
    from typer.testing import CliRunner

    from clarion.cli.main import COMMANDS, app

    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["--help"])
    assert result.exit_code == 0
    listed = [
        line.strip("│ ").split()[0]
        for line in result.output.split("Commands")[1].splitlines()
        if line.startswith("│ ") and line[2] != " "
    ]
    assert listed == list(COMMANDS)


LAUNCH = """
import json, sys
import clarion.flows.launch, clarion.engine.helper_process
from clarion.ledger import Ledger
Ledger.open(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""


def test_a_launch_and_its_send_helper_load_no_statistics_and_no_alembic_on_a_current_ledger(
    tmp_path: Any,
) -> None:
    """Both import Clarion before a run's first message: the statistics (scipy, numpy) wait for the report
    or a bandit's wave, and Alembic for a ledger that needs migrating; together a quarter of a second of
    each process's start-up on this machine."""
    from clarion.ledger import Ledger

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    Ledger.open(url).close()  # created here: a user's ledger after its first run
    done = subprocess.run(
        [sys.executable, "-c", LAUNCH, url], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    modules = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert not sorted(m for m in modules if m.split(".")[0] in {"scipy", "numpy", "alembic"})
