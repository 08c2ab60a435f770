"""`clarion run` interrupted as people and service managers do it: Ctrl-C (SIGINT) while texts wait for
their recipients' local hours, SIGTERM to the whole process group (what `timeout` does, taking Prefect's
temporary server down with it) in the middle of a send. A real `clarion run` process each time, on
Prefect's ephemeral server as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from clarion.base.settings import ClarionSettings
from clarion.ledger import Ledger, SendState
from clarion.sandbox import Sandbox
from tests.conftest import REPO

STARTUP = 240.0  # seconds a `clarion run` may take to start sending on a loaded machine (Prefect's server)


def _zone_at(hours: range) -> str:
    """A fixed-offset zone whose local hour now falls in `hours`."""
    now = datetime.now(UTC)
    for offset in range(-12, 15):
        name = f"Etc/GMT{'+' if offset <= 0 else '-'}{abs(offset)}"  # Etc/GMT+5 is UTC-5
        if (now.hour + offset) % 24 in hours:
            return name
    raise AssertionError("no zone found")


def _campaign(folder: Path, contacts: int, pacing: float | None, quiet: bool) -> Path:
    awake, asleep = _zone_at(range(11, 18)), _zone_at(range(1, 6))
    rows = ["id,phone,first_name,timezone,sms_consent"]
    for i in range(contacts):
        zone = asleep if quiet and i % 2 else awake
        rows.append(f"c-{i:03d},+1415555{2600 + i:04d},Ann,{zone},yes")
    (folder / "contacts.csv").write_text("\n".join(rows) + "\n")
    lines = [
        "name: interrupt-test",
        "cta: {url: 'https://donate.example.org/x'}",
        "audience: {contacts: contacts.csv}",
        "channels:",
        "  sms:",
        "    provider: twilio",
        "    from: '+15005550006'",
        "    body: '{{ contact.first_name }}, chip in {{ link }} Reply STOP to opt out'",
    ]
    if not quiet:
        lines.append("    quiet_hours: null")
    if pacing:
        lines.append(f"    pacing: {{messages_per_second: {pacing}}}")
    path = folder / "campaign.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # Prefect's ephemeral server
    env.setdefault("PREFECT_HOME", str(REPO / ".clarion/prefect"))
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    return {**env, **(extra or {})}


def _start(
    args: list[str], env: dict[str, str], log: Path, *, out: int = subprocess.DEVNULL
) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "clarion", *args],
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,  # its own process group, as in a terminal or under `timeout`
        )


def _wait_for(what: str, check: object, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP
    while not check():  # type: ignore[operator]
        assert proc.poll() is None, f"clarion run ended before {what}: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {what} after {STARTUP:.0f} s: {log.read_text()[-3000:]}"
        time.sleep(0.2)


def _states(ledger: Ledger, run_id: str) -> Counter[SendState]:
    try:
        return Counter(row.state for row in ledger.sends(run_id))
    except Exception:
        return Counter()


def _stopped(proc: subprocess.Popen[bytes], sent_at: float) -> tuple[int, float]:
    code = proc.wait(timeout=60)
    return code, time.monotonic() - sent_at


def test_ctrl_c_while_texts_wait_for_local_hours(tmp_path: Path) -> None:
    path = _campaign(tmp_path, 20, pacing=None, quiet=True)
    run_id = "interrupt-test-ctrl-c"
    ledger = Ledger(ClarionSettings().ledger_url())
    log = tmp_path / "run.log"
    proc = _start(["run", str(path), "--sandbox", "--run-id", run_id], _env(), log)
    try:
        _wait_for("10 sent and 10 deferred", lambda: _states(ledger, run_id)[SendState.SENT] == 10, proc, log)
        time.sleep(0.5)  # the flow moves on to waiting for the deferred texts

        status = subprocess.run(
            [sys.executable, "-m", "clarion", "status", run_id, "--json"],
            env=_env(),
            capture_output=True,
            text=True,
            check=True,
        )
        data = json.loads(status.stdout)
        assert data["channels"]["sms"]["deferred"] == 10
        [group] = data["waiting"]["deferred"]["sms"]
        assert group["count"] == 10 and group["local"].startswith("08:00 Etc/GMT")
        readable = subprocess.run(
            [sys.executable, "-m", "clarion", "status", run_id], env=_env(), capture_output=True, text=True
        ).stdout
        assert "sms: deferred 10: 10 until" in readable and "UTC (08:00 Etc/GMT" in readable

        proc.send_signal(signal.SIGINT)
        code, took = _stopped(proc, time.monotonic())
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    stderr = log.read_text()
    assert code == 130, stderr[-2000:]
    assert took < 45, f"took {took:.1f} s to stop"  # settle + at most 15 s for the flow; a loaded CI
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last == (
        f"run {run_id} interrupted (SIGINT received); resume with: clarion run {path} --run-id {run_id}"
    )
    record = ledger.get_run(run_id)
    assert record is not None and str(record.status) == "interrupted"
    states = _states(ledger, run_id)
    assert (
        states[SendState.SENT] == 10 and states[SendState.PLANNED] == 10 and not states[SendState.IN_FLIGHT]
    )
    runs = subprocess.run(
        [sys.executable, "-m", "clarion", "runs", "--json"], env=_env(), capture_output=True, text=True
    )
    assert {"run_id": run_id, "status": "interrupted"}.items() <= json.loads(runs.stdout)[0].items()


def test_sigterm_to_the_process_group_mid_send_then_resume_sends_each_once(
    tmp_path: Path, providers: Sandbox
) -> None:
    path = _campaign(tmp_path, 30, pacing=3, quiet=False)
    run_id = "interrupt-test-group"
    ledger = Ledger(ClarionSettings().ledger_url())
    log = tmp_path / "run.log"
    proc = _start(["run", str(path), "--run-id", run_id], _env(), log)
    try:
        _wait_for("5 texts at the sandbox", lambda: len(providers.messages()) >= 5, proc, log)
        os.killpg(proc.pid, signal.SIGTERM)  # every process of the group: Prefect's server too
        code, took = _stopped(proc, time.monotonic())
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    stderr = log.read_text()
    assert code == 143, stderr[-2000:]
    assert took < 45, f"took {took:.1f} s to stop"  # settle + at most 15 s for the flow; a loaded CI
    assert "Traceback" not in stderr and "ConnectError" not in stderr
    assert stderr.strip().splitlines()[-1].endswith(f"resume with: clarion run {path} --run-id {run_id}")
    states = _states(ledger, run_id)
    assert not states[SendState.IN_FLIGHT], "what was in flight was settled"
    assert 5 <= states[SendState.SENT] < 30 and states[SendState.PLANNED] == 30 - states[SendState.SENT]
    assert str(ledger.get_run(run_id).status) == "interrupted"  # type: ignore[union-attr]

    resume_log = tmp_path / "resume.log"
    resumed = _start(
        ["run", str(path), "--run-id", run_id, "--json"], _env(), resume_log, out=subprocess.PIPE
    )
    out, _ = resumed.communicate(timeout=STARTUP)
    assert resumed.returncode == 0, resume_log.read_text()[-3000:]
    assert json.loads(out)["status"] == "completed"
    texts = Counter(m["to"] for m in providers.messages() if m["provider"] == "twilio")
    assert len(texts) == 30 and max(texts.values()) == 1, "someone was texted twice, or not at all"
