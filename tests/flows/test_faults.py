"""Providers misbehaving at once: 20% of calls fail (5xx) or time out, and 429 bursts say when to come back.

The campaign completes; every contact is sent exactly once per channel, or reported failed or uncertain with
the reason; retries are bounded and wait as long as the provider asked. (`benchmarks/crash_soak.py --faults 0.2`
adds kill -9 and resume to the same faults, at 20,000 contacts.)"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from clarion.flows.launch import launch
from clarion.ledger import Ledger, SendState
from clarion.sandbox import FaultConfig, Sandbox
from tests.flows.conftest import CAMPAIGN, write_campaign

pytestmark = pytest.mark.usefixtures("prefect_server")

MAX_ATTEMPTS = 6
RETRY_AFTER = 1.0
FAULTS = {
    "failure_rate": 0.14,
    "timeout_rate": 0.06,
    "stall_seconds": 3,
    "rate_limit_every": 25,
    "rate_limit_burst": 2,
    "retry_after": RETRY_AFTER,
}
RETRY = f"    retry: {{max_attempts: {MAX_ATTEMPTS}, base_delay: 0.05, max_delay: 0.5}}\n"


def _twilio_to(body: str) -> str:
    return parse_qs(body).get("To", [""])[0]


def test_a_campaign_survives_failures_timeouts_and_rate_limits(tmp_path: Path, providers: Sandbox) -> None:
    for seed, provider in enumerate(("sendgrid", "twilio", "x")):
        providers.set_faults(provider, FaultConfig(**FAULTS, seed=seed))  # type: ignore[arg-type]
    text = CAMPAIGN.replace('    body: "<p>', RETRY + '    batch_size: 40\n    body: "<p>')
    text = text.replace('Reply STOP to opt out"', 'Reply STOP to opt out"\n' + RETRY.rstrip("\n"))
    text = text.replace(
        '    body: "{{ variant.headline }} {{ link }}"',
        RETRY + '    body: "{{ variant.headline }} {{ link }}"',
    )
    path = write_campaign(tmp_path, 400, text)

    result = launch(str(path), "faults-20")

    rows = list(Ledger.open().sends("faults-20"))
    states = Counter(r.state for r in rows)
    assert states[SendState.PLANNED] == states[SendState.IN_FLIGHT] == 0, states  # nothing left behind
    for row in rows:
        if row.state in (SendState.FAILED, SendState.UNCERTAIN, SendState.SKIPPED):
            assert row.reason, f"{row} has no reason"
    assert states[SendState.UNCERTAIN] > 0 and states[SendState.SENT] > 0  # the faults really happened
    messages = providers.messages()
    for provider in ("sendgrid", "twilio"):
        per_address = Counter(m["to"] for m in messages if m["provider"] == provider)
        assert max(per_address.values()) == 1, f"{provider} delivered to someone twice"
    delivered = {m["provider_id"] for m in messages}
    assert {r.provider_id for r in rows if r.state is SendState.SENT} <= delivered
    sent_or_unsure = sum(1 for r in rows if r.state in (SendState.SENT, SendState.UNCERTAIN))
    assert len([m for m in messages if m["provider"] != "x"]) <= sent_or_unsure
    assert result.status == "completed", result.errors  # no channel gave up

    # bounded retries, and every 429's Retry-After honoured before that recipient was tried again
    attempts: defaultdict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for request in providers.requests("twilio"):
        if request["path"].endswith("/Messages.json"):
            at = datetime.fromisoformat(request["received_at"])
            attempts[_twilio_to(request["body"])].append((at, request["status"]))
    assert attempts and max(len(a) for a in attempts.values()) <= MAX_ATTEMPTS
    limited = 0
    for tries in attempts.values():
        for (at, status), (then, _) in itertools.pairwise(tries):
            if status == 429:
                limited += 1
                assert (then - at).total_seconds() >= RETRY_AFTER - 0.05
    assert limited > 0


def test_x_posts_wait_for_the_rate_limit_reset(tmp_path: Path, providers: Sandbox) -> None:
    """X says when its window resets (x-rate-limit-reset, epoch seconds): the next post waits until then."""
    providers.set_faults("x", FaultConfig(rate_limit_every=1, rate_limit_burst=1, retry_after=2, seed=0))
    path = write_campaign(tmp_path, 20)

    launch(str(path), "faults-x")

    posts = [r for r in providers.requests("x") if r["path"] == "/2/tweets"]
    statuses = [r["status"] for r in posts]
    assert statuses.count(429) >= 1 and statuses.count(201) == 2, statuses
    for refused, after in itertools.pairwise(posts):
        if refused["status"] == 429:
            gap = datetime.fromisoformat(after["received_at"]) - datetime.fromisoformat(
                refused["received_at"]
            )
            assert gap.total_seconds() >= 1.0  # the reset is rounded up to a whole second, 2 s away
    assert len(providers.messages("x")) == 2
