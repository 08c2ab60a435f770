"""Sending one batch: render, claim in the ledger, call the provider, settle. Exactly once, in practice.

The order is what makes a crash harmless: a send is marked in flight (committed) before the provider is
called and settled after. Whatever was in flight when a process died is found in flight on resume and
listed as `uncertain`, never sent again unless asked. Retryable refusals (5xx, 429, connection refused)
are released and retried here with backoff, at most `retry.max_attempts` times; permanent refusals are
settled as failed with the provider's code and message; a request that may have arrived (a read timeout) is
settled as uncertain.

A recipient whose retries are exhausted is settled failed (`retries_exhausted`, with the provider's last
answer). When that happens in STOP_AFTER chunks of a channel in a row, with no chunk in between getting
through, the provider is taken to be down: the channel's remaining sends in this process stay planned (a
resume sends them) instead of hammering a failing provider for hours, and the other channels go on. A flaky
provider (say 20% of calls failing) fails a recipient now and then and never trips it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from clarion import channels
from clarion.base.consent import Kind, Reason, kind_of_channel, suppression_form
from clarion.campaign.contacts import ContactsFile
from clarion.campaign.loader import LoadedCampaign, load_campaign
from clarion.channels.base import Channel, ChannelKind, Outbound, SendOutcome, SendResult
from clarion.engine.pacing import Pacer, backoff, pacer_for
from clarion.engine.plan import Batch
from clarion.engine.schedule import SendWindow, utcnow
from clarion.ledger import Ledger, SendState, Settlement, Suppression
from clarion.messages.render import Renderer, RenderProblem
from clarion.messages.validate import signer

log = logging.getLogger("clarion.engine.send")

MAX_WAIT = 900.0  # never wait longer than this for one retry, whatever a provider asks
STOP_AFTER = 3  # chunks in a row with exhausted retries that mean the provider is down
# Claim this many at once for providers taking one message per request: fewer ledger commits per message,
# against at most this many `uncertain` per in-flight chunk after a crash.
PER_MESSAGE_CLAIM = 25


class ChannelStopped(Exception):
    """A channel's provider kept failing; what is left stays planned for a resume."""


_STOPPED: dict[tuple[str, str], str] = {}
_EXHAUSTED: dict[tuple[str, str], int] = {}  # chunks in a row that exhausted retries, per run and channel
_STOPPED_LOCK = threading.Lock()


def _stop(batch: Batch, why: str) -> None:
    with _STOPPED_LOCK:
        _STOPPED.setdefault((batch.run_id, batch.channel), why)


def _chunk_done(batch: Batch, exhausted: bool, why: str) -> None:
    """Count chunks in a row whose retries ran out; STOP_AFTER of them stop the channel."""
    key = (batch.run_id, batch.channel)
    with _STOPPED_LOCK:
        count = _EXHAUSTED[key] = _EXHAUSTED.get(key, 0) + 1 if exhausted else 0
    if count >= STOP_AFTER:
        _stop(batch, f"{why} ({count} chunks in a row)")


class _RunGate:
    """The moment a run opens: its opening batches meet at a barrier, and every other batch waits for it."""

    def __init__(self, parties: int) -> None:
        self.opened = threading.Event()
        self.barrier = threading.Barrier(max(parties, 1), action=self.opened.set)


_GATES: dict[str, _RunGate] = {}
GATE_TIMEOUT = 10.0  # an opening batch later than this does not hold the others back


def open_gate(run_id: str, parties: int) -> None:
    """Make the run's opening batches wait for each other, then send their first requests together."""
    with _STOPPED_LOCK:
        _GATES[run_id] = _RunGate(parties)


class _Gate:
    """A batch's way through its run's gate, taken once, just before its first provider request.

    Everything slow (reading the ledger, rendering, claiming the first chunk) happens before it, so the
    channels' first requests leave together. An opening batch waits for the other opening batches (and
    passes even when it ends early, so no one waits for it); any other batch waits until they have met."""

    def __init__(self, batch: Batch) -> None:
        with _STOPPED_LOCK:
            self._gate = _GATES.get(batch.run_id)
        self._batch = batch

    def open(self) -> None:
        gate, self._gate = self._gate, None
        if gate is None:
            return
        if not self._batch.opening:
            gate.opened.wait(GATE_TIMEOUT * 2)
            return
        try:
            gate.barrier.wait(GATE_TIMEOUT)
        except threading.BrokenBarrierError:
            gate.opened.set()
            log.warning("run %s: an opening batch was late; the others went ahead", self._batch.run_id)

    def leave(self) -> None:
        """The batch is done: an opening batch that never reached its first request still takes its turn."""
        if self._batch.opening:
            self.open()
        self._gate = None


def close_gate(run_id: str) -> None:
    with _STOPPED_LOCK:
        _GATES.pop(run_id, None)


def restart_channels(run_id: str) -> None:
    """Forget which of a run's channels were stopped: a new launch of the run tries them again."""
    with _STOPPED_LOCK:
        for key in [k for k in _STOPPED if k[0] == run_id]:
            del _STOPPED[key]
        for key in [k for k in _EXHAUSTED if k[0] == run_id]:
            del _EXHAUSTED[key]


def _stopped(batch: Batch) -> str | None:
    return stopped_reason(batch.run_id, batch.channel)


def stopped_reason(run_id: str, channel: str) -> str | None:
    """Why this run's channel was stopped in this process (its provider kept failing), or None."""
    with _STOPPED_LOCK:
        return _STOPPED.get((run_id, channel))


@dataclass
class BatchOutcome:
    batch: Batch
    counts: dict[str, int] = field(default_factory=dict)


@lru_cache(maxsize=8)
def _campaign(path: str, mtime_ns: int) -> LoadedCampaign:
    return load_campaign(path)


def loaded_campaign(path: str) -> LoadedCampaign:
    """The campaign, loaded once per process while the file is unchanged."""
    return _campaign(path, Path(path).stat().st_mtime_ns)


def make_adapter(loaded: LoadedCampaign, channel_id: str) -> Channel:
    config = loaded.campaign.channels[channel_id]
    adapter_cls = channels.get(config.provider)
    settings = adapter_cls.settings_model.load(channel_id)
    return adapter_cls(channel_id, config, settings, callback_base=loaded.campaign.tracking.base_url)


def warm_up(campaign_path: str) -> None:
    """Before the first send: every channel's credentials are present and its SDK is loaded.

    Missing credentials stop the run here, before any channel has sent anything."""
    loaded = loaded_campaign(campaign_path)
    for channel_id in loaded.campaign.channels:
        make_adapter(loaded, channel_id).warm()


def send_batch(
    ledger: Ledger,
    campaign_path: str,
    batch: Batch,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> BatchOutcome:
    """Send what is still planned in one batch; raises ChannelStopped when the provider is down."""
    gate = _Gate(batch)
    try:
        if why := _stopped(batch):
            raise ChannelStopped(why)
        loaded = loaded_campaign(campaign_path)
        adapter = make_adapter(loaded, batch.channel)
        adapter.warm()
        return _send_pending(ledger, loaded, adapter, batch, gate, sleep)
    finally:
        gate.leave()


def _send_pending(
    ledger: Ledger,
    loaded: LoadedCampaign,
    adapter: Channel,
    batch: Batch,
    gate: _Gate,
    sleep: Callable[[float], None],
) -> BatchOutcome:
    campaign = loaded.campaign
    config = campaign.channels[batch.channel]
    outcome = BatchOutcome(batch)
    pending = {row.recipient: row for row in ledger.pending(batch.run_id, batch.channel, batch.number)}
    if not pending:
        return outcome
    renderer = Renderer(loaded, signer(), batch.run_id)
    variants = {v.id: v for v in campaign.experiment.variants}
    outbounds: list[Outbound] = []
    failures: list[tuple[str, str]] = []
    if adapter.kind is ChannelKind.SOCIAL:
        for recipient, post in pending.items():
            outbounds.append(
                Outbound(recipient, renderer.render(batch.channel, variants[post.variant], None))
            )
    else:
        window, now = SendWindow(config), utcnow()
        deferred: list[tuple[str, datetime]] = []
        contacts = ContactsFile(loaded.contacts_path)
        for contact in contacts.records(offset=batch.offset, seq=batch.seq_start):
            if contact.seq > batch.seq_end:
                break
            row = pending.get(contact.id)
            if row is None:
                continue
            raw = contact.fields.get(adapter.address_column or "", "")
            try:
                address = adapter.send_address(raw, config)
                # a send deferred before is due now: its time was chosen inside the window
                wait = window.not_before(contact, address, now) if row.not_before is None else None
                if wait is not None:
                    deferred.append((contact.id, wait))
                    continue
                message = renderer.render(batch.channel, variants[row.variant], contact, address=address)
            except (ValueError, RenderProblem) as exc:
                failures.append((contact.id, str(exc)))
                continue
            outbounds.append(Outbound(contact.id, message))
        if deferred:
            outcome.counts["deferred"] = ledger.defer(batch.run_id, batch.channel, deferred)
    if failures:
        ledger.skip(batch.run_id, batch.channel, [(r, "render_error", e) for r, e in failures])
        outcome.counts["skipped"] = len(failures)
    outbounds = _without_opt_outs(ledger, adapter, batch, outbounds, outcome)
    chunk = adapter.max_batch if adapter.max_batch > 1 else PER_MESSAGE_CLAIM
    pacer = pacer_for(batch.run_id, batch.channel, config.pacing)
    for start in range(0, len(outbounds), chunk):
        if why := _stopped(batch):
            raise ChannelStopped(why)
        _send_chunk(ledger, adapter, batch, outbounds[start : start + chunk], pacer, sleep, outcome, gate)
    return outcome


def _send_chunk(
    ledger: Ledger,
    adapter: Channel,
    batch: Batch,
    items: list[Outbound],
    pacer: Pacer,
    sleep: Callable[[float], None],
    outcome: BatchOutcome,
    gate: _Gate,
) -> None:
    policy = adapter.config.retry
    todo = items
    attempt = 0
    while todo:
        attempt += 1
        claimed = set(ledger.begin(batch.run_id, batch.channel, [o.recipient for o in todo]))
        todo = [o for o in todo if o.recipient in claimed]
        if not todo:
            return
        gate.open()
        results = _send_paced(adapter, todo, pacer)
        last = attempt >= policy.max_attempts
        settle = [_settlement(r) for r in results if r.outcome is not SendOutcome.RETRY or last]
        retry = [r for r in results if r.outcome is SendOutcome.RETRY and not last]
        if settle:
            ledger.settle(batch.run_id, batch.channel, settle)
            _record_refused_opt_outs(ledger, adapter, results, todo)
            for s in settle:
                outcome.counts[s.state.value] = outcome.counts.get(s.state.value, 0) + 1
        exhausted = next((s for s in settle if s.reason == "retries_exhausted"), None)
        if not retry:
            answer = exhausted.error if exhausted else ""
            _chunk_done(batch, exhausted is not None, f"{adapter.provider} kept failing: {answer}")
            return
        ledger.release(batch.run_id, batch.channel, [r.recipient for r in retry])
        asked = max((r.retry_after or 0.0) for r in retry)
        wait = min(backoff(attempt, asked, base=policy.base_delay, cap=policy.max_delay), MAX_WAIT)
        log.info(
            "%s batch %s: %d to retry (%s), waiting %.1fs",
            batch.channel,
            batch.number,
            len(retry),
            retry[0].error,
            wait,
        )
        sleep(wait)
        again = {r.recipient for r in retry}
        todo = [o for o in todo if o.recipient in again]


def _without_opt_outs(
    ledger: Ledger, adapter: Channel, batch: Batch, outbounds: list[Outbound], outcome: BatchOutcome
) -> list[Outbound]:
    """Drop (as skipped, reason `suppressed`) whoever opted out since the run was planned: a STOP between
    the launch and a follow-up step, an unsubscribe during a long send. One query per batch."""
    kind = kind_of_channel(adapter.kind.value)
    if kind is None or not outbounds:
        return outbounds
    forms = {o.recipient: suppression_form(kind, o.message.to or "") for o in outbounds}
    gone = ledger.suppressed(kind, forms.values())
    if not gone:
        return outbounds
    skipped = [o.recipient for o in outbounds if forms[o.recipient] in gone]
    changed = ledger.skip(batch.run_id, batch.channel, [(r, "suppressed") for r in skipped])
    outcome.counts["skipped"] = outcome.counts.get("skipped", 0) + changed
    return [o for o in outbounds if forms[o.recipient] not in gone]


def _record_refused_opt_outs(
    ledger: Ledger, adapter: Channel, results: list[SendResult], sent: list[Outbound]
) -> None:
    """Twilio error 21610: the number replied STOP to this sender. Record it as an opt-out, so no other
    campaign (or sender) texts it either."""
    refused = {r.recipient for r in results if r.outcome is SendOutcome.REJECTED and r.code == "21610"}
    if not refused:
        return
    ledger.suppress(
        Suppression(
            kind=Kind.SMS,
            address=suppression_form(Kind.SMS, o.message.to or ""),
            reason=Reason.TWILIO_21610,
            source=f"twilio:{adapter.channel_id}",
            detail="Twilio refused the text: the number had replied STOP",
        )
        for o in sent
        if o.recipient in refused and o.message.to
    )


def _send_paced(adapter: Channel, items: list[Outbound], pacer: Pacer) -> list[SendResult]:
    if adapter.max_batch > 1:
        pacer.request(len(items))
        return adapter.send(items)
    results = []
    for item in items:
        pacer.request(1)
        results.extend(adapter.send([item]))
    return results


def _settlement(result: SendResult) -> Settlement:
    if result.outcome is SendOutcome.SENT:
        return Settlement(result.recipient, SendState.SENT, provider_id=result.provider_id)
    if result.outcome is SendOutcome.UNCERTAIN:
        return Settlement(result.recipient, SendState.UNCERTAIN, reason="timeout", error=result.error)
    reason = "retries_exhausted" if result.outcome is SendOutcome.RETRY else "rejected"
    error = f"[{result.code}] {result.error}" if result.code else result.error
    return Settlement(result.recipient, SendState.FAILED, reason=reason, error=error)
