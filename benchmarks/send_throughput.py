"""Send throughput, memory and overhead: Clarion beside the hand-written SDK loop, and a mixed campaign.

    .venv/bin/python benchmarks/send_throughput.py                   # side by side, 100,000 emails
    .venv/bin/python benchmarks/send_throughput.py --side-by-side 100000 1000000
    .venv/bin/python benchmarks/send_throughput.py --collector       # also the collector's passes
    .venv/bin/python benchmarks/send_throughput.py --mixed 10000 100000 [--baseline]

Side by side (the default; ../shared/bench/README.md): one contacts file, two fast SendGrid stand-ins
(../shared/bench/sink.py), a `prefect server` already running (started here unless PREFECT_API_URL is set),
then in turn the hand-written loop (../shared/bench/baseline_sendgrid.py: the sendgrid SDK, 1,000
personalizations a request, per-recipient substitutions for the first name, a tracked link and an
unsubscribe link, RFC 8058 headers) and `clarion run` on a campaign that says the same (first name, tracked
link, unsubscribe link, postal address; the headers are Clarion's own). For each: wall time of the whole
process (interpreter start-up and imports included, and for Clarion validation and planning), emails/s,
the requests and distinct recipients the stand-in counted, and the process's peak RSS; then the ratio.

Mixed (--mixed): an email + SMS campaign to the provider sandbox: wall time of `clarion run`, recipients
per second per channel over its sending window (from the ledger), peak RSS; with --baseline, the same
provider calls replayed by a plain loop over the SDKs, for Clarion's overhead.

The machine is shared (2 cores, other jobs running): figures move by tens of percent between runs.
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


def email_bytes(sandbox: str) -> str:
    """What the email requests in the sandbox's request log (the last 20,000 requests) weigh: their bodies'
    bytes per recipient, what goes up the line to SendGrid for each email."""
    log = httpx.get(f"{sandbox}/_sandbox/requests", timeout=120).json()
    bodies = [r["body"] for r in log if r["path"] == "/v3/mail/send" and r["status"] == 202]
    recipients = sum(len(json.loads(body)["personalizations"]) for body in bodies)
    size = sum(len(body.encode()) for body in bodies)
    if not recipients:
        return "  no email request in the sandbox's request log"
    return (
        f"  email requests: {len(bodies):,} for {recipients:,} recipients, {size / recipients:,.0f} bytes of "
        "request body a recipient"
    )


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


def mixed(counts: list[int], baseline: bool) -> None:
    sandbox, url = start_sandbox()
    try:
        for count in counts:
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
                print(email_bytes(url))
                if baseline:
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


BENCH = ROOT.parent / "shared" / "bench"
SIDE_CAMPAIGN = """\
name: side-by-side
cta:
  url: https://donate.example.org/tonight
tracking:
  base_url: https://t.example.org
audience:
  contacts: contacts.csv
channels:
  email:
    provider: sendgrid
    from: "Example Committee <team@example.org>"
    subject: "Polls just closed. Chip in $5 tonight."
    postal_address: "Paid for by Example Committee, 100 Main St, Springfield, IL 62701."
    body: |
      <html><body><p>Hi {{ contact.first_name }},</p><p>Polls just closed. Chip in $5 tonight.</p>
      <p><a href="{{ link }}">Chip in now</a></p><p>{{ postal_address }}</p>
      <p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>
    text: |
      Hi {{ contact.first_name }}, chip in: {{ link }} {{ postal_address }}
      Unsubscribe: {{ unsubscribe_url }}
"""
FIRST_NAMES = ["Ada", "Alex", "Amara", "Ben", "Chen", "Dana", "Elena", "Farah", "Jose", "Kai", "Maya", "Noah"]


def write_contacts(path: Path, count: int) -> None:
    """id, email, first_name, last_name: streamed, so that a million rows cost no memory here."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["id", "email", "first_name", "last_name"])
        for i in range(1, count + 1):
            first = FIRST_NAMES[i % len(FIRST_NAMES)]
            writer.writerow([f"sup-{i:07d}", f"{first.lower()}.{i}@example.org", first, "Doe"])


def start_sink() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(BENCH / "sink.py"), str(port)])
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(f"{url}/count", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("sink did not start")


def start_prefect(home: Path) -> tuple[subprocess.Popen[bytes] | None, str]:
    if os.environ.get("PREFECT_API_URL"):
        return None, os.environ["PREFECT_API_URL"]
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "prefect"),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{port}/api"
    for _ in range(1200):
        try:
            if httpx.get(f"{api}/health", timeout=1).status_code == 200:
                return proc, api
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError("prefect server did not start")


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float, bytes, bytes]:
    """Wall seconds, CPU seconds, peak RSS (MB), stdout and stderr of one process (its own rusage, from
    wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=errors)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        errors.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[1]} failed:\n{errors.read().decode()[-3000:]}")
        return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out.read(), errors.read()


def side_by_side(count: int, home: Path, api: str, database: str | None, collector: bool = False) -> None:
    folder = Path(tempfile.mkdtemp(prefix="clarion-side-", dir=home))
    contacts = folder / "contacts.csv"
    write_contacts(contacts, count)
    (folder / "campaign.yaml").write_text(SIDE_CAMPAIGN)
    (baseline_sink, baseline_url), (clarion_sink, clarion_url) = start_sink(), start_sink()
    try:
        base_wall, base_cpu, base_rss, out, _ = timed(
            [sys.executable, str(BENCH / "baseline_sendgrid.py"), str(contacts), baseline_url],
            dict(os.environ),
        )
        base_sent, base_inner = out.split()
        env = {
            **os.environ,
            **CREDENTIALS,
            "CLARION_HOME": str(folder / "home"),
            "CLARION_SENDGRID_URL": clarion_url,
            "CLARION_SECRET_KEY": "benchmark-signing-key-0123456789abcdef",
            "PREFECT_API_URL": api,
            "PREFECT_LOGGING_LEVEL": "CRITICAL",
        }
        if database:
            env["CLARION_DATABASE_URL"] = database
        entry = [str(ROOT / "benchmarks" / "collector.py")] if collector else ["-m", "clarion"]
        wall, cpu, rss, out, errors = timed(
            [sys.executable, *entry, "run", str(folder / "campaign.yaml"), "--json"], env
        )
        result = json.loads(out)
        sent = sum(int(r["sent"]) for r in result["results"])
        base_counts = httpx.get(f"{baseline_url}/count").json()
        counts = httpx.get(f"{clarion_url}/count").json()
    finally:
        for proc in (baseline_sink, clarion_sink):
            proc.terminate()
            proc.wait()
    rows = [
        ("SDK loop", int(base_sent), base_wall, base_cpu, base_counts, base_rss),
        ("clarion run", sent, wall, cpu, counts, rss),
    ]
    print(f"\n{count:,} contacts ({'PostgreSQL' if database else 'SQLite'} ledger), one run, side by side:")
    print(
        f"  {'':12} {'emails':>9} {'wall s':>7} {'CPU s':>6} {'emails/s':>9} {'requests':>8} {'distinct':>9} "
        f"{'RSS MB':>7}"
    )
    for name, n, seconds, used, c, peak in rows:
        print(
            f"  {name:12} {n:9,} {seconds:7.2f} {used:6.2f} {n / seconds:9,.0f} {c['requests']:8,} "
            f"{c['distinct']:9,} {peak:7.0f}"
        )
    print(f"  the SDK loop's own timer (after its imports): {float(base_inner):.2f} s")
    print(
        f"  ratio (SDK loop wall / clarion wall): {base_wall / wall:.2f}   "
        f"(against the loop's own timer: {float(base_inner) / wall:.2f})"
    )
    print(f"  ratio of CPU seconds (SDK loop / clarion): {base_cpu / cpu:.2f}")
    for line in errors.decode(errors="replace").splitlines():
        if line.startswith("collector:"):
            print(f"  clarion run's {line}")
    load = os.getloadavg()[0]
    print(
        f"  load average when it ended: {load:.1f} on {os.cpu_count()} cores (other jobs share the machine)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--side-by-side",
        type=int,
        nargs="*",
        metavar="CONTACTS",
        help="contacts per side-by-side run (default 100000)",
    )
    parser.add_argument("--postgres", metavar="URL", help="the ledger on this PostgreSQL database")
    parser.add_argument(
        "--collector",
        action="store_true",
        help="time the garbage collector's passes in `clarion run` (benchmarks/collector.py)",
    )
    parser.add_argument(
        "--mixed",
        type=int,
        nargs="*",
        metavar="CONTACTS",
        help="the email + SMS campaign to the sandbox instead (default 10000 100000)",
    )
    parser.add_argument("--baseline", action="store_true", help="with --mixed: also time a plain SDK loop")
    args = parser.parse_args()
    if args.mixed is not None:
        mixed(args.mixed or [10_000, 100_000], args.baseline)
        return
    with tempfile.TemporaryDirectory(prefix="clarion-bench-") as tmp:
        server, api = start_prefect(Path(tmp) / "prefect")
        try:
            for count in args.side_by_side or [100_000]:
                side_by_side(count, Path(tmp), api, args.postgres, args.collector)
        finally:
            if server is not None:
                server.terminate()
                server.wait()


if __name__ == "__main__":
    main()
