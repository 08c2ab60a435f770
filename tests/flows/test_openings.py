"""A launch of files that validated before sends its openings while the rest of its contacts are planned:
the first messages go at once however big the audience, nobody gets anything twice, a stop or a kill -9
in the middle of planning is resumed, and files not validated before send nothing before every contact
was checked: by the launch, or by the send helper asked to validate them while it plans (the one `clarion
run` starts early, or the first a flow run a worker started starts itself)."""

from __future__ import annotations

import csv
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from clarion.base.errors import CampaignInvalid
from clarion.base.settings import ClarionSettings
from clarion.campaign.loader import load_campaign
from clarion.engine.coordination import LocalCoordination
from clarion.flows.launch import launch
from clarion.ledger import Ledger, SendState
from clarion.messages.validated import recall, validate_once
from clarion.sandbox import Sandbox
from tests.flows.conftest import CAMPAIGN

pytestmark = pytest.mark.usefixtures("prefect_server")

#: The flow tests' campaign without its texts (the sandbox takes emails by the thousand a second, texts by
#: the hundred): a post on X and an email to everyone with an address.
EMAIL_AND_POST = CAMPAIGN.split("  sms:")[0]


def write_emails(folder: Path, count: int) -> Path:
    """`count` contacts, each with an address (quicker to write than the generated audiences)."""
    with (folder / "contacts.csv").open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["id", "email", "first_name"])
        writer.writerows([f"c{i:07d}", f"supporter.{i}@example.org", "Sam"] for i in range(count))
    path = folder / "campaign.yaml"
    path.write_text(EMAIL_AND_POST)
    return path


def timing(ledger: Ledger, run_id: str) -> tuple[float, float]:
    """(when the run's first message was settled as sent, when its last send was planned), epoch s."""
    rows = list(ledger.sends(run_id))
    planned = max(r.planned_at.timestamp() for r in rows)
    sent = min(r.settled_at.timestamp() for r in rows if r.state is SendState.SENT and r.settled_at)
    return sent, planned


def assert_each_once(ledger: Ledger, providers: Sandbox, run_id: str, contacts: int) -> None:
    """Every contact got the email once or is listed uncertain, by the sandbox and by the ledger."""
    emails = [m for m in providers.messages("sendgrid") if m["custom_args"]["clarion_run"] == run_id]
    counts = Counter(m["to"] for m in emails)
    assert max(counts.values()) == 1, "someone got the email twice"
    states = Counter(r.state for r in ledger.sends(run_id) if r.channel == "email")
    assert states[SendState.PLANNED] == states[SendState.IN_FLIGHT] == states[SendState.FAILED] == 0, states
    reachable = sum(n for state, n in states.items() if state is not SendState.SKIPPED)
    assert states[SendState.SENT] + states[SendState.UNCERTAIN] == reachable
    assert states[SendState.SENT] <= len(counts) <= reachable, (len(counts), states)  # uncertain: maybe
    assert reachable > 0.9 * contacts, states  # all but the holdout


def test_openings_go_while_planning_only_once_the_files_validated(tmp_path: Path, providers: Sandbox) -> None:
    path = write_emails(tmp_path, 20_000)
    ledger = Ledger(ClarionSettings().ledger_url())
    cold = launch(str(path), "openings-cold")  # the first run of these files checks every message first
    warm = launch(str(path), "openings-warm")  # the same files again: validated
    assert cold.status == warm.status == "completed"
    cold_sent, cold_planned = timing(ledger, "openings-cold")
    warm_sent, warm_planned = timing(ledger, "openings-warm")
    assert cold_sent > cold_planned, "a message went before every contact was checked"
    assert warm_sent < warm_planned, "the openings waited for the last contact to be planned"
    for run_id in ("openings-cold", "openings-warm"):
        assert_each_once(ledger, providers, run_id, 20_000)
    assert len(providers.messages("x")) == 4  # both variants' posts, once per run
    assert {(r.channel, r.variant, r.sent) for r in cold.results} == {
        (r.channel, r.variant, r.sent) for r in warm.results
    }


def test_a_stop_while_planning_after_the_openings_is_resumed(tmp_path: Path, providers: Sandbox) -> None:
    path = write_emails(tmp_path, 60_000)
    ledger = Ledger(ClarionSettings().ledger_url())
    validate_once(load_campaign(path))  # as `clarion validate` does
    coordination = LocalCoordination()
    outcome: list[object] = []
    thread = threading.Thread(
        target=lambda: outcome.append(launch(str(path), "openings-stop", coordination=coordination))
    )
    thread.start()
    deadline = time.monotonic() + 60
    while not providers.messages("sendgrid") and time.monotonic() < deadline:
        time.sleep(0.005)
    coordination.request_stop("test: stop while the rest is planned")
    thread.join(timeout=120)
    assert outcome and getattr(outcome[0], "status", None) == "interrupted"
    planned = len(list(ledger.sends("openings-stop")))

    resumed = launch(str(path), "openings-stop")
    assert resumed.status == "completed"
    assert 0 < planned < len(list(ledger.sends("openings-stop"))), "the stop came after planning ended"
    assert_each_once(ledger, providers, "openings-stop", 60_000)
    assert not any(r.state is SendState.UNCERTAIN for r in ledger.sends("openings-stop"))
    assert len(providers.messages("x")) == 2, "a post went again on the resume"


@pytest.mark.slow
def test_kill_9_while_planning_after_the_openings(
    tmp_path: Path, providers: Sandbox, prefect_server: str
) -> None:
    path = write_emails(tmp_path, 60_000)
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "PREFECT_LOGGING_LEVEL": "CRITICAL"}
    clarion = [sys.executable, "-m", "clarion"]
    subprocess.run([*clarion, "validate", str(path)], env=env, check=True, capture_output=True)
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*clarion, "run", str(path), "--run-id", "openings-kill", "--json"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
            start_new_session=True,  # its own process group: kill -9 takes its send helper with it
        )
    deadline = time.monotonic() + 120
    while not providers.messages("sendgrid") and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    ledger = Ledger(ClarionSettings().ledger_url())
    planned = len(list(ledger.sends("openings-kill")))

    resumed = subprocess.run(
        [*clarion, "run", str(path), "--run-id", "openings-kill", "--json"],
        env=env,
        capture_output=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    assert 0 < planned < len(list(ledger.sends("openings-kill"))), f"killed after planning: {log.read_text()}"
    assert_each_once(ledger, providers, "openings-kill", 60_000)
    assert len(providers.messages("x")) <= 2, "a post went again on the resume"


def _clarion_run(path: Path, run_id: str, prefect_server: str) -> subprocess.CompletedProcess[bytes]:
    """`clarion run` as a user runs it (its helper started early, asked to validate the files), with one
    send helper whatever the machine's cores."""
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_server,
        "PREFECT_LOGGING_LEVEL": "CRITICAL",
        "CLARION_SEND_HELPERS": "1",
    }
    command = [sys.executable, "-m", "clarion", "run", str(path), "--run-id", run_id, "--json"]
    return subprocess.run(command, env=env, capture_output=True, timeout=600)


@pytest.mark.slow
def test_new_files_open_while_planning_once_the_helper_found_them_valid(
    tmp_path: Path, providers: Sandbox, prefect_server: str
) -> None:
    # big enough that the helper's validation (which started while the launch imported) ends well before
    # the launch's planning, on a loaded machine too
    path = write_emails(tmp_path, 100_000)
    assert recall(load_campaign(path)) is None

    done = _clarion_run(path, "openings-checked", prefect_server)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    ledger = Ledger(ClarionSettings().ledger_url())
    sent, planned = timing(ledger, "openings-checked")
    assert sent < planned, "the openings of new files waited for the last contact to be planned"
    assert_each_once(ledger, providers, "openings-checked", 100_000)
    assert len(providers.messages("x")) == 2
    assert recall(load_campaign(path)) is not None, "the helper's validation was not remembered"


@pytest.mark.slow
def test_new_files_with_a_bad_message_far_down_send_nothing(
    tmp_path: Path, providers: Sandbox, prefect_server: str
) -> None:
    path = write_emails(tmp_path, 60_000)
    path.write_text(
        path.read_text().replace(
            'subject: "{{ variant.headline }}"', 'subject: "{{ contact.first_name }}, {{ variant.headline }}"'
        )
    )
    contacts = tmp_path / "contacts.csv"
    with contacts.open("a", newline="") as fh:  # the last contact's name puts a header in the subject
        csv.writer(fh, lineterminator="\n").writerow(
            ["c-last", "last@example.org", "Sam\nBcc: all@example.org"]
        )

    done = _clarion_run(path, "openings-invalid", prefect_server)
    assert done.returncode != 0
    stderr = done.stderr.decode()
    assert "subject spans several lines" in stderr and "c-last (line 60002)" in stderr, stderr[-2000:]
    assert "Traceback" not in stderr
    assert providers.messages("sendgrid") == [] and providers.messages("x") == [], "a message went"
    ledger = Ledger(ClarionSettings().ledger_url())
    assert not any(r.state is SendState.SENT for r in ledger.sends("openings-invalid"))
    assert recall(load_campaign(path)) is None


@pytest.mark.slow
def test_a_flow_run_a_worker_started_has_its_helper_validate_new_files(
    tmp_path: Path, providers: Sandbox, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The launch flow as a worker runs it (no `clarion run` before it, so no helper started early): the
    helper the flow starts validates new files while the launch plans, as `clarion run`'s does (whether its
    answer comes before planning ends is the machine's: benchmarks, not a test). Files with a bad message
    far down send nothing."""
    monkeypatch.setenv("CLARION_SEND_HELPERS", "1")
    caplog.set_level(logging.INFO, logger="clarion.engine")
    path = write_emails(tmp_path, 30_000)
    assert recall(load_campaign(path)) is None

    outcome = launch(str(path), "openings-worker")
    assert outcome.status == "completed"
    assert "send helper helper-1 validates the campaign's files first" in caplog.text
    ledger = Ledger(ClarionSettings().ledger_url())
    assert_each_once(ledger, providers, "openings-worker", 30_000)
    assert recall(load_campaign(path)) is not None, "the files' validation was not remembered"

    (tmp_path / "bad").mkdir()
    bad = write_emails(tmp_path / "bad", 30_000)
    bad.write_text(
        bad.read_text().replace(
            'subject: "{{ variant.headline }}"', 'subject: "{{ contact.first_name }}, {{ variant.headline }}"'
        )
    )
    with (bad.parent / "contacts.csv").open("a", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerow(
            ["c-last", "last@example.org", "Sam\nBcc: all@example.org"]
        )
    before = len(providers.messages("sendgrid")), len(providers.messages("x"))
    with pytest.raises(CampaignInvalid, match="subject spans several lines"):
        launch(str(bad), "openings-worker-bad")
    assert (len(providers.messages("sendgrid")), len(providers.messages("x"))) == before, "a message went"
    assert not any(r.state is SendState.SENT for r in ledger.sends("openings-worker-bad"))
    assert recall(load_campaign(bad)) is None
