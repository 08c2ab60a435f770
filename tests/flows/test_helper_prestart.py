"""`clarion run` starts its local send helper before it imports Prefect (clarion/engine/spawn.py): the
helper imports while the launch does, then waits for the launch's configuration. The configuration carries
the launch's environment as it is when the flow starts, so a helper started before `--sandbox` pointed the
providers at the sandbox still sends there; a helper never used (the launch failed first) leaves quietly
when `clarion run` exits, without a message and without outliving it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.flows.conftest import CAMPAIGN, write_campaign

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]

#: Email only, paced at 100/s in batches of 25: a wave of several seconds, so the helper takes its share
EMAIL_ONLY = CAMPAIGN.split("  x:\n")[0] + (
    "  email:\n"
    "    provider: sendgrid\n"
    '    from: "Team <team@example.org>"\n'
    '    subject: "{{ variant.headline }}"\n'
    '    postal_address: "Team, PO Box 1, Springfield"\n'
    "    body: \"<p>{{ variant.headline }} <a href='{{ link }}'>Give</a></p>"
    "<p><a href='{{ unsubscribe_url }}'>Unsubscribe</a> {{ postal_address }}</p>\"\n"
    "    batch_size: 25\n"
    "    pacing: {messages_per_second: 100}\n"
)


def _env(prefect_server: str, mark: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SENDGRID_", "TWILIO_", "X_", "CLARION_SENDGRID", "CLARION_TWILIO", "CLARION_X"))
    }
    env.update(
        PREFECT_API_URL=prefect_server,
        PREFECT_LOGGING_LEVEL="CRITICAL",
        CLARION_SEND_HELPERS="1",
        CLARION_TEST_MARK=mark,  # finds the helpers this test's `clarion run` started, wherever they are
    )
    return env


def _marked(mark: str) -> list[int]:
    """Processes whose environment holds `mark`: the `clarion run` of this test and its helpers."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if f"CLARION_TEST_MARK={mark}".encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_helper_started_before_the_sandbox_sends_to_the_sandbox(
    tmp_path: Path, prefect_server: str
) -> None:
    path = write_campaign(tmp_path, 500, EMAIL_ONLY)
    mark = uuid.uuid4().hex
    done = subprocess.run(
        [sys.executable, "-m", "clarion", "run", str(path), "--sandbox", "--json"],
        env=_env(prefect_server, mark),
        capture_output=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stderr.decode()[-3000:]
    outcome = json.loads(done.stdout)
    assert outcome["status"] == "completed", outcome["errors"]
    assert outcome.get("helpers", {}).get("helper-1", 0) >= 1, "the helper took no batch"
    sent = sum(r["sent"] for r in outcome["results"] if r["channel"] == "email")
    failed = sum(r["failed"] + r["uncertain"] for r in outcome["results"] if r["channel"] == "email")
    assert sent > 400 and failed == 0
    assert b"send helper" not in done.stderr, done.stderr.decode()[-3000:]


def test_a_helper_never_used_leaves_quietly_with_clarion_run(tmp_path: Path, prefect_server: str) -> None:
    path = write_campaign(tmp_path, 500, EMAIL_ONLY)
    mark = uuid.uuid4().hex
    done = subprocess.run(  # no SendGrid key: the launch stops before it configures its helper
        [sys.executable, "-m", "clarion", "run", str(path)],
        env=_env(prefect_server, mark),
        capture_output=True,
        timeout=300,
    )

    assert done.returncode != 0
    assert b"SENDGRID_API_KEY" in done.stderr, done.stderr.decode()[-3000:]
    assert b"send helper" not in done.stderr, done.stderr.decode()[-3000:]
    assert b"Traceback" not in done.stderr
    deadline = time.monotonic() + 10
    while _marked(mark) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _marked(mark), "a helper outlived its clarion run"
