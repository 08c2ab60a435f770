"""Sending one batch: render, claim in the ledger, call the provider, settle. Exactly once, in practice.

The order is what makes a crash harmless: a send is marked in flight (committed) before the provider is
called and settled after. Whatever was in flight when a process died is found in flight on resume and
listed as `uncertain`, never sent again unless asked. A chunk's settlement is written in the same
transaction as the batch's next claim (`_Unsettled`), or on its own when none follows: one commit per chunk
instead of two, the order unchanged. Retryable refusals (5xx, 429, connection refused)
are released and retried here with backoff, at most `retry.max_attempts` times; permanent refusals are
settled as failed with the provider's code and message; a request that may have arrived (a read timeout) is
settled as uncertain.

A recipient whose retries are exhausted is settled failed (`retries_exhausted`, with the provider's last
answer). When that happens in STOP_AFTER chunks of a channel in a row, with no chunk in between getting
through, the provider is taken to be down (the run's Coordination keeps count): the channel's remaining
sends in this launch stay planned (a resume sends them) instead of hammering a failing provider for hours,
and the other channels go on. A flaky provider (say 20% of calls failing) fails a recipient now and then
and never trips it.

Asked to stop (the run's Coordination: `clarion run` got SIGINT or SIGTERM), a batch claims nothing more:
the chunk in flight is settled as usual, the messages of a one-per-request provider's chunk not yet made
are released (planned again, for a resume), a retry's wait ends at once, and the batch returns
`interrupted`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from clarion.base.addresses import stored_form
from clarion.base.consent import Kind, Reason, kind_of_channel
from clarion.channels.base import Channel, ChannelKind, Outbound, Pacing, SendOutcome, SendResult
from clarion.engine.context import RunContext
from clarion.engine.coordination import Coordination, Gate
from clarion.engine.plan import Batch
from clarion.engine.retry import backoff
from clarion.engine.schedule import SendWindow, utcnow
from clarion.ledger import Ledger, SendReason, SendState, Settlement, Suppression
from clarion.messages.sources import RenderProblem

log = logging.getLogger("clarion.engine.send")

MAX_WAIT = 900.0  # never wait longer than this for one retry, whatever a provider asks
# Claim this many at once for providers taking one message per request: fewer ledger commits per message,
# against at most this many `uncertain` per in-flight chunk after a crash.
PER_MESSAGE_CLAIM = 25
# A paced channel's claims hold what its pace lets one of this process's send threads make in about this
# many seconds: claimed messages wait for their pacing slots, and whatever was claimed when a process dies
# is `uncertain`. With 25 a claim, 8 threads of a shard held up to 200 texts at 200/s, and a killed shard
# left 200 uncertain of which 30-73 had gone out (`benchmarks/scale_out.py --only kills`).
CLAIM_SECONDS = 0.25


class ChannelStopped(Exception):
    """A channel's provider kept failing; what is left stays planned for a resume."""


@dataclass
class BatchOutcome:
    batch: Batch
    counts: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False  # a stop was requested: what is left of the batch stays planned


def send_batch(run: RunContext, batch: Batch, *, sleep: Callable[[float], None] = time.sleep) -> BatchOutcome:
    """Send what is still planned in one batch; raises ChannelStopped when the provider is down."""
    gate = run.coordination.gate(batch.run_id, batch.opening)
    try:
        if run.coordination.stop_requested():
            return BatchOutcome(batch, interrupted=True)
        if why := run.coordination.stopped(batch.run_id, batch.channel):
            raise ChannelStopped(why)
        return _send_pending(run, batch, gate, sleep)
    finally:
        gate.leave()


def _send_pending(run: RunContext, batch: Batch, gate: Gate, sleep: Callable[[float], None]) -> BatchOutcome:
    ledger, loaded = run.ledger, run.campaign(batch.run_id)
    campaign = loaded.campaign
    config = campaign.channels[batch.channel]
    outcome = BatchOutcome(batch)
    pending = {row.recipient: row for row in ledger.due_in_batch(batch.run_id, batch.channel, batch.number)}
    if not pending:
        return outcome
    adapter = run.adapter(batch.run_id, batch.channel)
    renderer = run.renderer(batch.run_id)
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
        contacts = loaded.contacts()
        span = batch.seq_end - batch.seq_start + 1  # a query audience reads just the batch's rows (LIMIT)
        for contact in contacts.records(offset=batch.offset, seq=batch.seq_start, limit=span):
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
                scheduled = wait is not None and (wait - now).total_seconds() <= adapter.schedule_horizon
                if wait is not None and not scheduled:
                    deferred.append((contact.id, wait))
                    continue
                # checked in full at planning: a provider that substitutes gets the skeleton and values
                message = renderer.render(
                    batch.channel, variants[row.variant], contact, address=address, full=False
                )
            except (ValueError, RenderProblem) as exc:
                failures.append((contact.id, str(exc)))
                continue
            # within the provider's horizon, the provider holds it until the contact's local time
            outbounds.append(Outbound(contact.id, message, send_at=wait if scheduled else None))
        if deferred:
            outcome.counts["deferred"] = ledger.defer(batch.run_id, batch.channel, deferred)
    if failures:
        ledger.skip(batch.run_id, batch.channel, [(r, "render_error", e) for r, e in failures])
        outcome.counts["skipped"] = len(failures)
    outbounds = _without_opt_outs(ledger, adapter, batch, outbounds, outcome)
    later = [(o.recipient, o.send_at) for o in outbounds if o.send_at is not None]
    if later:  # the batch id is in the ledger before any email that carries it is sent
        batch_id = adapter.schedule_batch()
        if batch_id:
            ledger.remember_batches(batch.run_id, batch.channel, adapter.provider, [batch_id])
    if adapter.max_batch > 1:  # a request's recipients, at most what a task carries (`batch_size`)
        chunk = min(adapter.max_batch, int(getattr(config, "batch_size", 0) or adapter.max_batch))
    else:
        chunk = per_message_claim(adapter.config.pacing, run.threads)
    coordination = run.coordination
    ids = {recipient: row.id for recipient, row in pending.items()}
    unsettled = _Unsettled(run, batch, ids)
    try:
        for start in range(0, len(outbounds), chunk):
            if why := coordination.stopped(batch.run_id, batch.channel):
                raise ChannelStopped(why)
            if not coordination.enter_request():
                outcome.interrupted = True
                break
            handed = unsettled.handed
            try:
                items = outbounds[start : start + chunk]
                _send_chunk(run, adapter, batch, items, ids, sleep, outcome, gate, unsettled)
            finally:
                if unsettled.handed == handed:  # else its request ends when `unsettled` writes its results
                    coordination.leave_request()
    except BaseException:
        _write_before_raising(unsettled, batch)
        raise
    unsettled.write()
    if later:  # when each accepted email will be delivered (status, `clarion email cancel`)
        ledger.mark_scheduled(batch.run_id, batch.channel, later)
    return outcome


def _write_before_raising(unsettled: _Unsettled, batch: Batch) -> None:
    """The results held when the batch fails or stops (ChannelStopped, an error, an interrupt), written; if
    that fails too, the batch's own exception is still the one raised (a stopped channel stays a stopped
    channel), and the rows left in flight are listed `uncertain` on resume."""
    try:
        unsettled.write()
    except Exception as exc:
        log.error(
            "%s batch %s: writing its last results or ending its request failed too (%s); what was not "
            "written stays in flight, listed uncertain on resume",
            batch.channel,
            batch.number,
            type(exc).__name__,
        )


def per_message_claim(pacing: Pacing, threads: int) -> int:
    """How many sends a thread claims at once for a provider taking one message a request: PER_MESSAGE_CLAIM,
    or fewer when the channel is paced (what the pace lets each of `threads` make in CLAIM_SECONDS), at
    least 1. Each claim is a ledger commit: at 200/s on 8 threads, 6 a claim is some 33 claims a second."""
    rates = [rate for rate in (pacing.messages_per_second, pacing.requests_per_second) if rate]
    if not rates:
        return PER_MESSAGE_CLAIM
    return max(1, min(PER_MESSAGE_CLAIM, int(min(rates) * CLAIM_SECONDS / max(threads, 1))))


class _Unsettled:
    """A chunk's results, settled in the same transaction as the batch's next claim (one ledger commit for
    both, where there were two per chunk: on SQLite the commits of a launch and its helpers take turns, and
    the sending waited on them), or by `write` when no claim follows (the batch is done, stopped or failed).

    The chunk's request (Coordination.enter_request) stays counted in flight until its results are written,
    so that a stop waits for them. Either way they are written before the next claim's messages are sent,
    and after the provider answered: a crash in between finds the chunk in flight (`uncertain`), as before.
    """

    def __init__(self, run: RunContext, batch: Batch, ids: Mapping[str, int]) -> None:
        self._ledger, self._coordination = run.ledger, run.coordination
        self._batch, self._ids = batch, ids
        self._results: list[Settlement] = []
        self.handed = 0  # how many chunks handed their results (and request) over: the caller's sign

    def keep(self, results: list[Settlement]) -> None:
        """Hold a chunk's results (not empty), and its request, until the next claim or `write`."""
        self._results = results
        self.handed += 1

    def claim(self, recipients: list[str]) -> list[str]:
        """Claim `recipients` of the batch, writing the results held in the same transaction."""
        batch, held = self._batch, self._results
        claimed = self._ledger.begin(batch.run_id, batch.channel, recipients, self._ids, held)
        try:
            self._done()
        except BaseException:  # the coordination failed (Redis, a helper's launch gone): nothing was sent
            self._ledger.release(batch.run_id, batch.channel, claimed, self._ids)
            raise
        return claimed

    def write(self) -> None:
        """Settle the results held, if any (the batch ends: no claim follows)."""
        if not self._results:
            return
        try:
            self._ledger.settle(self._batch.run_id, self._batch.channel, self._results, self._ids)
        finally:  # written or not, the request ends (what was not written is found in flight on resume)
            self._done()

    def _done(self) -> None:
        if self._results:
            self._results = []
            self._coordination.leave_request()


def _send_chunk(
    run: RunContext,
    adapter: Channel,
    batch: Batch,
    items: list[Outbound],
    ids: Mapping[str, int],
    sleep: Callable[[float], None],
    outcome: BatchOutcome,
    gate: Gate,
    unsettled: _Unsettled,
) -> None:
    """Claim, send and settle one request's (or claim's) worth of the batch, retrying what the provider
    asked to have again; `ids` are the batch's rows' ids by recipient, by which the ledger finds them.

    The first claim writes the results `unsettled` holds (the previous chunk's). This chunk's final results
    are handed to `unsettled` (with its request) for the next claim to write, the moment they are known:
    whatever fails after (the coordination's Redis, a helper's launch, the ledger) cannot lose what the
    provider answered. When nothing was left to settle the caller ends the chunk's request itself
    (`unsettled.handed` did not move)."""
    ledger, coordination = run.ledger, run.coordination
    policy = adapter.config.retry
    todo = items
    attempt = 0
    while todo:
        attempt += 1
        claimed = set(unsettled.claim([o.recipient for o in todo]))
        todo = [o for o in todo if o.recipient in claimed]
        if not todo:
            return
        results, failure = _send_paced(coordination, gate, batch, adapter, todo)
        last = attempt >= policy.max_attempts
        settle = [_settlement(r) for r in results if r.outcome is not SendOutcome.RETRY or last]
        retry = [r for r in results if r.outcome is SendOutcome.RETRY and not last]
        if settle and not retry:
            unsettled.keep(settle)  # first: written by the next claim, or by the batch's end whatever happens
        elif settle:  # written now: the retries are released after them, and waited for
            ledger.settle(batch.run_id, batch.channel, settle, ids)
        if len(results) < len(todo):  # stopped or failed between messages: those not made, planned again
            made = {r.recipient for r in results}
            unmade = [o.recipient for o in todo if o.recipient not in made]
            ledger.release(batch.run_id, batch.channel, unmade, ids)
            outcome.interrupted = True
        if settle:
            _record_refused_opt_outs(ledger, adapter, results, todo)
            for s in settle:
                outcome.counts[s.state.value] = outcome.counts.get(s.state.value, 0) + 1
        if failure is None and not retry:
            exhausted = next((s for s in settle if s.reason == "retries_exhausted"), None)
            answer = exhausted.error if exhausted else ""
            why = f"{adapter.provider} kept failing: {answer}"
            coordination.chunk_done(batch.run_id, batch.channel, exhausted=exhausted is not None, why=why)
            return
        if retry:
            ledger.release(batch.run_id, batch.channel, [r.recipient for r in retry], ids)
        if failure is not None:  # what was made is kept, what was not is planned again: now it fails
            raise failure
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
        if outcome.interrupted or _wait(coordination, sleep, wait):
            outcome.interrupted = True  # the retries stay planned, for a resume
            return
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
    forms = {o.recipient: stored_form(kind, o.message.to or "") for o in outbounds}
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
            address=stored_form(Kind.SMS, o.message.to or ""),
            reason=Reason.TWILIO_21610,
            source=f"twilio:{adapter.channel_id}",
            detail="Twilio refused the text: the number had replied STOP",
        )
        for o in sent
        if o.recipient in refused and o.message.to
    )


def _send_paced(
    coordination: Coordination, gate: Gate, batch: Batch, adapter: Channel, items: list[Outbound]
) -> tuple[list[SendResult], Exception | None]:
    """The claimed `items` sent as the opening and the pace allow: their results, and what failed in the
    coordination before the rest were made (a shard's Redis gone, a helper's launch gone), for the caller
    to raise once those made are kept and the rest planned again (none of them went out)."""
    pacing = adapter.config.pacing
    try:
        gate.open()
        if adapter.max_batch > 1:
            coordination.pace(batch.run_id, batch.channel, pacing, len(items))
    except Exception as exc:
        return [], exc
    if adapter.max_batch > 1:
        return adapter.send(items), None
    results: list[SendResult] = []
    for item in items:
        try:
            if coordination.stop_requested():
                break  # the rest of the chunk was claimed but never made: the caller releases it
            coordination.pace(batch.run_id, batch.channel, pacing, 1)
        except Exception as exc:
            return results, exc
        results.extend(adapter.send([item]))
    return results, None


def _wait(coordination: Coordination, sleep: Callable[[float], None], seconds: float) -> bool:
    """Wait before a retry; True when a stop was requested meanwhile (the wait ends at once then).

    A test's own `sleep` is honoured (it fakes the clock); the real one waits on the coordination."""
    if sleep is time.sleep:
        return coordination.wait_for_stop(seconds)
    sleep(seconds)
    return coordination.stop_requested() is not None


def _settlement(result: SendResult) -> Settlement:
    if result.outcome is SendOutcome.SENT:
        return Settlement(result.recipient, SendState.SENT, provider_id=result.provider_id)
    if result.outcome is SendOutcome.UNCERTAIN:
        return Settlement(result.recipient, SendState.UNCERTAIN, reason="timeout", error=result.error)
    reason = SendReason.RETRIES_EXHAUSTED.value if result.outcome is SendOutcome.RETRY else "rejected"
    error = f"[{result.code}] {result.error}" if result.code else result.error
    return Settlement(result.recipient, SendState.FAILED, reason=reason, error=error)
