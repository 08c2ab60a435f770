"""What a provider answered is written to the ledger even when something fails after the answer came: a
shard's Redis going away, a helper's launch gone. Left in flight, a taken email would be listed `uncertain`
on resume (and sent again by an operator who resends the uncertain), its message id lost."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from clarion.campaign.loader import LoadedCampaign, load_campaign
from clarion.engine.context import RunContext
from clarion.engine.plan import Batch, plan_run
from clarion.engine.send import send_batch
from clarion.engine.shared import RedisCoordination
from clarion.ledger import Ledger, SendRow, SendState
from clarion.sandbox import FaultConfig, Sandbox
from tests.conftest import Forwarder
from tests.flows.conftest import CAMPAIGN, write_campaign

EMAIL_ONLY = CAMPAIGN[: CAMPAIGN.index("  x:\n")] + CAMPAIGN[
    CAMPAIGN.index("  email:\n") : CAMPAIGN.index("  sms:\n")
].replace("    subject:", "    batch_size: 1000\n    subject:")


def test_a_requests_answer_is_written_when_redis_goes_away_while_it_is_at_the_provider(
    tmp_path: Path, providers: Sandbox, redis_url: str
) -> None:
    """A shard's batch: its request of emails is at SendGrid (answering after a second) when the shard's
    Redis connection dies. The batch fails with Redis' error, but every email SendGrid took is `sent` in
    the ledger with its message id, none left in flight."""
    path = write_campaign(tmp_path, 80, EMAIL_ONLY)
    loaded = load_campaign(path)
    relay = Forwarder(redis_url)
    run_id = "kept-redis-cut"
    with Ledger.open() as ledger:
        run = RunContext(ledger, loaded, run_id, coordination=RedisCoordination(relay.url, launch=run_id))
        batch = next(b for b in plan_run(ledger, loaded, run_id).batches if not b.opening)
        providers.set_faults("sendgrid", FaultConfig(latency_ms=1000))
        failed: list[BaseException] = []

        def send() -> None:
            try:
                send_batch(run, batch)
            except BaseException as exc:  # what the batch raised is the test's to judge
                failed.append(exc)

        sender = threading.Thread(target=send)
        sender.start()
        deadline = time.monotonic() + 20
        while SendState.IN_FLIGHT not in {r.state for r in ledger.sends(run_id, "email")}:
            assert time.monotonic() < deadline, "the batch never claimed its emails"
            time.sleep(0.02)
        time.sleep(0.3)  # the request has left: SendGrid holds its answer for a second
        relay.cut()
        sender.join(30)
        assert not sender.is_alive()
        rows = [r for r in ledger.sends(run_id, "email") if r.batch == batch.number]

    assert len(failed) == 1 and isinstance(failed[0], redis.RedisError), failed
    emails = providers.messages("sendgrid")
    assert len(emails) == len({m["to"] for m in emails}) == len(rows) == batch.size > 0
    assert {r.state for r in rows} == {SendState.SENT}, "the provider's answer was lost"
    assert all(r.provider_id for r in rows)


def test_a_claim_whose_coordination_fails_gives_its_emails_back(
    tmp_path: Path, providers: Sandbox, redis_url: str
) -> None:
    """A shard's batch of two requests: the second's claim commits (with the first's results), then Redis
    fails as the first request's end is counted (a worker's network gone). Nothing of the second was sent:
    its emails go back to planned, for whoever sends the batch next, instead of waiting in flight to be
    listed uncertain; the first's are sent, once."""
    path = write_campaign(tmp_path, 1_600, EMAIL_ONLY.replace("batch_size: 1000", "batch_size: 2000"))
    loaded = load_campaign(path)
    relay = Forwarder(redis_url, cut_at=b"\r\nDECRBY\r\n")  # leave_request (redis-py's decr)
    rows = _batch_until_redis_fails(loaded, "kept-claim-released", "email", relay, lambda b: not b.opening)

    emails = providers.messages("sendgrid")
    states = Counter(r.state for r in rows)
    assert states == {SendState.SENT: 1_000, SendState.PLANNED: len(rows) - 1_000}, states
    assert len(emails) == len({m["to"] for m in emails}) == 1_000


SMS_ONLY = (
    CAMPAIGN[: CAMPAIGN.index("  x:\n")]
    + CAMPAIGN[CAMPAIGN.index("  sms:\n") :]
    + "    pacing: {messages_per_second: 400}\n"
)


def test_texts_made_before_a_shards_redis_fails_are_kept_and_the_rest_planned_again(
    tmp_path: Path, providers: Sandbox, redis_url: str
) -> None:
    """A shard's paced texts: each claim holds a dozen (what the pace lets a thread send in a quarter
    second), each text waits for its slot in Redis. Redis goes away at the sixth slot: the five texts
    Twilio took are `sent`, the rest of the claim planned again (none went out), nothing left in flight."""
    path = write_campaign(tmp_path, 60, SMS_ONLY)
    loaded = load_campaign(path)
    relay = Forwarder(redis_url, cut_at=b":slot:sms:m", after=5)  # the pacing slot of each text
    rows = _batch_until_redis_fails(loaded, "kept-texts", "sms", relay, lambda b: b.size > 12)

    texts = providers.messages("twilio")
    states = Counter(r.state for r in rows)
    assert states == {SendState.SENT: 5, SendState.PLANNED: len(rows) - 5}, states
    assert len(texts) == len({m["to"] for m in texts}) == 5
    assert all(r.provider_id for r in rows if r.state is SendState.SENT)


def _batch_until_redis_fails(
    loaded: LoadedCampaign, run_id: str, channel: str, relay: Forwarder, pick: Callable[[Batch], bool]
) -> list[SendRow]:
    """Plan the run and send its first batch that `pick` takes, through a coordination whose Redis is
    `relay`, which cuts itself on the way: the batch must fail with Redis' error. Its ledger rows after."""
    with Ledger.open() as ledger:
        run = RunContext(ledger, loaded, run_id, coordination=RedisCoordination(relay.url, launch=run_id))
        batch = next(b for b in plan_run(ledger, loaded, run_id).batches if pick(b))
        with pytest.raises(redis.RedisError):
            send_batch(run, batch)
        return [r for r in ledger.sends(run_id, channel) if r.batch == batch.number]
