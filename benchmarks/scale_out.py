"""Scale-out: one campaign's sends as shards on a work pool, on the production shape on this machine.

    .venv/bin/python benchmarks/scale_out.py                      # throughput by workers, pacing, kills
    .venv/bin/python benchmarks/scale_out.py --million            # also 1,000,000 contacts on two workers
    .venv/bin/python benchmarks/scale_out.py --only skew --only kills   # some parts only
    .venv/bin/python benchmarks/scale_out.py --only pacing --pacing-runs 3 --provider-realtime

Starts `clarion sandbox` in its own process, then `prefect server` on PostgreSQL with Redis messaging and a
process work pool with 4 workers (clarion.cli.stack, what `clarion devstack up` runs), the ledger on
PostgreSQL (a fresh schema) and the launches' coordination in Redis. Prints:

- SMS and email throughput with the batches on 1, 2 and 4 workers (shards = workers, the pool holding just
  that many; texts/s over the sandbox's send window, emails/s over the ledger's), the cores' busy share, and
  the cores and CPU ms a message each role used (the workers with their flow runs, the sandbox, `prefect
  server`, the launch, PostgreSQL, Redis);
- pacing: `messages_per_second: 200` on SMS across 4 workers: the largest count in any 1-s window at the
  sandbox (goal <= 210) and the average rate (goal >= 190/s), --pacing-runs times, by the sandbox's stamps
  and (as root) by the kernel's as each request reached its port (benchmarks/wire.py); with
  --provider-realtime the sandbox runs ahead of every other process for the CPU (SCHED_FIFO, as root), as
  a provider's servers do not share the senders' cores;
- kill -9 of one of three busy workers (with every process it started) mid-run, --trials times: duplicates,
  silent omissions (contacts neither sent nor skipped nor listed uncertain) and uncertain sends;
- with --million: 1,000,000 contacts (email + SMS) on two workers: wall time, per-channel rate, and the peak
  RSS of each worker's processes.

Ended by SIGTERM (`timeout`) or Ctrl-C, it stops what it started: the launches (asked to stop, as an operator
would), the workers with every flow run they started, the server and the sandbox.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))
from make_contacts import generate  # noqa: E402
from wire import WireTap  # noqa: E402

from clarion.cli.stack import Stack, children_by_parent, process_tree, stack  # noqa: E402
from clarion.ledger import Ledger  # noqa: E402

SECRET = "benchmark-signing-key-0123456789abcdef"
HEAD = """\
name: scale-out
cta:
  url: https://donate.example.org/now
tracking:
  base_url: https://go.example.org
audience:
  contacts: contacts.csv
experiment:
  variants:
    - id: a
      vars: {headline: "Chip in now."}
    - id: b
      vars: {headline: "Stand with us tonight."}
channels:
"""
EMAIL = """\
  email:
    provider: sendgrid
    from: "Team <team@example.org>"
    subject: "{{ variant.headline }}"
    postal_address: "Team, PO Box 1, Springfield"
    body: >-
      <p>{{ variant.headline }} <a href='{{ link }}'>Give</a></p>
      <p><a href='{{ unsubscribe_url }}'>Unsubscribe</a> {{ postal_address }}</p>
"""
SMS = """\
  sms:
    provider: twilio
    from: "+15005550006"
    quiet_hours: null
    batch_size: {batch}{pacing}
    body: "{{{{ variant.headline }}}} {{{{ link }}}} Reply STOP to opt out"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write(
    folder: Path,
    contacts: int,
    *,
    email: bool,
    sms: bool = True,
    rate: int | None = None,
    batch: int = 250,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "contacts.csv").open("w", newline="") as fh:
        writer = None
        for start in range(0, contacts, 100_000):  # streamed: a million rows never sit in memory
            rows = generate("debate-night", min(100_000, contacts - start), seed=start + 1)
            for i, row in enumerate(rows):
                row["id"] = f"sup-{start + i + 1:07d}"
                if row["email"]:
                    row["email"] = row["email"].replace("@", f".{start + i}@")
                if row["phone"]:
                    row["phone"] = f"+1415{(start + i) % 10_000_000:07d}"  # unique, valid US numbers
                    if row["phone"][5] in "01":
                        row["phone"] = "+1415" + "2" + row["phone"][6:]
            if writer is None:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
                writer.writeheader()
            writer.writerows(rows)
    pacing = f"\n    pacing: {{messages_per_second: {rate}}}" if rate else ""
    text_ = HEAD + (EMAIL if email else "") + (SMS.format(batch=batch, pacing=pacing) if sms else "")
    path = folder / "campaign.yaml"
    path.write_text(text_)
    return path


class Sandbox:
    """`clarion sandbox` in its own process (the benchmark's own interpreter stays out of its way)."""

    def __init__(self, realtime: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "clarion", "sandbox", "--port", str(self.port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=_realtime if realtime else None,
            )
        except subprocess.SubprocessError as exc:  # the real-time policy refused: not root
            raise SystemExit(f"--provider-realtime needs root (SCHED_FIFO was refused: {exc})") from None
        for _ in range(300):
            try:
                httpx.get(f"{self.url}/_sandbox/health", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise SystemExit("the sandbox did not start")

    def environment(self) -> dict[str, str]:
        return {
            "SENDGRID_API_KEY": "SG.bench",
            "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
            "TWILIO_AUTH_TOKEN": "bench",
            "X_ACCESS_TOKEN": "bench",
            "CLARION_SENDGRID_URL": self.url,
            "CLARION_TWILIO_URL": self.url,
            "CLARION_X_URL": self.url,
        }

    def reset(self) -> None:
        httpx.delete(f"{self.url}/_sandbox/messages", timeout=60)

    def counts(self) -> dict[str, int]:
        return dict(httpx.get(f"{self.url}/_sandbox/counts", timeout=30).json())

    def messages(self, provider: str) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        since = 0
        while True:
            page = httpx.get(
                f"{self.url}/_sandbox/messages",
                params={"provider": provider, "since_id": since, "limit": 50_000},
                timeout=120,
            ).json()
            if not page:
                return out
            out.extend(page)
            since = int(page[-1]["id"])

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def launch(pool: Stack, path: Path, run_id: str, shards: int, work: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **pool.env,
        "CLARION_HOME": str(work / "launcher"),
        "CLARION_SHARDS": str(shards),
        "PREFECT_LOGGING_LEVEL": "CRITICAL",
    }
    env.pop("PREFECT_HOME", None)
    with (work / f"{run_id}.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "clarion", "run", str(path), "--run-id", run_id, "--json"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    LAUNCHES.append(process)
    return process


#: Every `clarion run` started, stopped on the way out if still running.
LAUNCHES: list[subprocess.Popen[bytes]] = []


def _stop_launches() -> None:
    """SIGTERM to each running launch (it stops its shards through Redis and exits interrupted)."""
    running = [p for p in LAUNCHES if p.poll() is None]
    for process in running:
        process.terminate()
    for process in running:
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks and the stack's clean-up


def _realtime() -> None:
    """The sandbox ahead of every ordinary process for the CPU (SCHED_FIFO; needs root), as a provider's
    servers are not on the senders' cores: a sandbox taken off the CPU in the middle of answering (seen
    for ~90 ms at the moment the shards start their next batches) stamps the texts that came meanwhile
    together, as a burst the senders did not make."""
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))


def _times(messages: list[dict[str, object]]) -> list[float]:
    return sorted(datetime.fromisoformat(str(m["received_at"])).timestamp() for m in messages)


ROLES = ("workers", "sandbox", "prefect server", "launch", "postgresql", "redis", "other")


def _role(cmdline: str) -> str | None:
    """What a process is in the benchmark, from its own command line (None: its parent's role)."""
    if "prefect worker" in cmdline or "prefect.engine" in cmdline or "prefect flow-run" in cmdline:
        return "workers"
    if "clarion sandbox" in cmdline:
        return "sandbox"
    if "prefect server" in cmdline or ("uvicorn" in cmdline and "prefect" in cmdline):
        return "prefect server"
    if "clarion run" in cmdline:
        return "launch"
    if cmdline.startswith("postgres"):
        return "postgresql"
    if cmdline.startswith("redis-server"):
        return "redis"
    return None


def cpu_by_role() -> dict[str, float]:
    """CPU seconds used so far by each role's processes (their own, and that of the children they waited
    for: a flow run that exited counts in its worker's), from one walk of /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    own: dict[int, tuple[str | None, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            raw = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        # utime, stime, cutime, cstime: fields 14-17 of stat, 11-14 after the name
        seconds = sum(int(x) for x in fields[11:15]) / tick
        words = [w.rsplit("/", 1)[-1] if i == 0 else w for i, w in enumerate(raw.split())]
        if words and words[0].startswith("python"):
            words = [w for w in words[1:] if w != "-m"]  # the interpreter, then what it runs
        command = " ".join(words)
        own[pid] = (_role(command), seconds)
    totals = dict.fromkeys(ROLES, 0.0)
    for pid, (role, seconds) in own.items():
        ancestor = pid
        while role is None and ancestor in parents and parents[ancestor] in own:
            ancestor = parents[ancestor]
            role = own[ancestor][0]
        totals[role or "other"] += seconds
    return totals


class CpuMeter:
    """The machine's busy share of its cores over a time window (/proc/stat, sampled every 0.25 s): whether
    more workers could have gone faster, or the cores were already full (workers, sandbox, server, ledger);
    and every 0.5 s, the CPU each role's processes had used (`cpu_by_role`), for where the cores went.
    Steal (time the host gave this machine's virtual cores to others) is counted apart: where it is high,
    every process's CPU per text rises together, and a figure from such a window says less."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, int, int, int]] = []
        self.roles: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with open("/proc/stat") as fh:
                jiffies = [int(x) for x in fh.readline().split()[1:]]
            idle, steal = jiffies[3] + jiffies[4], jiffies[7]  # idle + iowait; steal
            now = time.time()
            self.samples.append((now, sum(jiffies) - idle - steal, sum(jiffies), steal))
            if len(self.samples) % 2:
                self.roles.append((now, cpu_by_role()))
            self._stop.wait(0.25)

    def busy(self, start: float, end: float) -> tuple[float, float]:
        """Busy and stolen shares of all cores between two instants (0..1 each); NaN without samples."""
        self._stop.set()
        self._thread.join()
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2:
            return float("nan"), float("nan")
        (_, busy0, total0, steal0), (_, busy1, total1, steal1) = inside[0], inside[-1]
        total = max(total1 - total0, 1)
        return (busy1 - busy0) / total, (steal1 - steal0) / total

    def by_role(self, start: float, end: float) -> tuple[float, dict[str, float]]:
        """The seconds between the first and last role samples inside the window, and the CPU seconds each
        role used in them (empty without two samples inside)."""
        inside = [r for r in self.roles if start <= r[0] <= end]
        if len(inside) < 2:
            return float("nan"), {}
        (t0, first), (t1, last) = inside[0], inside[-1]
        return t1 - t0, {role: max(last[role] - first[role], 0.0) for role in ROLES}


def throughput(
    pool: Stack, box: Sandbox, work: Path, contacts: int, batch: int, emails: int, database: str
) -> None:
    """SMS texts/s, then emails/s, with the shards on 1, 2 and 4 workers, the pool holding just that many: a
    worker with nothing to run still asks the server for scheduled runs every second (three idle ones took
    some 8% of a core, server and workers), which a worker count's own figure should not pay for. Texts
    are timed by the sandbox's stamps; emails (1,000 a request) by the ledger's, from the first claim to
    the last settlement."""
    texting = write(work / "throughput", contacts, email=False, batch=batch)
    mailing = write(work / "email-throughput", emails, email=True, sms=False)
    for shards in (1, 2, 4):
        _grow(pool, shards)
        box.reset()
        meter = CpuMeter()
        code = launch(pool, texting, f"tp-{shards}-{uuid.uuid4().hex[:4]}", shards, work).wait()
        texts = _times(box.messages("twilio"))
        _rate("SMS", "texts", "text", shards, len(texts), texts[0], texts[-1], meter, code)
        box.reset()
        meter = CpuMeter()
        run_id = f"tpe-{shards}-{uuid.uuid4().hex[:4]}"
        code = launch(pool, mailing, run_id, shards, work).wait()
        with create_engine(database).connect() as conn:
            sent, first, last = conn.execute(
                text(
                    "SELECT count(*), min(attempted_at), max(settled_at) FROM sends "
                    "WHERE run_id = :run AND channel = 'email' AND state = 'sent'"
                ),
                {"run": run_id},
            ).one()
        _rate("email", "emails", "email", shards, sent, first.timestamp(), last.timestamp(), meter, code)


def _rate(
    channel: str,
    plural: str,
    one: str,
    shards: int,
    count: int,
    start: float,
    end: float,
    meter: CpuMeter,
    code: int,
) -> None:
    """One throughput line, and where the cores went between `start` and `end`."""
    span = end - start if count > 1 else float("nan")
    busy, stolen = meter.busy(start, end)
    print(
        f"{channel} on {shards} worker(s): {count:,} {plural} in {span:.1f} s = {count / span:,.0f}/s, "
        f"the machine's {os.cpu_count()} cores {busy:.0%} busy meanwhile, {stolen:.0%} stolen by the "
        f"host (exit {code})",
        flush=True,
    )
    seconds, used = meter.by_role(start, end)
    if used:
        shares = ", ".join(f"{role} {cpu / seconds:.2f}" for role, cpu in used.items() if cpu)
        scale, unit = (1e6, "us") if count / span > 5_000 else (1e3, "ms")  # an email's, a text's
        each = {role: cpu / seconds / (count / span) * scale for role, cpu in used.items() if cpu}
        costs = ", ".join(f"{role} {cost:.2f}" for role, cost in each.items())
        print(f"  cores used by each ({seconds:.1f} s of the window): {shares}", flush=True)
        print(f"  CPU {unit} per {one}: {costs}", flush=True)


def _grow(pool: Stack, workers: int) -> None:
    """Start workers until the pool has `workers`, and wait until they are all online."""
    while len(pool.workers) < workers:
        pool.add_worker(len(pool.workers))
    pool.wait_online(workers)


def skew(pool: Stack, box: Sandbox, work: Path, runs: int = 3) -> None:
    """The first accepted message of each channel, with the channels' batches on three workers."""
    path = write(work / "skew", 3_000, email=True, batch=100)
    text_ = path.read_text().replace(
        "channels:\n", 'channels:\n  x:\n    provider: x\n    body: "{{ variant.headline }} {{ link }}"\n', 1
    )
    path.write_text(text_)
    for i in range(runs):
        box.reset()
        code = launch(pool, path, f"skew-{i}-{uuid.uuid4().hex[:4]}", 3, work).wait()
        firsts = {p: _times(box.messages(p))[0] for p in ("x", "sendgrid", "twilio")}
        start = min(firsts.values())
        print(
            "skew on 3 workers: "
            + ", ".join(f"{p} +{(t - start) * 1000:.0f} ms" for p, t in firsts.items())
            + f" (exit {code})",
            flush=True,
        )


def pacing(pool: Stack, box: Sandbox, work: Path, runs: int = 1) -> None:
    path = write(work / "pacing", 5_000, email=False, rate=200, batch=50)
    for i in range(runs):
        _pacing_run(pool, box, work, path, work / f"pacing-stamps-{i}.txt")


def _pacing_run(pool: Stack, box: Sandbox, work: Path, path: Path, stamps: Path) -> None:
    box.reset()
    tap: WireTap | None = None
    try:  # when each text reached the sandbox's port, beside when its process got to it (benchmarks/wire.py)
        tap, why = WireTap(box.port, b"/Messages.json"), ""
    except OSError as exc:  # PermissionError: not root
        why = str(exc)
    code = launch(pool, path, f"pace-{uuid.uuid4().hex[:4]}", 4, work).wait()
    wire, drops = tap.stop() if tap is not None else ([], 0)
    times = _times(box.messages("twilio"))
    stamps.write_text("".join(f"{t:.6f}\n" for t in times))
    worst, first = _busiest(times)
    span = times[-1] - times[0]
    gap, after = max((times[i + 1] - times[i], i + 1) for i in range(len(times) - 1))
    print(
        f"pacing 200/s on 4 workers: {len(times):,} texts, largest 1-s window {worst} (goal <= 210), "
        f"average {len(times) / span:.1f}/s (goal >= 190) (exit {code}); the longest pause between two "
        f"texts at the sandbox {gap * 1000:.0f} ms, {times[first] - times[after]:+.2f} s before the busiest "
        f"second, which began {times[first] - times[0]:.1f} s into the run (stamps in {stamps})",
        flush=True,
    )
    if tap is None:
        print(f"  at the wire: not measured ({why})", flush=True)
        return
    stamps.with_suffix(".wire.txt").write_text("".join(f"{t:.6f}\n" for t in wire))
    most, _ = _busiest(wire)
    lost = f"; {drops} segments dropped by the kernel: incomplete" if drops else ""
    print(
        f"  at the wire (the kernel's stamp as each request reached the sandbox's port): {len(wire):,} "
        f"requests, largest 1-s window {most} (goal <= 210), average "
        f"{len(wire) / (wire[-1] - wire[0]):.1f}/s{lost}",
        flush=True,
    )


def _busiest(times: list[float]) -> tuple[int, int]:
    """The most stamps in any 1-s window of sorted `times`, and where that window's first one is."""
    worst, first, j = 0, 0, 0
    for i, start in enumerate(times):
        while j < len(times) and times[j] < start + 1.0:
            j += 1
        if j - i > worst:
            worst, first = j - i, i
    return worst, first


def kills(pool: Stack, box: Sandbox, work: Path, trials: int, database: str) -> None:
    path = write(work / "kills", 6_000, email=True, rate=300, batch=100)
    rng = random.Random(2026)
    ledger = Ledger(database)
    with (path.parent / "contacts.csv").open(newline="") as fh:
        address = {
            (channel, row["id"]): row[column]
            for row in csv.DictReader(fh)
            for channel, column in (("email", "email"), ("sms", "phone"))
        }
    for trial in range(trials):
        box.reset()
        run_id = f"kill-{trial}-{uuid.uuid4().hex[:4]}"
        process = launch(pool, path, run_id, 3, work)
        target = rng.randint(300, 2_500)
        while sum(box.counts().values()) < target and process.poll() is None:
            time.sleep(0.05)
        victim = rng.randrange(len(pool.workers))
        pool.kill_worker(victim)
        code = process.wait(timeout=1800)
        replacement = pool.add_worker(100 + trial)  # back to three workers, in the dead one's place
        pool.workers.remove(replacement)
        pool.workers[victim] = replacement
        rows = list(ledger.sends(run_id))
        sent = {(r.channel, r.contact_id) for r in rows if str(r.state) == "sent"}
        states = Counter(str(r.state) for r in rows)
        arrived: Counter[tuple[str, str]] = Counter()
        for provider, channel in (("sendgrid", "email"), ("twilio", "sms")):
            for m in box.messages(provider):
                arrived[(channel, str(m["to"]))] += 1
        duplicates = sum(n - 1 for n in arrived.values() if n > 1)
        omissions = states.get("planned", 0) + states.get("in_flight", 0)
        uncertain = [(r.channel, r.contact_id) for r in rows if str(r.state) == "uncertain"]
        out = sum(1 for c, who in uncertain if (c, address.get((c, str(who)), "")) in arrived)
        print(
            f"kill trial {trial}: worker {victim} killed after ~{target} messages; exit {code}; "
            f"duplicates {duplicates}, silent omissions {omissions}, uncertain {len(uncertain)} (of which "
            f"{out} had reached the sandbox), "
            f"sent {len(sent):,}",
            flush=True,
        )


def million(pool: Stack, box: Sandbox, work: Path, database: str, contacts: int) -> None:
    """`contacts` (email + SMS) sharded on two workers: wall time, each channel's rate over its own sending
    window (the ledger's first claim to last settlement), and the peak RSS of each worker with the flow-run
    processes it started (Prefect's process worker starts each in a session of its own: its process tree,
    not its process group) and of the launch (`clarion run`: it validates, plans and watches)."""
    path = write(work / "million", contacts, email=True)
    box.reset()
    peaks: dict[str, tuple[int, int]] = {}  # who -> (its processes together, its largest process)
    timeline: list[tuple[float, int]] = []  # (seconds since the launch, the launch's RSS)
    done = threading.Event()
    run_id = f"million-{uuid.uuid4().hex[:4]}"

    def watch(launcher: int) -> None:
        while not done.wait(1.0):
            whose = {f"w{i}": worker.pid for i, worker in enumerate(pool.workers)} | {"launch": launcher}
            children = children_by_parent()  # one walk of /proc a second for all of them
            for who, pid in whose.items():
                sizes = [_rss(p) for p in process_tree(pid, children)]
                total, largest = peaks.get(who, (0, 0))
                peaks[who] = (max(total, sum(sizes)), max(largest, max(sizes, default=0)))
                if who == "launch":
                    timeline.append((time.monotonic() - start, sum(sizes)))

    start = time.monotonic()
    process = launch(pool, path, run_id, 2, work)
    threading.Thread(target=watch, args=(process.pid,), daemon=True).start()
    code = process.wait()
    wall = time.monotonic() - start
    done.set()
    with create_engine(database).connect() as conn:
        spans = conn.execute(
            text(
                "SELECT channel, count(*), min(attempted_at), max(settled_at) FROM sends "
                "WHERE run_id = :run AND state = 'sent' GROUP BY channel ORDER BY channel"
            ),
            {"run": run_id},
        ).all()
        began = conn.execute(
            text(
                "SELECT min(s.attempted_at) - min(r.created_at) FROM sends s JOIN runs r ON r.id = s.run_id "
                "WHERE s.run_id = :run"
            ),
            {"run": run_id},
        ).scalar_one()
    rates = []
    for channel, sent, first, last in spans:
        window = (last - first).total_seconds()
        rates.append(f"{channel} {sent:,} in {window:,.0f} s ({sent / window:,.0f}/s)")
    print(
        f"{contacts:,} contacts on two workers: {wall:.0f} s wall (exit {code}); sent: {'; '.join(rates)}; "
        "peak RSS (processes together / largest process): "
        + ", ".join(f"{who} {t / 1024:,.0f} / {p / 1024:,.0f} MB" for who, (t, p) in sorted(peaks.items())),
        flush=True,
    )
    if timeline:
        when, most = max(timeline, key=lambda point: point[1])
        print(
            f"the launch's RSS: peak {most / 1024:,.0f} MB at {when:,.0f} s of {wall:,.0f}; the first send "
            f"{began.total_seconds() if began else float('nan'):,.0f} s after the run began; by minute "
            + ", ".join(f"{rss / 1024:,.0f}" for _, rss in timeline[::60])
            + " MB",
            flush=True,
        )


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=8_000, help="audience of the throughput runs")
    parser.add_argument(
        "--batch",
        type=int,
        default=100,
        help="SMS texts a batch (a Prefect task) in the throughput runs (the product's default is 250)",
    )
    parser.add_argument("--emails", type=int, default=100_000, help="audience of the email throughput runs")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument(
        "--provider-realtime",
        action="store_true",
        help="run the sandbox with a real-time CPU policy (SCHED_FIFO, needs root): a provider of its own",
    )
    parser.add_argument("--pacing-runs", type=int, default=1, help="how many times to run the pacing part")
    parser.add_argument("--million", action="store_true")
    parser.add_argument(
        "--million-contacts", type=int, default=1_000_000, help="the audience of --million (to try it small)"
    )
    parts = ("throughput", "pacing", "skew", "kills")
    parser.add_argument(
        "--only", action="append", choices=parts, help="run only these parts (repeatable; default all)"
    )
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _terminated)
    work = Path(tempfile.mkdtemp(prefix="clarion-scale-"))
    schema = f"clarion_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.database_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    database = f"{args.database_url}?options=-csearch_path%3D{schema}"
    box = Sandbox(realtime=args.provider_realtime)
    try:
        env = {**box.environment(), "CLARION_SECRET_KEY": SECRET}
        only = set(args.only or parts)
        first = 1 if "throughput" in only else 4  # the throughput part adds workers as it goes
        with stack(
            work / "stack", workers=first, database_url=database, redis_url=args.redis_url, env=env
        ) as pool:
            try:
                if "throughput" in only:
                    throughput(pool, box, work, args.contacts, args.batch, args.emails, database)
                _grow(pool, 4)
                if "pacing" in only:
                    pacing(pool, box, work, args.pacing_runs)
                if "skew" in only:
                    skew(pool, box, work)
                while len(pool.workers) > 3:  # kills and the million: three workers
                    # gone for good (kill -9): a worker asked to stop with SIGTERM kept taking flow runs,
                    # and the million's second shard ran on it, unmeasured
                    pool.kill_worker(len(pool.workers) - 1)
                    pool.workers.pop()
                if "kills" in only:
                    kills(pool, box, work, args.trials, database)
                if args.million:
                    million(pool, box, work, database, args.million_contacts)
            finally:
                _stop_launches()  # before the workers go: a launch asked to stop settles its shards
    finally:
        box.stop()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    print(f"logs in {work}")


if __name__ == "__main__":
    main()
