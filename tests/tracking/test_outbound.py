"""Outbound events (webhooks_out): every event of a run, signed, delivered once per event id per endpoint,
retried with backoff against a failing endpoint (which never holds up another), buried after the last try
and revived by `retry`; opt-outs carry the address so a CRM can sync them. The endpoint is a fake on the
wire (httpx's MockTransport), which checks the signature exactly as a receiver would."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from clarion.base import signing
from clarion.base.settings import ClarionSettings
from clarion.campaign.loader import load_campaign
from clarion.engine.plan import plan_run
from clarion.ledger import Click, Conversion, Ledger, SendState, Settlement, Suppression
from clarion.tracking.outbound import EVENT_ID_HEADER, backoff, deliver, fill
from tests.conftest import CAMPAIGN, CampaignDir

RUN = "test-appeal-20261203t080000-cd34"
CRM = "https://crm.example.org/hooks/clarion"
OTHER = "https://other.example.org/in"
SECRET = "crm-secret-for-tests-0000000000"

HOOKS = f"""\
webhooks_out:
  - url: {CRM}
    secret: ${{CRM_SECRET}}
  - url: {OTHER}
    events: [converted]
    secret: ${{OTHER_SECRET}}
"""


class Endpoint:
    """A receiver: verifies the signature, remembers event ids, fails while told to."""

    def __init__(self) -> None:
        self.seen: list[dict[str, object]] = []
        self.failing: set[str] = set()
        self.requests: Counter[str] = Counter()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        self.requests[url] += 1
        if url in self.failing:
            return httpx.Response(503)
        secret = SECRET if url == CRM else "other-secret-0000000000000000000"
        signing.verify(secret.encode(), request.content, request.headers, what="event")  # raises if forged
        event = json.loads(request.content)
        assert request.headers[EVENT_ID_HEADER] == event["id"]
        self.seen.append({"url": url, **event})
        return httpx.Response(204)


@pytest.fixture
def ledger(campaign_dir: CampaignDir) -> Ledger:
    path = campaign_dir.campaign(CAMPAIGN + HOOKS)
    store = Ledger(ClarionSettings().ledger_url())
    store.migrate()
    plan_run(store, load_campaign(path), RUN)
    return store


ENV = {"CRM_SECRET": SECRET, "OTHER_SECRET": "other-secret-0000000000000000000"}


def activity(ledger: Ledger) -> None:
    """Two emails sent, a click, a gift and its refund, an unsubscribe."""
    ledger.begin(RUN, "email", ["c-001", "c-002"])
    ledger.settle(RUN, "email", [Settlement(r, SendState.SENT, f"sg-{r}") for r in ("c-001", "c-002")])
    now = datetime.now(UTC)
    gift = Conversion(RUN, "actblue", "AB1:1", "a", 2500, "USD", now, "email", 0)
    refund = Conversion(RUN, "actblue", "AB1:1:refund", "a", -2500, "USD", now, "email", 0, "refund", "AB1:1")
    ledger.record(click_rows=[Click(RUN, "email", "a", 0, now)], conversion_rows=[gift, refund])
    ledger.suppress([Suppression("email", "ben@example.org", "unsubscribe_link", "tracking:/u")])


def test_every_event_is_delivered_signed_once_per_endpoint(ledger: Ledger) -> None:
    activity(ledger)
    endpoint = Endpoint()
    with httpx.Client(transport=httpx.MockTransport(endpoint)) as client:
        assert fill(ledger) == 8  # CRM: 2 sent, 1 clicked, 2 converted, 1 unsubscribed; other: 2 converted
        assert fill(ledger) == 0  # read twice: nothing new
        done = deliver(ledger, client, environ=ENV, max_attempts=5)
        assert (done.delivered, done.failed) == (8, 0)
        assert deliver(ledger, client, environ=ENV, max_attempts=5).delivered == 0
    kinds = Counter((e["url"], e["type"]) for e in endpoint.seen)
    assert kinds == {
        (CRM, "sent"): 2,
        (CRM, "clicked"): 1,
        (CRM, "converted"): 2,
        (CRM, "unsubscribed"): 1,
        (OTHER, "converted"): 2,
    }
    assert len({(e["url"], e["id"]) for e in endpoint.seen}) == 8
    unsubscribed = next(e for e in endpoint.seen if e["type"] == "unsubscribed")
    assert unsubscribed["address"] == "ben@example.org" and unsubscribed["reason"] == "unsubscribe_link"
    refund = next(e for e in endpoint.seen if e["type"] == "converted" and e["kind"] == "refund")
    assert refund["amount"] == "-25.00" and refund["refers_to"] == "AB1:1" and refund["contact"] == "c-001"
    sent = next(e for e in endpoint.seen if e["type"] == "sent")
    assert sent["run"] == RUN and sent["campaign"] == "test-appeal" and "email" not in sent


def test_a_failing_endpoint_is_retried_with_backoff_and_never_delays_another(ledger: Ledger) -> None:
    activity(ledger)
    endpoint = Endpoint()
    endpoint.failing.add(CRM)
    with httpx.Client(transport=httpx.MockTransport(endpoint)) as client:
        fill(ledger)
        clock = [datetime.now(UTC) + timedelta(seconds=1)]
        first = deliver(ledger, client, environ=ENV, max_attempts=3, now=lambda: clock[0])
        # one try at the dead endpoint per round; the other endpoint gets everything at once
        assert endpoint.requests[CRM] == 1 and endpoint.requests[OTHER] == 2
        assert (first.delivered, first.failed, first.skipped) == (2, 1, 5)
        assert deliver(ledger, client, environ=ENV, max_attempts=3, now=lambda: clock[0]).delivered == 0
        assert endpoint.requests[CRM] == 1  # the endpoint's events all wait for its backoff
        clock[0] += timedelta(hours=7)
        deliver(ledger, client, environ=ENV, max_attempts=3, now=lambda: clock[0])
        clock[0] += timedelta(hours=7)
        deliver(ledger, client, environ=ENV, max_attempts=3, now=lambda: clock[0])
        assert {i.state for i in ledger.outbox_items(limit=100) if i.url == CRM} >= {"dead"}
        endpoint.failing.clear()
        assert ledger.outbox_requeue(url=CRM) >= 1
        for _ in range(10):
            clock[0] += timedelta(hours=7)
            deliver(ledger, client, environ=ENV, max_attempts=3, now=lambda: clock[0])
    delivered = [e for e in endpoint.seen if e["url"] == CRM]
    assert len(delivered) == len({e["id"] for e in delivered}) == 6  # each event once, none lost


def test_without_its_secret_an_endpoint_gets_nothing_and_the_event_waits(ledger: Ledger) -> None:
    activity(ledger)
    endpoint = Endpoint()
    with httpx.Client(transport=httpx.MockTransport(endpoint)) as client:
        fill(ledger)
        done = deliver(ledger, client, environ={"OTHER_SECRET": ENV["OTHER_SECRET"]}, max_attempts=5)
    assert endpoint.requests[CRM] == 0 and done.failed == 1
    waiting = [i for i in ledger.outbox_items(state="pending", limit=100) if i.url == CRM]
    assert any("CRM_SECRET" in (i.last_error or "") for i in waiting)


def test_backoff_doubles_from_30_seconds_up_to_6_hours() -> None:
    assert backoff(1, rng=lambda: 0.5) == pytest.approx(30)
    assert backoff(3, rng=lambda: 0.5) == pytest.approx(120)
    assert backoff(30, rng=lambda: 0.5) == pytest.approx(6 * 3600)


def test_a_secret_written_in_the_campaign_file_is_refused(campaign_dir: CampaignDir) -> None:
    from clarion.base.errors import CampaignInvalid

    path: Path = campaign_dir.campaign(CAMPAIGN + HOOKS.replace("${CRM_SECRET}", "hunter2-the-real-secret"))
    with pytest.raises(CampaignInvalid) as caught:
        load_campaign(path)
    message = str(caught.value.problems[0])
    assert "webhooks_out" in message and "environment variable" in message and "hunter2" not in message


def test_logs_and_tables_show_an_endpoint_without_its_key() -> None:
    from clarion.tracking.outbound import shown

    assert (
        shown("https://user:pw@crm.example.org:8443/in?key=s3cret") == "https://crm.example.org:8443/in?..."
    )
    assert shown(CRM) == CRM


def test_two_deliverers_at_once_post_each_event_once(ledger: Ledger) -> None:
    import threading
    import time as clock

    now = datetime.now(UTC)
    ledger.record(click_rows=[Click(RUN, "x", "a", None, now) for _ in range(40)])  # a post's clicks: 40 rows
    endpoint = Endpoint()

    def slow(request: httpx.Request) -> httpx.Response:
        clock.sleep(0.005)
        return endpoint(request)

    fill(ledger)
    barrier = threading.Barrier(2)

    def work() -> None:
        with httpx.Client(transport=httpx.MockTransport(slow)) as client:
            barrier.wait()
            deliver(ledger, client, environ=ENV, max_attempts=5)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [e["id"] for e in endpoint.seen if e["url"] == CRM]
    assert len(ids) == len(set(ids)) == 40


@pytest.mark.postgres
def test_the_outbox_on_postgresql(campaign_dir: CampaignDir, postgres_url: str) -> None:
    store = Ledger(postgres_url)
    store.migrate()
    try:
        plan_run(store, load_campaign(campaign_dir.campaign(CAMPAIGN + HOOKS)), RUN)
        activity(store)
        endpoint = Endpoint()
        with httpx.Client(transport=httpx.MockTransport(endpoint)) as client:
            assert fill(store) == 8 and fill(store) == 0
            assert deliver(store, client, environ=ENV, max_attempts=5).delivered == 8
        assert store.gift("actblue", "AB1:1") is not None and store.refunded("actblue", "AB1:1") == -2500
    finally:
        store.close()
