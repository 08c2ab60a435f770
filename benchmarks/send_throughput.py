"""Send throughput, memory and overhead: Clarion beside the hand-written SDK loop, and a mixed campaign.

    .venv/bin/python benchmarks/send_throughput.py                   # side by side, 100,000 emails
    .venv/bin/python benchmarks/send_throughput.py --side-by-side 100000 1000000
    .venv/bin/python benchmarks/send_throughput.py --collector       # also the collector's passes
    .venv/bin/python benchmarks/send_throughput.py --repeat 3 --against /tmp/base   # before and after
    .venv/bin/python benchmarks/send_throughput.py --mixed 10000 100000 [--baseline]
    .venv/bin/python benchmarks/send_throughput.py --uuid-ids --against /tmp/base   # ids in no order

Side by side (the default; ../shared/bench/README.md): one contacts file, two fast SendGrid stand-ins
(../shared/bench/sink.py), a `prefect server` already running (started here unless PREFECT_API_URL is
set, and warmed by one small `clarion run` first, not timed, unless --cold), then in turn the hand-written
loop (../shared/bench/baseline_sendgrid.py: the sendgrid SDK, 1,000 personalizations a request,
per-recipient substitutions for the first name, a tracked link and an unsubscribe link, RFC 8058 headers)
and `clarion run` on a campaign that says the same (first name, tracked link, unsubscribe link, postal
address; the headers are Clarion's own). For each: wall time of the whole
process (interpreter start-up and imports included, and for Clarion validation and planning), emails/s,
the requests and distinct recipients the stand-in counted, and the process's peak RSS (a `clarion run`'s
local send helper: its CPU counted with the run's, its own peak RSS on a line of its own); then the ratio.
Under each `clarion run`, where its wall time went, from the ledger's own timestamps: until the run was
created (imports, the flow run's start), planning, sending (to the last settlement), and after; and the
first message (from the process's start to the first send the stand-in took). With --validated, `clarion
validate` first (not timed), as an operator would before a launch: the run checks no message again, and
sends its openings while it plans.
With --repeat N, N turns one after the other and the medians (the machine is shared: a single run moves by
tens of percent); with --against TREE, `clarion run` from another checkout too (a `git worktree` of an
earlier commit), interleaved with this one's in alternating order, each on a fresh stand-in and ledger.
Each ledger's tables are created before its run's clock starts, as they are for every run after a user's
first (--fresh-ledger: by the run itself). Each tree's Clarion is compiled to bytecode first, as pip
compiles an installed package (--no-compile: left as it is; with PYTHONDONTWRITEBYTECODE set, as on this
machine, an uncompiled checkout is compiled again by every process that imports it).

Mixed (--mixed): an email + SMS campaign to the provider sandbox: wall time of `clarion run`, recipients
per second per channel over its sending window (from the ledger), peak RSS; with --baseline, the same
provider calls replayed by a plain loop over the SDKs, for Clarion's overhead.

The machine is shared (2 cores, other jobs running): figures move by tens of percent between runs.
"""

from __future__ import annotations

import argparse
import compileall
import csv
import json
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


def write_contacts(path: Path, count: int, uuid_ids: bool = False) -> None:
    """id, email, first_name, last_name: streamed, so that a million rows cost no memory here. The ids
    follow the file's order (sup-0000001, ...), or with `uuid_ids` are random UUIDs, as a CRM may export."""
    ids = random.Random(11)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["id", "email", "first_name", "last_name"])
        for i in range(1, count + 1):
            first = FIRST_NAMES[i % len(FIRST_NAMES)]
            key = str(uuid.UUID(int=ids.getrandbits(128), version=4)) if uuid_ids else f"sup-{i:07d}"
            writer.writerow([key, f"{first.lower()}.{i}@example.org", first, "Doe"])


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


def timed(
    cmd: list[str], env: dict[str, str], cwd: Path | None = None
) -> tuple[float, float, float, bytes, bytes, float]:
    """Wall seconds, CPU seconds, peak RSS (MB), stdout and stderr of one process (its own rusage, from
    wait4: with the children it waited for, such as `clarion run`'s local send helpers, their CPU included
    and the largest process's RSS), and the largest peak RSS (MB) of its send helpers, read from /proc
    while it runs (0.0 if it started none)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=errors, cwd=cwd)
        helpers: dict[int, float] = {}
        done = threading.Event()
        watcher = threading.Thread(target=_watch_helpers, args=(proc.pid, helpers, done), daemon=True)
        watcher.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        done.set()
        watcher.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        errors.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[1]} failed:\n{errors.read().decode()[-3000:]}")
        cpu = usage.ru_utime + usage.ru_stime
        return (
            wall,
            cpu,
            usage.ru_maxrss / 1024,
            out.read(),
            errors.read(),
            max(helpers.values(), default=0.0),
        )


def _watch_helpers(parent: int, peaks: dict[int, float], done: threading.Event) -> None:
    """Every 0.2 s, the peak RSS (VmHWM, MB) of each send helper `parent` started."""
    while not done.wait(0.2):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) != parent:
                    continue
                if b"clarion.engine.helper_process" not in (entry / "cmdline").read_bytes():
                    continue
                status = (entry / "status").read_text()
            except (OSError, ValueError, IndexError):
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    peaks[int(entry.name)] = max(peaks.get(int(entry.name), 0.0), int(line.split()[1]) / 1024)


@dataclass
class Row:
    """One process of a side by side: what it sent, its wall and CPU seconds, peak RSS, what the sink
    counted, and (for the SDK loop) its own timer after its imports."""

    name: str
    sent: int
    wall: float
    cpu: float
    rss: float
    counts: dict[str, int]
    inner: float | None = None
    phases: dict[str, float] | None = None
    helper_rss: float = 0.0  # the largest peak RSS of its local send helpers (MB), 0 without any


def _sdk_loop(contacts: Path) -> Row:
    sink, url = start_sink()
    try:
        wall, cpu, rss, out, _, _ = timed(
            [sys.executable, str(BENCH / "baseline_sendgrid.py"), str(contacts), url], dict(os.environ)
        )
        counts = httpx.get(f"{url}/count").json()
    finally:
        sink.terminate()
        sink.wait()
    sent, inner = out.split()
    return Row("SDK loop", int(sent), wall, cpu, rss, counts, float(inner))


def _clarion(
    name: str,
    folder: Path,
    api: str,
    database: str | None,
    collector: bool,
    tree: Path | None,
    fresh: bool = False,
    validated: bool = False,
) -> tuple[Row, bytes]:
    """`clarion run` on the side by side's campaign, from this checkout or from `tree` (another checkout's
    root, put first on PYTHONPATH); run from a folder of its own, so that `-m clarion` finds no checkout
    in the working directory. A fresh CLARION_HOME (ledger) each time, its tables created before the clock
    starts, as a user's ledger is after its first run (`fresh`: not even those, a first run's case).
    `validated`: `clarion validate` first, not timed, as an operator does before a launch (or a deployment's
    earlier launches did): the run then checks no message again, and sends its openings while it plans."""
    home = folder / "home"
    shutil.rmtree(home, ignore_errors=True)
    sink, url = start_sink()
    env = {
        **os.environ,
        **CREDENTIALS,
        "CLARION_HOME": str(home),
        "CLARION_SENDGRID_URL": url,
        "CLARION_SECRET_KEY": "benchmark-signing-key-0123456789abcdef",
        "PREFECT_API_URL": api,
        "PREFECT_LOGGING_LEVEL": "CRITICAL",
    }
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
    entry = [str(ROOT / "benchmarks" / "collector.py")] if collector else ["-m", "clarion"]
    try:
        with child_scratch_schema(database) as ledger:
            if ledger:
                env["CLARION_DATABASE_URL"] = ledger
            if not fresh:
                subprocess.run([sys.executable, "-c", _MIGRATE], env=env, cwd=folder, check=True)
            if validated:
                check = [sys.executable, "-m", "clarion", "validate", str(folder / "campaign.yaml")]
                subprocess.run(check, env=env, cwd=folder, check=True, capture_output=True)
            began = time.time()
            wall, cpu, rss, out, errors, helper_rss = timed(
                [sys.executable, *entry, "run", str(folder / "campaign.yaml"), "--json"], env, cwd=folder
            )
            ended = time.time()
            outcome = json.loads(out)
            phases = ledger_phases(env, outcome["run_id"], began, ended)
        counts = httpx.get(f"{url}/count").json()
    finally:
        sink.terminate()
        sink.wait()
    sent = sum(int(r["sent"]) for r in outcome["results"])
    return Row(name, sent, wall, cpu, rss, counts, phases=phases, helper_rss=helper_rss), errors


_MIGRATE = "from clarion.ledger import Ledger\nLedger.open()"

#: Read in a child of its own (this process stays small: see child_scratch_schema): when the run was
#: created (planning begins), its last send planned, its first message sent, its last send settled.
_PHASES = """import json, sys
from clarion.base.settings import ClarionSettings
from clarion.ledger import Ledger
ledger = Ledger(ClarionSettings().ledger_url())
run = ledger.get_run(sys.argv[1])
planned = settled = 0.0
first = float("inf")
for row in ledger.sends(sys.argv[1]):
    planned = max(planned, row.planned_at.timestamp())
    if row.settled_at is not None:
        settled = max(settled, row.settled_at.timestamp())
        if row.state.value == "sent":
            first = min(first, row.settled_at.timestamp())
at = {"created": run.created_at.timestamp(), "planned": planned, "settled": settled, "first": first}
print(json.dumps(at))
"""
PHASES = ("to planning", "planning", "sending", "after")
FIRST = "first message"  # from the process's start to its first message settled as sent (not a phase)


def ledger_phases(env: dict[str, str], run_id: str, began: float, ended: float) -> dict[str, float]:
    """Where a `clarion run` process's wall time went, from the ledger's own timestamps: until the run was
    created (imports, the flow run's start), planning (until its last send was planned), sending (until
    its last send settled), after (the report, the flow's end, the process's exit); and FIRST, from the
    process's start to the first message the provider took (the openings may go while planning goes on)."""
    found = subprocess.run(
        [sys.executable, "-c", _PHASES, run_id], env=env, check=True, capture_output=True
    ).stdout
    at = json.loads(found)
    phases = dict(
        zip(
            PHASES,
            (
                at["created"] - began,
                at["planned"] - at["created"],
                at["settled"] - at["planned"],
                ended - at["settled"],
            ),
            strict=True,
        )
    )
    phases[FIRST] = at["first"] - began
    return phases


@contextmanager
def child_scratch_schema(database: str | None) -> Iterator[str | None]:
    """A schema of its own on `database` for one run (a second run must not find the first one's rows),
    dropped afterwards; None without a database (SQLite in the run's CLARION_HOME).

    Not tracking_load.scratch_schema: that one works in this process, and this process must stay small.
    A child's peak RSS (wait4) counts the pages it had before it exec'd, which are this process's: with
    tracking_load imported here (SQLAlchemy, Clarion, the SDKs), the SDK loop's figure rose from 37 to
    118 MB. The statements run in a child of their own instead."""
    if database is None:
        yield None
        return
    schema = f"clarion_side_{os.getpid()}_{time.monotonic_ns()}"
    separator = "&" if "?" in database else "?"
    _sql(database, f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{database}{separator}options=-csearch_path%3D{schema}"
    finally:
        _sql(database, f'DROP SCHEMA "{schema}" CASCADE')


def _sql(database: str, statement: str) -> None:
    program = (
        "import sys\nfrom sqlalchemy import create_engine, text\n"
        "with create_engine(sys.argv[1]).begin() as conn:\n    conn.execute(text(sys.argv[2]))\n"
    )
    subprocess.run([sys.executable, "-c", program, database, statement], check=True)


def side_by_side(
    count: int,
    home: Path,
    api: str,
    database: str | None,
    collector: bool = False,
    repeat: int = 1,
    against: Path | None = None,
    warm: bool = True,
    fresh: bool = False,
    validated: bool = False,
    uuid_ids: bool = False,
) -> None:
    """The SDK loop and `clarion run` (and with `against`, the same from another checkout) `repeat` times,
    interleaved (the two trees' order alternating), each figure as it comes, then the medians. With `warm`,
    the server has served one small run first (`warm_up`)."""
    folder = Path(tempfile.mkdtemp(prefix="clarion-side-", dir=home))
    contacts = folder / "contacts.csv"
    write_contacts(contacts, count, uuid_ids)
    (folder / "campaign.yaml").write_text(SIDE_CAMPAIGN)
    trees: list[tuple[str, Path | None]] = [("clarion run", None)]
    if against is not None:
        trees.append((f"clarion run, {against.name}", against))
    rows: list[Row] = []
    errors = b""
    if warm:
        warm_up(home, api, database)
    validation = ", validated before each run" if validated else ""
    validation += ", contact ids random UUIDs" if uuid_ids else ""
    print(
        f"\n{count:,} contacts ({'PostgreSQL' if database else 'SQLite'} ledger{validation}), side by side:"
    )
    print(
        f"  {'':28} {'emails':>9} {'wall s':>7} {'CPU s':>6} {'emails/s':>9} {'requests':>8} {'distinct':>9} "
        f"{'RSS MB':>7}",
        flush=True,
    )
    for turn in range(repeat):
        row = _sdk_loop(contacts)
        rows.append(row)
        _print_row(row, turn, repeat)
        for name, tree in trees if turn % 2 == 0 else trees[::-1]:
            row, errors = _clarion(name, folder, api, database, collector, tree, fresh, validated)
            rows.append(row)
            _print_row(row, turn, repeat)
    base = [r for r in rows if r.name == "SDK loop"]
    base_wall = statistics.median(r.wall for r in base)
    base_cpu = statistics.median(r.cpu for r in base)
    inner = statistics.median(r.inner or 0.0 for r in base)
    median = " (medians)" if repeat > 1 else ""
    print(f"  the SDK loop's own timer (after its imports): {inner:.2f} s{median}")
    for name, _ in trees:
        mine = [r for r in rows if r.name == name]
        wall = statistics.median(r.wall for r in mine)
        cpu = statistics.median(r.cpu for r in mine)
        print(
            f"  ratio, {name} (SDK loop wall / its wall): {base_wall / wall:.2f}   (against the loop's own "
            f"timer: {inner / wall:.2f}; of CPU seconds: {base_cpu / cpu:.2f}){median}"
        )
        timed_phases = [r.phases for r in mine if r.phases]
        if timed_phases:
            middle = {p: statistics.median(t[p] for t in timed_phases) for p in (*PHASES, FIRST)}
            print(f"    {name}, from the ledger's timestamps: {_phases(middle)}{median}")
    for line in errors.decode(errors="replace").splitlines():
        if line.startswith("collector:"):
            print(f"  clarion run's {line}")
    load = os.getloadavg()[0]
    print(
        f"  load average when it ended: {load:.1f} on {os.cpu_count()} cores (other jobs share the machine)"
    )


def warm_up(home: Path, api: str, database: str | None) -> None:
    """One `clarion run` of 20 contacts, not timed, before the turns: a `prefect server` that has just
    started answers its first requests slowly (its first /admin/version took 0.47 s against 0.03 s after,
    its first flow run's API calls likewise), which a server already running has long paid. Without it the
    first turn's `clarion run` carried about a second that no later turn did."""
    folder = Path(tempfile.mkdtemp(prefix="clarion-warm-", dir=home))
    write_contacts(folder / "contacts.csv", 20)
    (folder / "campaign.yaml").write_text(SIDE_CAMPAIGN)
    _clarion("warm-up", folder, api, database, False, None)


def _print_row(row: Row, turn: int, repeat: int) -> None:
    name = f"{row.name} #{turn + 1}" if repeat > 1 else row.name
    print(
        f"  {name:28} {row.sent:9,} {row.wall:7.2f} {row.cpu:6.2f} {row.sent / row.wall:9,.0f} "
        f"{row.counts['requests']:8,} {row.counts['distinct']:9,} {row.rss:7.0f}",
        flush=True,
    )
    if row.phases:
        print(f"  {'':28} {_phases(row.phases)}", flush=True)
    if row.helper_rss:
        print(f"  {'':28} its local send helper's peak RSS {row.helper_rss:.0f} MB (CPU s above include it)")


def _phases(phases: dict[str, float]) -> str:
    return ", ".join(f"{name} {phases[name]:.2f} s" for name in PHASES) + f"; {FIRST} {phases[FIRST]:.2f} s"


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
    parser.add_argument(
        "--repeat", type=int, default=1, help="side by side: this many turns, interleaved, and the medians"
    )
    parser.add_argument(
        "--against",
        type=Path,
        metavar="TREE",
        help="side by side: also `clarion run` from this checkout (e.g. `git worktree add /tmp/base "
        "HEAD~3`), interleaved with this one, for a before-and-after on one machine in one sitting",
    )
    parser.add_argument(
        "--fresh-ledger",
        action="store_true",
        help="side by side: each `clarion run` creates its ledger's tables (default: created before it "
        "starts, as for any run after a user's first)",
    )
    parser.add_argument(
        "--no-compile",
        action="store_true",
        help="side by side: leave the trees' bytecode as it is (default: compile each tree's Clarion first, "
        "as pip compiles an installed package)",
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="side by side: no warm-up run first (the server's first requests in the first turn's figure)",
    )
    parser.add_argument(
        "--validated",
        action="store_true",
        help="side by side: `clarion validate` the campaign (not timed) before each `clarion run`, as an "
        "operator would before a launch: the run then checks no message again and opens while it plans",
    )
    parser.add_argument(
        "--uuid-ids",
        action="store_true",
        help="side by side: contact ids that are random UUIDs (as a CRM may export them) instead of ids in "
        "the file's order: the ledger's indexes led by contact id then take rows at random places",
    )
    args = parser.parse_args()
    if args.mixed is not None:
        mixed(args.mixed or [10_000, 100_000], args.baseline)
        return
    if not args.no_compile:  # else every process that imports a checkout compiles its modules again
        for tree in filter(None, [ROOT, args.against]):
            compileall.compile_dir(tree / "clarion", quiet=1)
    with tempfile.TemporaryDirectory(prefix="clarion-bench-") as tmp:
        server, api = start_prefect(Path(tmp) / "prefect")
        try:
            for count in args.side_by_side or [100_000]:
                side_by_side(
                    count,
                    Path(tmp),
                    api,
                    args.postgres,
                    args.collector,
                    args.repeat,
                    args.against,
                    warm=not args.cold,
                    fresh=args.fresh_ledger,
                    validated=args.validated,
                    uuid_ids=args.uuid_ids,
                )
        finally:
            if server is not None:
                server.terminate()
                server.wait()


if __name__ == "__main__":
    main()
