"""Campaigns run as an ops team runs them: a real `prefect server` and a `clarion worker` serving a folder
of campaigns, each a child process, as in production. The tests talk to them only as a user would: with
`clarion trigger`, `clarion approve|reject` from another shell, and by reading the ledger and the sandbox.

One stack serves the whole module (a server and a worker take ~20 s to start); each campaign has its own
name and wording, so the tests read only their own messages at the shared sandbox.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from clarion.engine.schedule import LAUNCHED
from clarion.ledger import Ledger, RunStatus
from clarion.sandbox import Sandbox
from clarion.sandbox.devstack import clarion_worker, prefect_server
from tests.conftest import POSTGRES_URL, TEST_SECRET
from tests.flows.conftest import CAMPAIGN, write_audience

pytestmark = pytest.mark.slow
CLARION = str(Path(sys.executable).parent / "clarion")
AUDIENCE = 20


def _campaign(name: str, tag: str, extra: str) -> str:
    text = CAMPAIGN.replace("name: flow-test", f"name: {name}", 1)
    # "TAG::" marks this campaign's messages (":" is in no token, message id or UTM parameter)
    text = text.replace("Chip in now.", f"{tag}:: chip in now.")
    text = text.replace("Join the supporters.", f"{tag}:: join us.")
    return text + extra


CAMPAIGNS = {
    "ops-event": ("EVT", "schedule: {on_event: ops.go}\n"),
    "ops-steps": (
        "STP",
        "schedule: {on_event: ops.steps}\n"
        "steps:\n"
        "  - {name: post, channels: [x]}\n"
        "  - {name: mail, after: 4s, channels: [email]}\n"
        "  - {name: text, after: 15s, channels: [sms]}\n",
    ),
    "ops-approve": (
        "APR",
        "schedule: {on_event: ops.approve}\napproval: {required: true, approvers: [ana], timeout: 3m}\n",
    ),
    "ops-reject": (
        "REJ",
        "schedule: {on_event: ops.reject}\napproval: {required: true, approvers: [ana], timeout: 3m}\n",
    ),
    "ops-expire": (
        "EXP",
        "schedule: {on_event: ops.expire}\napproval: {required: true, approvers: [ana], timeout: 10s}\n",
    ),
    "ops-rollout": (
        "ROL",
        "schedule: {on_event: ops.rollout}\n"
        "rollout: {test_share: 0.5, wait: 5s, metric: click_rate, fallback: baseline}\n",
    ),
    "ops-cron": ("CRN", "schedule: {cron: '* * * * *', timezone: UTC}\n"),
}


@dataclass
class Stack:
    api_url: str
    env: dict[str, str]  # what a shell of this ops team has: the server, the ledger, the signing key
    sandbox: Sandbox

    def clarion(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`clarion ARGS` from another shell."""
        return subprocess.run(
            [CLARION, *args], env=self.env, capture_output=True, text=True, timeout=120, check=False
        )

    def trigger(self, event: str, key: str) -> str:
        """Emit `event` once under `key`; returns the run id the campaign's launch takes from it."""
        done = self.clarion("trigger", event, "--key", key, "--payload", '{"debate": "first"}')
        assert done.returncode == 0, done.stderr
        return uuid.uuid5(uuid.NAMESPACE_URL, f"clarion:{event}:{key}").hex[:16]

    def messages(self, tag: str, provider: str | None = None) -> list[dict[str, Any]]:
        """This campaign's messages: those whose text carries its tag."""
        marker = f"{tag}::"
        return [
            m
            for m in self.sandbox.messages(provider)
            if any(marker in (m.get(part) or "") for part in ("text", "subject", "html"))
        ]

    def flow_runs(self, deployment: str, state: str | None = None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"deployments": {"name": {"any_": [deployment]}}, "limit": 100}
        if state is not None:
            query["flow_runs"] = {"state": {"type": {"any_": [state]}}}
        found = httpx.post(f"{self.api_url}/flow_runs/filter", json=query, timeout=10)
        found.raise_for_status()
        return list(found.json())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, sandbox: Sandbox) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("ops")
    folder = root / "campaigns"
    for name, (tag, extra) in CAMPAIGNS.items():
        (folder / name).mkdir(parents=True)
        write_audience(folder / name, AUDIENCE)
        (folder / name / "campaign.yaml").write_text(_campaign(name, tag, extra))
    env = {
        "CLARION_HOME": str(root / "clarion-home"),
        "CLARION_SECRET_KEY": TEST_SECRET,
        "CLARION_HTTP_TIMEOUT": "2",
        "CLARION_SLEEP_WITHIN": "0",  # every wait between steps is a scheduled run of the deployment
        "CLARION_APPROVAL_POLL": "1",
        **sandbox.environment(),
    }
    with (
        _server_database() as database_url,
        prefect_server(root / "prefect", database_url=database_url, log=root / "server.log") as api_url,
        clarion_worker([folder], api_url, env, log=root / "worker.log", expect=len(CAMPAIGNS)),
    ):
        shell = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CLARION_"))},
            **env,
            "PREFECT_API_URL": api_url,
        }
        yield Stack(api_url, shell, sandbox)


@contextlib.contextmanager
def _server_database() -> Iterator[str | None]:
    """A fresh PostgreSQL database for the Prefect server when the test server is reachable (as in
    production); otherwise None, and the Prefect server keeps its SQLite default."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import DBAPIError

    engine = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    name = f"clarion_prefect_{uuid.uuid4().hex[:10]}"
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except DBAPIError:
        engine.dispose()
        yield None
        return
    try:
        yield POSTGRES_URL.set(drivername="postgresql+asyncpg", database=name).render_as_string(
            hide_password=False
        )
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture(autouse=True)
def _same_ledger(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """This test process reads the ledger the worker's runs write."""
    monkeypatch.setenv("CLARION_HOME", stack.env["CLARION_HOME"])


def _wait_for(what: str, predicate: Callable[[], Any], timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _status(run_id: str) -> str | None:
    run = Ledger.open().get_run(run_id)
    return None if run is None else str(run.status)


def _finished(run_id: str, timeout: float = 90.0) -> str:
    return str(
        _wait_for(
            f"run {run_id} to finish",
            lambda: (s := _status(run_id)) and RunStatus(s).finished and s,
            timeout,
        )
    )


def _sent_once_per_contact(messages: list[dict[str, Any]]) -> None:
    counts = Counter((m.get("to"), m.get("text")) for m in messages if m.get("to"))
    assert counts and max(counts.values()) == 1, counts.most_common(3)


def test_an_event_launches_the_campaign_once_however_often_it_arrives(stack: Stack) -> None:
    key = stack.trigger("ops.go", "debate-1")
    run_id = f"ops-event-evt-{key}"
    assert _finished(run_id) == "completed"
    first = len(stack.messages("EVT"))
    assert {p for p in ("x", "sendgrid", "twilio") if stack.messages("EVT", p)} == {"x", "sendgrid", "twilio"}

    stack.trigger("ops.go", "debate-1")  # the same event again (a retried webhook, a double click)
    time.sleep(8)  # time for the automation to start a second run, if it were going to
    _wait_for(
        "every run of the deployment to end",
        lambda: all(
            r["state_type"] in ("COMPLETED", "FAILED", "CANCELLED") for r in stack.flow_runs("ops-event")
        ),
    )
    assert len(stack.messages("EVT")) == first
    _sent_once_per_contact(stack.messages("EVT", "sendgrid"))
    assert [r.id for r in Ledger.open().list_runs() if r.campaign == "ops-event"] == [run_id]

    other = stack.trigger("ops.go", "debate-2")  # a different event is a new launch
    assert _finished(f"ops-event-evt-{other}") == "completed"
    assert len(stack.messages("EVT")) == 2 * first


def test_three_steps_wait_in_prefect_not_in_a_process(stack: Stack) -> None:
    run_id = f"ops-steps-evt-{stack.trigger('ops.steps', 'night-1')}"
    assert _finished(run_id, timeout=120) == "completed"
    launched = datetime.fromisoformat(Ledger.open().decisions(run_id)[LAUNCHED])

    def first(provider: str) -> timedelta:
        return (
            min(datetime.fromisoformat(m["received_at"]) for m in stack.messages("STP", provider)) - launched
        )

    assert first("x") < timedelta(seconds=4)
    assert first("sendgrid") >= timedelta(seconds=4)
    assert first("twilio") >= timedelta(seconds=15)
    _sent_once_per_contact(stack.messages("STP", "sendgrid"))
    _sent_once_per_contact(stack.messages("STP", "twilio"))
    # a wait ends the flow run and schedules the next one of the same deployment (one per wait, unless a
    # continuation starts so late that the next step is due too): several flow runs, one name
    runs = _wait_for(
        "the last flow run to end",
        lambda: (
            (runs := stack.flow_runs("ops-steps"))
            and all(r["state_type"] == "COMPLETED" for r in runs)
            and runs
        ),
        timeout=30,
    )
    assert len(runs) >= 2
    assert {r["name"] for r in runs} == {run_id}
    tags = {t for r in runs for t in r["tags"]}  # what the UI filters by
    assert {"step:post", "step:mail", "step:text", "channel:x", "channel:email", "channel:sms"} <= tags


def _paused(stack: Stack, deployment: str, run_id: str) -> bool:
    return any(r["name"] == run_id and r["state_type"] == "PAUSED" for r in stack.flow_runs(deployment))


def test_approval_from_another_shell_by_a_named_approver(stack: Stack) -> None:
    run_id = f"ops-approve-evt-{stack.trigger('ops.approve', 'night-1')}"
    _wait_for("the run to wait for approval", lambda: _paused(stack, "ops-approve", run_id))
    assert _status(run_id) == "awaiting_approval"
    assert not stack.messages("APR"), "sent before approval"

    refused = stack.clarion("approve", run_id, "--as", "bob")
    assert refused.returncode == 1
    assert "'bob' is not one of this campaign's approvers (ana)" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert _paused(stack, "ops-approve", run_id)

    done = stack.clarion("approve", run_id, "--as", "ana")
    assert done.returncode == 0, done.stderr
    assert f"run {run_id} approved by ana" in done.stdout
    assert _finished(run_id) == "completed"
    assert {p for p in ("x", "sendgrid", "twilio") if stack.messages("APR", p)} == {"x", "sendgrid", "twilio"}
    assert Ledger.open().decisions(run_id)["approval"]["by"] == "ana"

    again = stack.clarion("approve", run_id, "--as", "ana")
    assert again.returncode == 1 and "no launch of run" in again.stderr


def test_a_rejected_run_sends_nothing_and_keeps_the_reason(stack: Stack) -> None:
    run_id = f"ops-reject-evt-{stack.trigger('ops.reject', 'night-1')}"
    _wait_for("the run to wait for approval", lambda: _paused(stack, "ops-reject", run_id))
    no_reason = stack.clarion("reject", run_id, "--as", "ana")
    assert no_reason.returncode == 1 and "--reason" in no_reason.stderr
    done = stack.clarion("reject", run_id, "--as", "ana", "--reason", "wrong donation link")
    assert done.returncode == 0, done.stderr
    assert _finished(run_id) == "cancelled"
    run = Ledger.open().get_run(run_id)
    assert run is not None and "wrong donation link" in (run.error or "")
    time.sleep(2)
    assert not stack.messages("REJ")


def test_an_unanswered_approval_expires_and_sends_nothing(stack: Stack) -> None:
    run_id = f"ops-expire-evt-{stack.trigger('ops.expire', 'night-1')}"
    _wait_for("the run to wait for approval", lambda: _paused(stack, "ops-expire", run_id))
    assert _finished(run_id, timeout=60) == "expired"
    late = stack.clarion("approve", run_id, "--as", "ana")
    assert late.returncode == 1 and "Traceback" not in late.stderr
    time.sleep(2)
    assert not stack.messages("EXP")


def test_a_rollout_waits_in_prefect_then_sends_the_fallback_to_the_rest(stack: Stack) -> None:
    run_id = f"ops-rollout-evt-{stack.trigger('ops.rollout', 'night-1')}"
    child = f"{run_id}-rollout"
    assert _finished(run_id, timeout=120) == "completed"
    assert _finished(child, timeout=30) == "completed"
    decision = Ledger.open().decisions(run_id)["rollout"]
    assert decision["winner"] == "a" and decision["decided"] is False  # nobody clicked: nothing won
    test_cell = {(r.contact_id, r.variant) for r in Ledger.open().sends(run_id, "email", "sent")}
    rest = {(r.contact_id, r.variant) for r in Ledger.open().sends(child, "email", "sent")}
    assert {v for _, v in test_cell} == {"a", "b"} and {v for _, v in rest} == {"a"}
    assert not ({c for c, _ in test_cell} & {c for c, _ in rest})
    assert len(stack.messages("ROL", "sendgrid")) == len(test_cell) + len(rest)
    _sent_once_per_contact(stack.messages("ROL", "sendgrid"))
    assert len(stack.messages("ROL", "x")) == 2  # the posts went once, with the test; the rest is per contact


def test_a_work_pool_worker_runs_deployed_campaigns_and_an_at_launch_once(
    stack: Stack, tmp_path: Path
) -> None:
    """The documented path beyond one machine: `clarion deploy --pool`, `prefect worker start --pool`."""
    at = (datetime.now(UTC) + timedelta(seconds=30)).replace(microsecond=0)
    files = []
    for name, tag, extra in [
        ("pool-event", "PEV", "schedule: {on_event: pool.go}\n"),
        ("pool-at", "PAT", f"schedule: {{at: '{at.isoformat()}'}}\n"),
    ]:
        (tmp_path / name).mkdir()
        write_audience(tmp_path / name, AUDIENCE)
        files.append(tmp_path / name / "campaign.yaml")
        files[-1].write_text(_campaign(name, tag, extra))
    prefect = str(Path(sys.executable).parent / "prefect")
    created = subprocess.run(
        [prefect, "work-pool", "create", "ops-pool", "--type", "process"],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    deployed = stack.clarion("deploy", *map(str, files), "--pool", "ops-pool")
    assert deployed.returncode == 0, deployed.stderr
    assert f"once, at {at.isoformat()}" in deployed.stdout
    again = stack.clarion("deploy", str(files[1]), "--pool", "ops-pool")  # the same `at:` deployed twice
    assert again.returncode == 0, again.stderr

    log = (tmp_path / "pool-worker.log").open("ab")
    worker = subprocess.Popen(
        [prefect, "worker", "start", "--pool", "ops-pool"],
        env={**stack.env, "PREFECT_WORKER_QUERY_SECONDS": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        run_id = f"pool-event-evt-{stack.trigger('pool.go', 'night-1')}"
        assert _finished(run_id, timeout=120) == "completed"
        assert {p for p in ("x", "sendgrid", "twilio") if stack.messages("PEV", p)} == {
            "x",
            "sendgrid",
            "twilio",
        }
        at_run = f"pool-at-{at.astimezone(UTC):%Y%m%dt%H%M%S}"
        assert _finished(at_run, timeout=150) == "completed"
        first = min(datetime.fromisoformat(m["received_at"]) for m in stack.messages("PAT"))
        assert first >= at
        _sent_once_per_contact(stack.messages("PAT", "sendgrid"))  # deployed twice, launched once
        assert len(stack.messages("PAT", "x")) == 2
    finally:
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()


def test_a_cron_schedule_launches_each_slot_once(stack: Stack) -> None:
    """Last in the module: by now the every-minute schedule has usually fired already."""

    def completed() -> list[str]:
        return [
            r.id
            for r in Ledger.open().list_runs()
            if r.campaign == "ops-cron" and r.status == RunStatus.COMPLETED
        ]

    runs = _wait_for("a scheduled launch to complete", completed, timeout=150)
    slot = runs[0].removeprefix("ops-cron-")
    moment = datetime.strptime(slot, "%Y%m%dt%H%M%S")
    assert moment.second == 0, "the run id names its minute slot"
    ids = {r.id for r in Ledger.open().list_runs() if r.campaign == "ops-cron"}
    assert len(stack.messages("CRN", "sendgrid")) <= len(ids) * AUDIENCE
    per_address = Counter(m["to"] for m in stack.messages("CRN", "sendgrid"))
    assert max(per_address.values()) <= len(ids)  # at most once per slot
    names = _wait_for(
        "its flow run to end",
        lambda: (
            (names := [r["name"] for r in stack.flow_runs("ops-cron", "COMPLETED")])
            and runs[0] in names
            and names
        ),
        timeout=30,
    )
    assert len(names) == len(set(names)), "a slot ran twice"
