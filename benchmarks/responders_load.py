"""Responders under load: inbound text to reply at the sandbox, p50/p95, nothing lost, nothing answered twice.

    .venv/bin/python benchmarks/responders_load.py                  # 200 inbound/s for 60 s, 10% redelivered
    .venv/bin/python benchmarks/responders_load.py --rate 50 --seconds 10
    .venv/bin/python benchmarks/responders_load.py --matching       # rule matching cost only

Starts the provider sandbox (`clarion sandbox`) and the tracking service answering with
examples/register-by-zip (`clarion serve --responders`) in processes of their own, then posts signed
inbound texts (Twilio's form, X-Twilio-Signature) at --rate per second from this process, each from a new
number: zip codes, VOLUNTEER and questions no rule answers. A share of them (--redeliver) is posted again
with the same MessageSid, as Twilio does when a webhook times out. The latency of a message is from the
start of its POST to the moment the sandbox accepted the reply (Twilio's REST API call), both on this
machine's clock. Afterwards: every distinct message must have exactly one reply.

`--matching` measures the matcher alone: 500 keyword rules (1,000 words) and 20 patterns, a mix of
messages (compliance words, keywords, zip codes, patterns, misses), microseconds per message.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from clarion.channels.twilio.emulator import ACCOUNT_SID, AUTH_TOKEN, inbound_sms  # noqa: E402
from clarion.channels.twilio.webhooks import sign  # noqa: E402

RESPONDER = REPO / "examples/register-by-zip/responder.yaml"
NUMBER = "+15005550006"
ZIPS = ["94110", "10001", "60614", "73301", "02134", "98101", "30301", "80202", "33101", "20001", "85001"]
TEXTS = [*ZIPS, "VOLUNTEER", "what is this?", "my zip is 19103", "Hello"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def senders(n: int) -> list[str]:
    """n distinct, possible US numbers (area codes with 555-01xx style lines)."""
    areas = ["202", "212", "312", "415", "512", "617", "713", "206", "305", "404", "602", "303"]
    found = []
    for i in range(n):
        area = areas[i % len(areas)]
        found.append(f"+1{area}{200 + (i // len(areas)) // 10000:03d}{(i // len(areas)) % 10000:04d}")
    return found


async def drive(
    url: str, sandbox: str, rate: float, seconds: float, redeliver: float, seed: int
) -> dict[str, float]:
    rng = random.Random(seed)
    total = int(rate * seconds)
    numbers = senders(total)
    webhook = f"{url}/webhooks/twilio/inbound"
    started: dict[str, float] = {}
    statuses: dict[int, int] = {}
    accepted: set[str] = set()  # senders whose message the webhook acknowledged (200)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def post(params: dict[str, str]) -> None:
            signature = sign(AUTH_TOKEN, webhook, params)
            try:
                answer = await client.post(webhook, data=params, headers={"X-Twilio-Signature": signature})
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
                if answer.status_code == 200:
                    accepted.add(params["From"])
            except httpx.HTTPError:
                statuses[0] = statuses.get(0, 0) + 1  # timed out: Twilio would deliver it again

        async def one(i: int) -> None:
            params = inbound_sms(numbers[i], rng.choice(TEXTS), NUMBER, "SM" + secrets.token_hex(16))
            started[numbers[i]] = time.time()
            await post(params)
            if rng.random() < redeliver:  # Twilio retries a webhook it thinks timed out: same MessageSid
                await asyncio.sleep(rng.uniform(0.05, 1.0))
                await post(params)

        t0 = time.perf_counter()
        tasks = []
        for i in range(total):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        sent_for = time.perf_counter() - t0
    replies = await collect(sandbox, total, timeout=120)
    return report(started, accepted, replies, statuses, sent_for, total, rate, seconds)


async def collect(sandbox: str, expected: int, timeout: float) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    last = 0
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=30) as client:
        while time.monotonic() < deadline:
            page = (
                await client.get(f"{sandbox}/_sandbox/messages", params={"since_id": last, "limit": 5000})
            ).json()
            found += page
            if page:
                last = int(page[-1]["id"])
            if len(found) >= expected and not page:
                await asyncio.sleep(2)  # anything answered twice arrives now
                found += (await client.get(f"{sandbox}/_sandbox/messages", params={"since_id": last})).json()
                break
            if not page:
                await asyncio.sleep(0.5)
    return found


def report(
    started: dict[str, float],
    accepted: set[str],
    replies: list[dict[str, object]],
    statuses: dict[int, int],
    sent_for: float,
    total: int,
    rate: float,
    seconds: float,
) -> dict[str, float]:
    per_sender: dict[str, int] = {}
    latencies = []
    for reply in replies:
        to = str(reply["to"])
        per_sender[to] = per_sender.get(to, 0) + 1
        if per_sender[to] == 1 and to in started:
            at = datetime.fromisoformat(str(reply["received_at"])).timestamp()
            latencies.append((at - started[to]) * 1000)
    latencies.sort()
    lost = sum(1 for n in accepted if n not in per_sender)  # acknowledged, never answered
    twice = sum(1 for n in per_sender.values() if n > 1)

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else float("nan")

    print(
        f"inbound: {total:,} distinct messages at {rate:g}/s for {seconds:g} s "
        f"(offered in {sent_for:.1f} s); webhook answers {dict(sorted(statuses.items()))}"
    )
    print(
        f"replies at the sandbox: {len(replies):,} for {len(accepted):,} acknowledged messages; lost "
        f"(acknowledged, never answered) {lost}; answered twice {twice}"
    )
    print(
        f"inbound -> reply latency: p50 {pct(0.5):.0f} ms, p95 {pct(0.95):.0f} ms, p99 {pct(0.99):.0f} ms, "
        f"max {latencies[-1] if latencies else float('nan'):.0f} ms"
    )
    return {"p50": pct(0.5), "p95": pct(0.95), "lost": lost, "twice": twice}


def matching() -> None:
    """Cost per message of the matcher with 500 keyword rules (1,000 words) and 20 patterns."""
    from clarion.responders.rules import KeywordRule, Matcher, PatternRule

    keywords = [KeywordRule(f"kw{i}", (f"word{i}", f"alias{i}")) for i in range(500)]
    patterns = [PatternRule("zip", r"(?:^|\D)(?P<zip>\d{5})(?:-\d{4})?(?:\D|$)")]
    patterns += [
        PatternRule(
            f"p{i}",
            rf"\bremind(?:er)? me (?:about )?topic{i}\b(?: (?P<when>\d{{1,2}}(?::\d\d)? ?(?:am|pm)))?",
        )
        for i in range(1, 20)
    ]
    t0 = time.perf_counter()
    matcher = Matcher(keywords, patterns, fallback="fallback")
    build = time.perf_counter() - t0
    messages = []
    for i in range(20_000):
        r = i % 10
        messages.append(
            "Stop!"
            if r == 0
            else f"  WORD{i % 500}. "
            if r < 4
            else f"my zip is {94000 + i % 999:05d}"
            if r < 6
            else f"please remind me about topic{1 + i % 19} 7:30 pm"
            if r < 7
            else f"Hi there, I have a question about the election number {i}, can you help me out?"
        )
    t0 = time.perf_counter()
    for m in messages:
        matcher.match(m)
    per = (time.perf_counter() - t0) / len(messages) * 1e6
    misses = [m for m in messages if m.startswith("Hi there")]
    t0 = time.perf_counter()
    for m in misses:
        matcher.match(m)
    miss = (time.perf_counter() - t0) / len(misses) * 1e6
    print(
        f"rule matching, 500 keyword rules (1,000 words) + 20 patterns, {len(messages):,} messages: "
        f"{per:.1f} µs per message ({miss:.1f} µs for a message no rule matches); matcher built in "
        f"{build * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--redeliver", type=float, default=0.10)
    parser.add_argument("--workers", type=int, default=8, help="reply threads of the service (informational)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--matching", action="store_true", help="only the matching benchmark")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout` stops it: still stop the servers
    if args.matching:
        matching()
        return
    home = tempfile.mkdtemp(prefix="clarion-responders-bench-")
    sandbox_port, service_port = free_port(), free_port()
    sandbox_url, service_url = f"http://127.0.0.1:{sandbox_port}", f"http://127.0.0.1:{service_port}"
    clarion = str(REPO / ".venv/bin/clarion")
    env = {
        **os.environ,
        "CLARION_HOME": home,
        "CLARION_SECRET_KEY": "responders-benchmark-signing-key-0123456789",
        "CLARION_RATE_LIMIT": "off",
        "CLARION_REJECT_LIMIT": "off",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "CLARION_TWILIO_URL": sandbox_url,
        "CLARION_X_URL": sandbox_url,
        "X_ACCESS_TOKEN": "sandbox-x-token",
        "X_CONSUMER_SECRET": "sandbox-x-consumer-secret",
    }
    for name in ("TWILIO_EDGE", "TWILIO_REGION", "X_API_KEY", "X_API_SECRET", "X_ACCESS_TOKEN_SECRET"):
        env.pop(name, None)
    log = open(Path(home) / "processes.log", "w")  # noqa: SIM115
    sandbox = subprocess.Popen(
        [clarion, "sandbox", "--port", str(sandbox_port)], env=env, stdout=log, stderr=log
    )
    profile = os.environ.get("BENCH_PROFILE", "").split()  # e.g. "py-spy record -o serve.svg --"
    service = subprocess.Popen(
        [*profile, clarion, "serve", "--port", str(service_port), "--responders", str(RESPONDER)],
        env=env,
        stdout=log,
        stderr=log,
    )
    try:
        wait_up(f"{sandbox_url}/_sandbox/health")
        wait_up(f"{service_url}/healthz")
        print(f"sandbox pid {sandbox.pid}, service pid {service.pid}; logs in {home}/processes.log")
        before = {p.pid: cpu_seconds(p.pid) for p in (sandbox, service)}
        asyncio.run(drive(service_url, sandbox_url, args.rate, args.seconds, args.redeliver, args.seed))
        total = int(args.rate * args.seconds)
        used = {p.pid: cpu_seconds(p.pid) - before[p.pid] for p in (sandbox, service)}
        print(
            f"CPU per inbound message: service {used[service.pid] / total * 1000:.2f} ms, "
            f"sandbox {used[sandbox.pid] / total * 1000:.2f} ms (machine shared; load average "
            f"{os.getloadavg()[0]:.1f})"
        )
    finally:
        for process in (service, sandbox):
            process.terminate()
        for process in (service, sandbox):
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()
    matching()


if __name__ == "__main__":
    main()
