"""kill -9 in the middle of a 20,000-contact three-channel run, then resume: nobody gets a channel twice,
and every contact is sent or listed as uncertain. (benchmarks/crash_soak.py runs many more trials.)"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from clarion.base.settings import ClarionSettings
from clarion.ledger import Ledger, SendState
from clarion.sandbox import Sandbox
from tests.flows.conftest import write_campaign

TRIALS = int(os.environ.get("CLARION_CRASH_TRIALS", "1"))
CONTACTS = 20_000


def _clarion(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "clarion", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
            start_new_session=True,  # its own process group: kill -9 takes every child with it
        )


@pytest.mark.slow
def test_kill_9_then_resume(tmp_path: Path, providers: Sandbox, prefect_server: str) -> None:
    path = write_campaign(tmp_path, CONTACTS)
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "PREFECT_LOGGING_LEVEL": "CRITICAL"}
    rng = random.Random(2026)
    ledger = Ledger(ClarionSettings().ledger_url())
    for trial in range(TRIALS):
        providers.reset()
        run_id = f"crash-{trial}"
        proc = _clarion(["run", str(path), "--run-id", run_id, "--json"], env, tmp_path / f"{run_id}.log")
        target = rng.randint(500, 12_000)
        deadline = time.monotonic() + 240
        while len(providers.messages()) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at = len(providers.messages())
        log = tmp_path / f"{run_id}-resume.log"
        resumed = _clarion(["run", str(path), "--run-id", run_id, "--json"], env, log)
        assert resumed.wait(timeout=600) == 0, log.read_text()[-2000:]

        messages = providers.messages()
        for provider in ("sendgrid", "twilio"):
            counts = Counter(m["to"] for m in messages if m["provider"] == provider)
            assert counts and max(counts.values()) == 1, f"trial {trial}: {provider} sent someone twice"
        assert len([m for m in messages if m["provider"] == "x"]) <= 2

        rows = list(ledger.sends(run_id))
        states = Counter(r.state for r in rows)
        assert states[SendState.PLANNED] == states[SendState.IN_FLIGHT] == states[SendState.FAILED] == 0, (
            states
        )
        sent_ids = {(r.channel, r.provider_id) for r in rows if r.state is SendState.SENT}
        by_id = {
            (
                "email" if m["provider"] == "sendgrid" else "sms" if m["provider"] == "twilio" else "x",
                m["provider_id"],
            )
            for m in messages
        }
        assert sent_ids <= by_id, f"trial {trial}: the ledger says sent, the sandbox never got it"
        uncertain = states[SendState.UNCERTAIN]
        reachable = sum(1 for r in rows if r.state is not SendState.SKIPPED)
        assert states[SendState.SENT] + uncertain == reachable
        print(
            f"trial {trial}: killed after {killed_at} messages; {uncertain} uncertain; {len(messages)} in all"
        )
