"""Event emitted to first message at the provider: a campaign deployed with `schedule: {on_event: ...}`,
served by `clarion worker` on a running `prefect server`, all on this machine.

    .venv/bin/python benchmarks/trigger_latency.py              # 5 events
    .venv/bin/python benchmarks/trigger_latency.py --events 10 --contacts 1000
    .venv/bin/python benchmarks/trigger_latency.py --events 3 --contacts 100000 --no-sms   # a big audience

For each event (`clarion trigger` with a fresh key, from its own process, as an operator would): the time
from the start of the emit to the first message the sandbox receives, split where Prefect lets us see:
the automation creating the flow run, the worker starting it (a subprocess of `clarion worker`), and the
flow reaching the provider (loading the campaign, planning the run, checking credentials, sending).
`clarion worker` validates the campaign when it starts, so each launch sends its openings while it plans
the rest of the audience; --no-sms leaves the texts out (the sandbox takes them by the hundred a second, so
a big audience's texts would keep each event's run going for minutes).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))
from make_contacts import generate  # noqa: E402

from clarion.sandbox import Sandbox  # noqa: E402
from clarion.sandbox.devstack import clarion_worker, prefect_server  # noqa: E402

CLARION = str(Path(sys.executable).parent / "clarion")
CAMPAIGN = """\
name: trigger-latency
cta:
  url: https://donate.example.org/now
tracking:
  base_url: https://go.example.org
schedule:
  on_event: debate.ended
audience:
  contacts: contacts.csv
experiment:
  holdout: 0.05
  variants:
    - id: a
      vars: {headline: "The debate is over. Chip in now."}
    - id: b
      vars: {headline: "Stand with us tonight."}
channels:
  x:
    provider: x
    body: "{{ variant.headline }} {{ link }}"
  email:
    provider: sendgrid
    from: "Team <team@example.org>"
    subject: "{{ variant.headline }}"
    postal_address: "Team, PO Box 1, Springfield"
    body: >-
      <p>{{ variant.headline }} <a href='{{ link }}'>Give</a></p>
      <p><a href='{{ unsubscribe_url }}'>Unsubscribe</a> {{ postal_address }}</p>
  sms:
    provider: twilio
    from: "+15005550006"
    quiet_hours: null
    body: "{{ variant.headline }} {{ link }} Reply STOP to opt out"
"""


def _write(folder: Path, contacts: int, sms: bool = True) -> None:
    import csv

    folder.mkdir(parents=True)
    rows = generate("debate-night", contacts, seed=3)
    with (folder / "contacts.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    (folder / "campaign.yaml").write_text(CAMPAIGN if sms else CAMPAIGN.split("  sms:")[0])


def _flow_run(api: str, after: datetime) -> dict[str, Any] | None:
    found = httpx.post(
        f"{api}/flow_runs/filter",
        json={
            "flow_runs": {"start_time": {"after_": after.isoformat()}},
            "sort": "START_TIME_DESC",
            "limit": 1,
        },
        timeout=10,
    ).json()
    return found[0] if found else None


def _wait_finished(api: str, emitted: datetime, root: Path, timeout: float = 900.0) -> None:
    """Until the flow run the event started is in a final state (its last send settled), so that the next
    event's first message is its own (a run that plans the rest of a big audience after its openings is
    quiet at the sandbox for seconds: quiet is no sign of its end)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = _flow_run(api, emitted)
        if run is not None and run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return
        time.sleep(0.5)
    raise SystemExit(f"the flow run of the event at {emitted} did not end in {timeout:.0f} s; see {root}")


def _seconds(a: str | None, b: datetime) -> float:
    return (datetime.fromisoformat(a) - b).total_seconds() if a else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=5)
    parser.add_argument("--contacts", type=int, default=200)
    parser.add_argument("--no-sms", action="store_true", help="leave the campaign's texts out")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="clarion-trigger-"))
    _write(root / "campaigns", args.contacts, sms=not args.no_sms)
    rows = []
    with Sandbox(port=0) as sandbox, prefect_server(root / "prefect") as api:
        env = {
            "CLARION_HOME": str(root / "home"),
            "CLARION_SECRET_KEY": "benchmark-signing-key-0123456789abcdef",
            **sandbox.environment(),
        }
        with clarion_worker([root / "campaigns"], api, env, log=root / "worker.log"):
            shell = {**env, "PREFECT_API_URL": api, "PATH": str(Path(sys.executable).parent)}
            for i in range(args.events):
                before = len(sandbox.messages())
                emitted = datetime.now(UTC)
                t0 = time.monotonic()
                subprocess.run(
                    [CLARION, "trigger", "debate.ended", "--key", f"e{i}"],
                    env=shell,
                    check=True,
                    capture_output=True,
                )
                emit_cli = time.monotonic() - t0
                while len(sandbox.messages()) == before:
                    time.sleep(0.01)
                    if time.monotonic() - t0 > 120:
                        raise SystemExit(f"no message 120 s after event {i}; see {root / 'worker.log'}")
                first = min(datetime.fromisoformat(m["received_at"]) for m in sandbox.messages()[before:])
                run = _flow_run(api, emitted)
                created = _seconds(run["created"], emitted) if run else float("nan")
                started = _seconds(run["start_time"], emitted) if run else float("nan")
                total = (first - emitted).total_seconds()
                rows.append((total, emit_cli, created, started, total - emit_cli))
                print(
                    f"event {i}: first message {total:.2f} s after `clarion trigger` began, "
                    f"{total - emit_cli:.2f} s after it returned (the event was in); "
                    f"flow run created +{created:.2f} s, started +{started:.2f} s",
                    flush=True,
                )
                _wait_finished(api, emitted, root)  # the next event must not meet this run's sends
    totals = [r[0] for r in rows]
    print(
        f"\nevent -> first message over {len(rows)} events: median {statistics.median(totals):.2f} s, "
        f"min {min(totals):.2f} s, max {max(totals):.2f} s (goal <= 2 s)"
    )
    after = [r[4] for r in rows]
    print(
        f"event in the server -> first message: median {statistics.median(after):.2f} s, "
        f"min {min(after):.2f} s, max {max(after):.2f} s"
    )
    cli, created, started = (statistics.median(r[k] for r in rows) for k in (1, 2, 3))
    print(
        f"medians: `clarion trigger` {cli:.2f} s; flow run created +{created:.2f} s, "
        f"started +{started:.2f} s after `clarion trigger` began"
    )


if __name__ == "__main__":
    main()
