"""Tracking service under load: clicks and webhooks mixed, events/s, p99 latency of /c/{token}, nothing lost.

    .venv/bin/python benchmarks/tracking_load.py                       # SQLite (the default ledger)
    .venv/bin/python benchmarks/tracking_load.py --database-url postgresql+psycopg://postgres@127.0.0.1/test

Plans a run of --contacts contacts, starts `clarion serve` in its own process, then drives it from this one
with --concurrency clients: one click per contact on email and SMS links (plus repeats), SendGrid Event
Webhook batches (signed with a fresh ECDSA key) and Twilio status callbacks (signed). Afterwards it counts
what the ledger holds and checks it against what was sent: every event must be there, once.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "examples"))

from clarion.campaign.loader import load_campaign  # noqa: E402
from clarion.engine.plan import plan_run  # noqa: E402
from clarion.ledger import Ledger  # noqa: E402
from clarion.ledger.schema import clicks, events, suppressions  # noqa: E402
from clarion.messages.links import LinkSigner  # noqa: E402
from clarion.messages.render import Renderer  # noqa: E402

PROFILE = os.environ.get("BENCH_PROFILE", "").split()  # e.g. "-m cProfile -o serve.prof"
SECRET = "benchmark-signing-key-0123456789abcdef"
TWILIO_TOKEN = "benchmark-twilio-token"
CAMPAIGN = """\
name: tracking-bench
cta: {url: "https://donate.example.org/bench"}
tracking: {base_url: "https://go.example.org"}
audience: {contacts: contacts.csv}
experiment:
  holdout: 0
  variants: [{id: a, vars: {h: "Chip in."}}, {id: b, vars: {h: "Join us."}}]
channels:
  email: {provider: sendgrid, from: "Team <team@example.org>", subject: "{{ variant.h }}",
          postal_address: "Team, PO Box 1, Springfield",
          body: "<p>{{ variant.h }} <a href='{{ link }}'>Give</a></p>
            <p><a href='{{ unsubscribe_url }}'>Unsubscribe</a> {{ postal_address }}</p>"}
  sms: {provider: twilio, from: "+15005550006", quiet_hours: null,
        body: "{{ variant.h }} {{ link }} Reply STOP to opt out"}
"""


@contextlib.contextmanager
def scratch_schema(url: str | None) -> Iterator[str | None]:
    """On PostgreSQL, a fresh schema for the run, dropped after: the database is left as it was."""
    if not url or not url.startswith("postgresql"):
        yield url
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"clarion_bench_{os.getpid()}_{int(time.time())}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield (
            make_url(url)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), to tell server cost from client cost."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(folder: Path, contacts: int, url: str) -> tuple[str, Renderer, list[tuple[int, str]]]:
    import csv

    from make_contacts import generate

    rows = generate("debate-night", contacts, seed=11)
    with (folder / "contacts.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    (folder / "campaign.yaml").write_text(CAMPAIGN)
    ledger = Ledger(url)
    ledger.migrate()
    run_id = f"tracking-bench-{int(time.time())}"
    loaded = load_campaign(folder / "campaign.yaml")
    plan_run(ledger, loaded, run_id)
    arms = ledger.arms_of(run_id, range(contacts))
    ledger.close()
    renderer = Renderer(loaded, LinkSigner(SECRET.encode()), run_id)
    return run_id, renderer, sorted(arms.items())


TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"


def make_jobs(
    renderer: Renderer, arms: list[tuple[int, str]], batch: int, forged: float = 0.0
) -> list[tuple[str, object]]:
    jobs: list[tuple[str, object]] = []
    rng = random.Random(9)
    for seq, arm in arms:
        if arm == "holdout":
            continue
        jobs.append(("click", renderer.token("email", arm, seq)))
        if seq % 2 == 0:
            jobs.append(("click", renderer.token("sms", arm, seq)))
        if seq % 10 == 0:
            jobs.append(("click", renderer.token("email", arm, seq)))  # a repeat
        jobs.append(("twilio", (renderer.token("sms", arm, seq), f"SM{seq:032d}")))
    events_list = [
        {
            "event": "delivered",
            "sg_event_id": f"e{seq}",
            "timestamp": 1795000000,
            "email": "x@example.org",
            "clarion_token": renderer.token("email", arm, seq),
        }
        for seq, arm in arms
        if arm != "holdout"
    ]
    for start in range(0, len(events_list), batch):
        jobs.append(("sendgrid", events_list[start : start + batch]))
    # forged and malformed requests mixed in: altered tokens, bad signatures, garbage bodies
    genuine = len(jobs)
    for i in range(int(genuine * forged)):
        seq, arm = arms[i % len(arms)]
        token = renderer.token("email", arm if arm != "holdout" else "a", seq)
        jobs.append(
            [
                ("forged-click", token[:-2] + ("AA" if not token.endswith("AA") else "BB")),
                ("forged-click", "".join(rng.choice(TOKEN_ALPHABET) for _ in range(27))),
                ("forged-twilio", (token, f"SMforged{i:026d}")),
                ("forged-sendgrid", [{"event": "unsubscribe", "email": f"victim{i}@example.org"}]),
            ][i % 4]
        )
    random.Random(5).shuffle(jobs)
    return jobs


def drive(
    port: int, jobs: list[tuple[str, object]], key: ec.EllipticCurvePrivateKey, concurrency: int
) -> dict[str, float]:
    """Threads with keep-alive connections (stdlib: httpx's async pool is slower than the server)."""
    base = f"http://127.0.0.1:{port}"
    validator = RequestValidator(TWILIO_TOKEN)
    latencies: list[float] = []
    counted = {"events": 0, "requests": 0, "errors": 0, "forged": 0, "forged_accepted": 0}
    lock = threading.Lock()
    pending = list(jobs)

    def send(conn: http.client.HTTPConnection, kind: str, payload: object) -> tuple[bool, int]:
        if kind.startswith("forged-"):
            return forge(conn, kind, payload), 0
        if kind == "click":
            t0 = time.perf_counter()
            conn.request("GET", f"/c/{payload}")
            response = conn.getresponse()
            response.read()
            with lock:
                latencies.append(time.perf_counter() - t0)
            return response.status == 302, 1
        if kind == "twilio":
            assert isinstance(payload, tuple)
            token, sid = payload
            path = f"/webhooks/twilio?ct={token}"
            params = {"MessageSid": sid, "MessageStatus": "delivered"}
            headers = {
                "X-Twilio-Signature": validator.compute_signature(base + path, params),
                "Content-Type": "application/x-www-form-urlencoded",
            }
            conn.request("POST", path, body=urlencode(params), headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status == 200, 1
        body = json.dumps(payload).encode()
        stamp = str(int(time.time()))
        signature = base64.b64encode(key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
        headers = {
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": signature,
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        }
        conn.request("POST", "/webhooks/sendgrid", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status == 200, len(payload)  # type: ignore[arg-type]

    def forge(conn: http.client.HTTPConnection, kind: str, payload: object) -> bool:
        """A forged request; True when the service refused it (4xx) and so recorded nothing."""
        if kind == "forged-click":
            conn.request("GET", f"/c/{payload}")
        elif kind == "forged-twilio":
            assert isinstance(payload, tuple)
            token, sid = payload
            params = urlencode({"MessageSid": sid, "MessageStatus": "delivered"})
            headers = {
                "X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl",
                "Content-Type": "application/x-www-form-urlencoded",
            }
            conn.request("POST", f"/webhooks/twilio?ct={token}", body=params, headers=headers)
        else:
            body = json.dumps(payload).encode()
            stamp = str(int(time.time()))
            other = ec.generate_private_key(ec.SECP256R1())  # signed, but not with SendGrid's key
            signed = other.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
            signature = base64.b64encode(signed).decode()
            headers = {
                "Content-Type": "application/json",
                "X-Twilio-Email-Event-Webhook-Signature": signature,
                "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
            }
            conn.request("POST", "/webhooks/sendgrid", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        with lock:
            counted["forged"] += 1
            counted["forged_accepted"] += 0 if 400 <= response.status < 500 else 1
        return 400 <= response.status < 500

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                if not pending:
                    return
                kind, payload = pending.pop()
            ok, n = send(conn, kind, payload)
            with lock:
                counted["requests"] += 1
                if not kind.startswith("forged-"):
                    counted["events" if ok else "errors"] += n if ok else 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    latencies.sort()
    return {
        "wall": wall,
        "events": counted["events"],
        "requests": counted["requests"],
        "errors": counted["errors"],
        "forged": counted["forged"],
        "forged_accepted": counted["forged_accepted"],
        "clicks": len(latencies),
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch", type=int, default=100, help="events per SendGrid webhook request")
    parser.add_argument("--database-url", default=None)
    parser.add_argument(
        "--forged", type=float, default=0.1, help="forged requests mixed in, as a share of the genuine ones"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, scratch_schema(args.database_url) as database_url:
        folder = Path(tmp)
        url = database_url or f"sqlite:///{folder / 'clarion.db'}"
        run_id, renderer, arms = prepare(folder, args.contacts, url)
        key = ec.generate_private_key(ec.SECP256R1())
        public = base64.b64encode(
            key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ).decode()
        port = free_port()
        env = {
            **os.environ,
            "CLARION_HOME": str(folder),
            "CLARION_SECRET_KEY": SECRET,
            "CLARION_DATABASE_URL": url,
            "SENDGRID_WEBHOOK_PUBLIC_KEY": public,
            "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
            "CLARION_CONVERSION_SECRET": "x" * 32,
            # one load generator is one client address: per-client limits would stop it at once
            "CLARION_RATE_LIMIT": "off",
            "CLARION_REJECT_LIMIT": "off",
        }
        server = subprocess.Popen(
            [sys.executable, *PROFILE, "-m", "clarion", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    if httpx.get(f"{base}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            jobs = make_jobs(renderer, arms, args.batch, args.forged)
            cpu_before = cpu_seconds(server.pid)
            figures = drive(port, jobs, key, args.concurrency)
            figures["server_cpu"] = cpu_seconds(server.pid) - cpu_before
        finally:
            server.send_signal(signal.SIGINT)  # uvicorn's graceful stop (and the profile, if any, is written)
            server.wait(timeout=30)
        ledger = Ledger(url)
        with ledger.engine.connect() as conn:
            click_rows = conn.execute(
                select(func.count(), func.sum(clicks.c.count)).where(clicks.c.run_id == run_id)
            ).one()
            event_rows = conn.execute(
                select(func.count()).select_from(events).where(events.c.run_id == run_id)
            ).scalar()
            forged_suppressions = conn.execute(select(func.count()).select_from(suppressions)).scalar()
        reached = [a for a in arms if a[1] != "holdout"]
        expected_unique = len(reached) + sum(1 for seq, _ in reached if seq % 2 == 0)
        expected_total = expected_unique + sum(1 for seq, _ in reached if seq % 10 == 0)
        expected_events = 2 * len(reached)
    backend = "PostgreSQL" if "postgresql" in url else "SQLite"
    print(f"backend: {backend}; contacts: {args.contacts:,}; concurrency: {args.concurrency}")
    print(
        f"requests: {figures['requests']:,} ({figures['errors']} errors), "
        f"{figures['events']:,} events "
        f"in {figures['wall']:.1f} s: {figures['events'] / figures['wall']:,.0f} events/s, "
        f"{figures['requests'] / figures['wall']:,.0f} requests/s"
    )
    cpu = figures["server_cpu"]
    print(
        f"server process CPU: {cpu:.1f} s for {figures['events']:,} events = "
        f"{figures['events'] / cpu:,.0f} events per CPU-second (the load generator shares the cores)"
    )
    print(
        f"/c/{{token}} latency over {figures['clicks']:,} clicks: p50 {figures['p50_ms']:.1f} ms, "
        f"p99 {figures['p99_ms']:.1f} ms"
    )
    print(
        f"forged requests: {figures['forged']:,} mixed in, {figures['forged_accepted']} accepted, "
        f"{forged_suppressions} forged unsubscribes recorded"
    )
    ok = (
        click_rows[0] == expected_unique
        and click_rows[1] == expected_total
        and event_rows == expected_events
        and figures["forged_accepted"] == 0
        and forged_suppressions == 0
    )
    print(
        f"ledger: {click_rows[0]:,} unique clicks (expected {expected_unique:,}), "
        f"{click_rows[1]:,} clicks in all "
        f"(expected {expected_total:,}), {event_rows:,} provider events (expected {expected_events:,}): "
        f"{'all recorded once' if ok else 'MISMATCH'}"
    )
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
