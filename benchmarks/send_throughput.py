"""Send throughput, memory and overhead: an email + SMS campaign to the provider sandbox.

    .venv/bin/python benchmarks/send_throughput.py                   # 10,000 and 100,000 contacts
    .venv/bin/python benchmarks/send_throughput.py --contacts 20000 --baseline

For each audience size: wall time of `clarion run` (validation, planning, sending), recipients per second
per channel over its sending window (first attempt to last settlement, from the ledger), and the peak RSS
of the clarion process. With --baseline, the same provider calls made by a plain loop over the SDKs
against the same sandbox, for Clarion's overhead. The sandbox runs in a separate process.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
from make_contacts import generate  # noqa: E402

CAMPAIGN = """\
name: throughput
cta:
  url: https://donate.example.org/bench
tracking:
  base_url: https://go.example.org
audience:
  contacts: contacts.csv
experiment:
  holdout: 0.02
  variants:
    - id: a
      vars: {headline: "The debate is over. Chip in $5 before midnight."}
    - id: b
      vars: {headline: "12,000 supporters chipped in tonight. Join them."}
channels:
  email:
    provider: sendgrid
    from: "Team Example <team@example.org>"
    subject: "{{ variant.headline }}"
    template: templates/email/appeal.html.j2
    text_template: templates/email/appeal.txt.j2
    postal_address: "Team Example, PO Box 20013, Washington, DC 20013"
  sms:
    provider: twilio
    from: "+15005550006"
    quiet_hours: null  # runs at any hour; quiet hours are tested on their own
    body: "{{ variant.headline }} {{ link }} Reply STOP to opt out"
"""
CREDENTIALS = {
    "SENDGRID_API_KEY": "SG.bench",
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_AUTH_TOKEN": "bench",
    "X_ACCESS_TOKEN": "bench",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sandbox() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "clarion", "sandbox", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(f"{url}/_sandbox/messages?limit=1", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("sandbox did not start")


def write_campaign(folder: Path, count: int) -> Path:
    rows = generate("debate-night", count, seed=11)
    with (folder / "contacts.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    path = folder / "campaign.yaml"
    path.write_text(CAMPAIGN)
    return path


def run_clarion(path: Path, env: dict[str, str]) -> tuple[float, int, dict[str, object]]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "clarion", "run", str(path), "--json"],
        env=env,
        capture_output=True,
        check=False,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode()[-3000:])
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak_kb, before), json.loads(proc.stdout)


def _ledger(env: dict[str, str]) -> Any:
    os.environ.update({k: v for k, v in env.items() if k.startswith("CLARION_")})
    from clarion.base.settings import ClarionSettings
    from clarion.ledger import Ledger

    return Ledger(ClarionSettings().ledger_url())


def request_counts(env: dict[str, str], run_id: str) -> dict[str, int]:
    """Provider requests Clarion made: one per distinct SendGrid message id, one per SMS."""
    from clarion.ledger import SendState

    ids: dict[str, set[str]] = defaultdict(set)
    counts: dict[str, int] = defaultdict(int)
    for row in _ledger(env).sends(run_id, state=SendState.SENT):
        ids[row.channel].add(row.provider_id or "")
        counts[row.channel] += 1
    return {"email": len(ids["email"]), "sms": counts["sms"]}


def send_window(env: dict[str, str], run_id: str) -> float:
    stamps = [
        t.timestamp()
        for row in _ledger(env).sends(run_id)
        for t in (row.attempted_at, row.settled_at)
        if t is not None
    ]
    return max(stamps) - min(stamps)


def windows(env: dict[str, str], run_id: str) -> dict[str, tuple[int, float]]:
    os.environ.update({k: v for k, v in env.items() if k.startswith("CLARION_")})
    from clarion.base.settings import ClarionSettings
    from clarion.ledger import Ledger, SendState

    ledger = Ledger(ClarionSettings().ledger_url())
    spans: dict[str, list[float]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    for row in ledger.sends(run_id, state=SendState.SENT):
        if row.attempted_at and row.settled_at:
            spans[row.channel].extend([row.attempted_at.timestamp(), row.settled_at.timestamp()])
            counts[row.channel] += 1
    return {ch: (counts[ch], max(ts) - min(ts)) for ch, ts in spans.items()}


def replay(sandbox: str) -> dict[str, tuple[int, float]]:
    """The provider calls Clarion just made (from the sandbox's request log), made again by a plain loop
    over the SDKs: no rendering, no ledger, no Prefect. Returns requests replayed and seconds, per channel."""
    from sendgrid import SendGridAPIClient
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    log = httpx.get(f"{sandbox}/_sandbox/requests", timeout=120).json()
    emails = [json.loads(r["body"]) for r in log if r["path"] == "/v3/mail/send" and r["status"] == 202]
    texts = [parse_qs(r["body"]) for r in log if r["path"].endswith("/Messages.json") and r["status"] == 201]
    httpx.delete(f"{sandbox}/_sandbox/messages")
    out = {}
    sg = SendGridAPIClient(api_key="SG.bench", host=sandbox)
    start = time.perf_counter()
    for payload in emails:
        sg.send(payload)
    out["email"] = (len(emails), time.perf_counter() - start)
    client = Client("AC" + "0" * 32, "bench", http_client=TwilioHttpClient(timeout=20))
    client.api.base_url = sandbox
    start = time.perf_counter()
    for form in texts:
        client.messages.create(to=form["To"][0], from_=form["From"][0], body=form["Body"][0])
    out["sms"] = (len(texts), time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--baseline", action="store_true", help="also time a plain SDK loop")
    args = parser.parse_args()
    sandbox, url = start_sandbox()
    try:
        for count in args.contacts:
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                path = write_campaign(folder, count)
                env = {
                    **os.environ,
                    **CREDENTIALS,
                    "CLARION_HOME": str(folder / "home"),
                    "CLARION_SENDGRID_URL": url,
                    "CLARION_TWILIO_URL": url,
                    "CLARION_X_URL": url,
                    "PREFECT_HOME": os.environ.get("PREFECT_HOME", str(ROOT / ".clarion" / "prefect")),
                    "PREFECT_LOGGING_LEVEL": "CRITICAL",
                }
                httpx.delete(f"{url}/_sandbox/messages")
                wall, peak_kb, result = run_clarion(path, env)
                spans = windows(env, str(result["run_id"]))
                print(
                    f"\n{count:,} contacts: clarion run took {wall:.1f} s, peak RSS {peak_kb / 1024:.0f} MB"
                )
                for channel, (sent, span) in sorted(spans.items()):
                    rate = sent / span if span else float("inf")
                    print(f"  {channel:6} {sent:8,} sent in {span:7.2f} s  = {rate:8,.0f} recipients/s")
                if args.baseline:
                    requests = request_counts(env, str(result["run_id"]))
                    plain = replay(url)
                    total = 0.0
                    for channel, (replayed, seconds) in plain.items():
                        if not replayed:
                            print(f"  {channel}: not in the sandbox's request log (it keeps 20,000)")
                            print("  run with --contacts 10000 for the overhead figure")
                            break
                        per = seconds / replayed
                        made = requests[channel]
                        total += per * made
                        print(
                            f"  plain SDK loop, {channel:5}: {replayed:,} of Clarion's {made:,} requests "
                            f"replayed, {per * 1000:.2f} ms each -> {per * made:.1f} s for all"
                        )
                    else:
                        window = send_window(env, str(result["run_id"]))
                        print(
                            f"  the same calls one after another: {total:.1f} s; Clarion's send phase, all "
                            f"channels at once: {window:.1f} s ({(window / total - 1) * 100:+.0f}%)"
                        )
    finally:
        sandbox.terminate()
        sandbox.wait()


if __name__ == "__main__":
    main()
