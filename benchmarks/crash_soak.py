"""kill -9 at random points of a 20,000-contact, three-channel run, each followed by a resume: duplicates and
silent omissions, counted (both must be zero). The long version of tests/flows/test_crash_resume.py.

    .venv/bin/python benchmarks/crash_soak.py                       # 10 trials, 20,000 contacts
    .venv/bin/python benchmarks/crash_soak.py --trials 3 --contacts 5000 --faults 0.1

Each trial starts `clarion run` in its own process group against a `prefect server` and the provider
sandbox, kills the whole group with SIGKILL once the sandbox has received a random number of messages,
then resumes with `--run-id` (a second kill can be asked for with --double). It then checks, against the
sandbox's own record of what arrived: nobody got a channel twice; every contact with an address is sent,
skipped with a reason, or listed uncertain (what was in flight at the kill); every send the ledger calls
sent really arrived. --faults adds that share of 5xx answers and timeouts to every provider.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))
from make_contacts import generate  # noqa: E402

from clarion.ledger import Ledger, SendState  # noqa: E402
from clarion.sandbox import FaultConfig, Sandbox  # noqa: E402
from clarion.sandbox.devstack import prefect_server  # noqa: E402
from tests.flows.conftest import CAMPAIGN  # noqa: E402

PROVIDER_CHANNEL = {"sendgrid": "email", "twilio": "sms", "x": "x"}


def write_campaign(folder: Path, contacts: int) -> Path:
    rows = generate("debate-night", contacts, seed=7)
    with (folder / "contacts.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    path = folder / "campaign.yaml"
    path.write_text(CAMPAIGN.replace("name: flow-test", "name: crash-soak"))
    return path


def start(path: Path, run_id: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "clarion", "run", str(path), "--run-id", run_id, "--json"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
            start_new_session=True,
        )


def kill_after(proc: subprocess.Popen[bytes], sandbox: Sandbox, target: int) -> int:
    deadline = time.monotonic() + 300
    while len(sandbox.messages()) < target and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return len(sandbox.messages())


def check(ledger: Ledger, run_id: str, sandbox: Sandbox) -> dict[str, int]:
    messages = sandbox.messages()
    duplicates = 0
    for provider in ("sendgrid", "twilio"):
        counts = Counter(m["to"] for m in messages if m["provider"] == provider)
        duplicates += sum(n - 1 for n in counts.values() if n > 1)
    duplicates += max(0, sum(1 for m in messages if m["provider"] == "x") - 2)
    rows = list(ledger.sends(run_id))
    states = Counter(r.state for r in rows)
    arrived = {(PROVIDER_CHANNEL[m["provider"]], m["provider_id"]) for m in messages}
    phantom = sum(1 for r in rows if r.state is SendState.SENT and (r.channel, r.provider_id) not in arrived)
    # silent omission: a send still planned or in flight after a completed resume, or skipped without reason
    silent = states[SendState.PLANNED] + states[SendState.IN_FLIGHT]
    silent += sum(1 for r in rows if r.state is SendState.SKIPPED and not r.reason)
    return {
        "messages": len(messages),
        "duplicates": duplicates,
        "silent": silent,
        "phantom": phantom,
        "sent": states[SendState.SENT],
        "uncertain": states[SendState.UNCERTAIN],
        "skipped": states[SendState.SKIPPED],
        "failed": states[SendState.FAILED],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--faults", type=float, default=0.0, help="share of provider calls failing (5xx, timeouts)"
    )
    parser.add_argument("--double", action="store_true", help="kill the first resume too, then resume again")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="clarion-crash-"))
    path = write_campaign(root, args.contacts)
    rng = random.Random(args.seed)
    totals: Counter[str] = Counter()
    with Sandbox(port=0) as sandbox, prefect_server(root / "prefect", log=root / "prefect.log") as api:
        env = {
            **os.environ,
            "PREFECT_API_URL": api,
            "PREFECT_LOGGING_LEVEL": "CRITICAL",
            "CLARION_HOME": str(root / "home"),
            "CLARION_SECRET_KEY": "crash-soak-signing-key-0123456789abcdef",
            "CLARION_HTTP_TIMEOUT": "2",
            **sandbox.environment(),
        }
        os.environ.update({k: env[k] for k in ("CLARION_HOME", "CLARION_SECRET_KEY")})
        ledger = Ledger(f"sqlite:///{root / 'home' / 'clarion.db'}")
        print(f"{args.trials} trials, {args.contacts:,} contacts, 3 channels, faults {args.faults:.0%}")
        for trial in range(args.trials):
            sandbox.reset()
            sandbox.set_opted_out([])
            for i, provider in enumerate(("sendgrid", "twilio", "x")):
                faults = None
                if args.faults:
                    share = args.faults
                    faults = FaultConfig(
                        failure_rate=share * 0.7, timeout_rate=share * 0.3, stall_seconds=3, seed=i
                    )
                sandbox.set_faults(provider, faults)
            run_id = f"crash-soak-{trial}"
            log = root / f"{run_id}.log"
            started = time.monotonic()
            killed_at = [kill_after(start(path, run_id, env, log), sandbox, rng.randint(200, args.contacts))]
            if args.double:
                killed_at.append(
                    kill_after(start(path, run_id, env, log), sandbox, killed_at[0] + rng.randint(100, 3000))
                )
            resumed = start(path, run_id, env, log)
            if resumed.wait(timeout=900) != 0:
                raise SystemExit(f"trial {trial}: the resume failed; see {log}")
            figures = check(ledger, run_id, sandbox)
            totals.update(figures)
            print(
                f"trial {trial}: killed at {', '.join(f'{k:,}' for k in killed_at)} messages; "
                f"{figures['messages']:,} messages in all; sent {figures['sent']:,}, "
                f"uncertain {figures['uncertain']:,}, skipped {figures['skipped']:,}, "
                f"failed {figures['failed']:,}; "
                f"duplicates {figures['duplicates']}, silent omissions {figures['silent']}, "
                f"sent-but-never-arrived {figures['phantom']} ({time.monotonic() - started:.0f} s)"
            )
    print(
        f"TOTAL over {args.trials} trials: duplicates {totals['duplicates']}, silent omissions "
        f"{totals['silent']}, sent-but-never-arrived {totals['phantom']}, uncertain {totals['uncertain']:,} "
        f"(in flight at a kill: listed, not resent)"
    )
    if totals["duplicates"] or totals["silent"] or totals["phantom"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
