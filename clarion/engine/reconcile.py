"""Settling a run's `uncertain` sends by asking each provider what it has (`clarion reconcile RUN`).

An uncertain send is one whose request may have reached the provider without an answer: a read timeout,
a dropped connection, a crash between the call and the ledger's record. For each channel with such sends,
the messages are rendered again exactly as they went out (same run, same links; the campaign must be
unchanged, as for a resume) and handed to the provider's own lookup (`Channel.reconcile`). Then, in the
ledger, each send moves:

- to `sent` (reason `reconciled`, with the provider's id) when the provider has the message;
- to `failed` (reason `not_received`) when the provider's complete listing proves it does not, and the
  attempt is older than the time the provider may take to list a message it took (`listing_delay`, or
  `grace`): `clarion run --run-id RUN --retry-failed` then sends it again;
- nowhere otherwise: it stays `uncertain`, and the result says why (the provider cannot be asked, a
  listing cut short, an attempt too recent to tell).

Each move records when (`settled_at`) and why (the provider's evidence, and the old uncertainty, in
`error`). Nothing is ever sent from here.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from clarion import channels
from clarion.base.errors import ClarionError
from clarion.campaign.loader import LoadedCampaign, campaign_digest, load_campaign
from clarion.channels.base import Channel, ChannelKind
from clarion.channels.reconcile import Found, Lookup, Verdict, in_order
from clarion.engine.context import make_adapter
from clarion.engine.schedule import utcnow
from clarion.ledger import Ledger, RunNotFound, RunRecord, SendReason, SendRow, SendState, Settlement
from clarion.messages.links import LinkSigner
from clarion.messages.render import Renderer
from clarion.messages.sources import RenderProblem


@dataclass(frozen=True)
class Settled:
    """What became of one uncertain send: `outcome` is sent, failed or uncertain (unchanged)."""

    channel: str
    recipient: str
    outcome: str
    detail: str
    provider_id: str | None = None


@dataclass
class ChannelSettled:
    """One channel's uncertain sends after asking its provider; `why` counts the reasons left."""

    channel: str
    provider: str
    uncertain_before: int = 0
    sent: int = 0
    failed: int = 0
    uncertain: int = 0
    why: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "provider": self.provider,
            "uncertain_before": self.uncertain_before,
            "sent": self.sent,
            "failed": self.failed,
            "uncertain": self.uncertain,
            "why_uncertain": dict(self.why.most_common()),
        }


@dataclass
class Reconciliation:
    run_id: str
    channels: list[ChannelSettled] = field(default_factory=list)
    sends: list[Settled] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "channels": [c.as_dict() for c in self.channels],
            "sends": [
                {
                    "channel": s.channel,
                    "recipient": s.recipient,
                    "outcome": s.outcome,
                    "provider_id": s.provider_id,
                    "detail": s.detail,
                }
                for s in self.sends
            ],
        }


def reconcile_run(
    ledger: Ledger,
    run_id: str,
    *,
    loaded: LoadedCampaign | None = None,
    grace: timedelta | None = None,
    now: Callable[[], datetime] = utcnow,
) -> Reconciliation:
    """Ask the providers about `run_id`'s uncertain sends and settle what they answer (see the module).

    `loaded` is the run's campaign (default: the file recorded with the run); `grace` replaces every
    provider's `listing_delay`. Raises RunNotFound, or ClarionError when the campaign is not the run's.
    """
    record = ledger.get_run(run_id)
    if record is None:
        raise RunNotFound(run_id)
    rows: dict[str, list[SendRow]] = defaultdict(list)
    for row in ledger.sends(run_id, state=SendState.UNCERTAIN):
        rows[row.channel].append(row)
    result = Reconciliation(run_id)
    if not rows:
        return result
    loaded = loaded or _recorded_campaign(record)
    _same_campaign(loaded, record)
    renderer = Renderer(loaded, LinkSigner.from_settings(), run_id)
    lookups, problems = _lookups(loaded, renderer, rows)
    for channel in sorted(rows):
        config = loaded.campaign.channels[channel]
        tally = ChannelSettled(channel, config.provider, uncertain_before=len(rows[channel]))
        result.channels.append(tally)
        asked = lookups[channel]
        try:
            adapter = make_adapter(loaded, channel)  # ClarionError naming a missing credential
        except ClarionError as exc:
            answers = [Found(lookup.recipient, Verdict.UNKNOWN, str(exc)) for lookup in asked]
        else:
            answers = in_order(adapter.reconcile(asked), asked) if asked else []
            answers = [
                _patience(adapter, grace, lookup, found, now())
                for lookup, found in zip(asked, answers, strict=True)
            ]
        answers += problems[channel]
        _record(ledger, run_id, tally, {r.recipient: r for r in rows[channel]}, answers, result)
    return result


def _patience(
    adapter: Channel, grace: timedelta | None, lookup: Lookup, found: Found, now: datetime
) -> Found:
    """NOT_RECEIVED only once the provider has had time to list a late message; until then, UNKNOWN."""
    if found.verdict is not Verdict.NOT_RECEIVED:
        return found
    wait = grace if grace is not None else timedelta(seconds=adapter.listing_delay)
    ready = lookup.attempted_at + wait
    if now >= ready:
        return found
    detail = (
        f"not listed yet, but {adapter.provider} may take {int(wait.total_seconds())} s to list a message: "
        f"run `clarion reconcile` again after {ready.isoformat(timespec='seconds')}"
    )
    return Found(found.recipient, Verdict.UNKNOWN, detail)


def _record(
    ledger: Ledger,
    run_id: str,
    tally: ChannelSettled,
    rows: dict[str, SendRow],
    answers: list[Found],
    result: Reconciliation,
) -> None:
    settlements = []
    for found in answers:
        row = rows.get(found.recipient)
        if row is None:
            continue
        why = f"was uncertain ({row.reason or 'no reason recorded'}); {found.detail}"
        if found.verdict is Verdict.SENT:
            reason = SendReason.RECONCILED.value
            settlements.append(Settlement(found.recipient, SendState.SENT, found.provider_id, reason, why))
        elif found.verdict is Verdict.NOT_RECEIVED:
            reason = SendReason.NOT_RECEIVED.value
            settlements.append(Settlement(found.recipient, SendState.FAILED, None, reason, why))
        else:
            tally.uncertain += 1
            tally.why[found.detail] += 1
            result.sends.append(Settled(tally.channel, found.recipient, "uncertain", found.detail))
    ledger.resolve_uncertain(run_id, tally.channel, settlements)
    for s in settlements:
        outcome = "sent" if s.state is SendState.SENT else "failed"
        tally.sent += outcome == "sent"
        tally.failed += outcome == "failed"
        detail = (s.error or "").split("; ", 1)[-1]
        result.sends.append(Settled(tally.channel, s.recipient, outcome, detail, s.provider_id))


def _recorded_campaign(record: RunRecord) -> LoadedCampaign:
    path = Path(record.campaign_file)
    if not path.is_file():
        raise ClarionError(
            f"run {record.id}: its campaign file {record.campaign_file} is not there (the path is as "
            "`clarion run` was given it); name it with --campaign FILE"
        )
    return load_campaign(path)


def _same_campaign(loaded: LoadedCampaign, record: RunRecord) -> None:
    """The messages are rendered again to be recognised: from exactly what the run sent."""
    if loaded.campaign.name != record.campaign:
        raise ClarionError(
            f"run {record.id} belongs to campaign {record.campaign!r}, not {loaded.campaign.name!r}"
        )
    if campaign_digest(loaded) != record.digest:
        raise ClarionError(
            f"the campaign, its contacts or its templates changed since run {record.id} was planned; "
            "restore them to recognise its messages at the providers"
        )


def _lookups(
    loaded: LoadedCampaign, renderer: Renderer, rows: dict[str, list[SendRow]]
) -> tuple[dict[str, list[Lookup]], dict[str, list[Found]]]:
    """Every uncertain send rendered again as it went out; those that cannot be are answered UNKNOWN."""
    campaign = loaded.campaign
    variants = {v.id: v for v in campaign.experiment.variants}
    lookups: dict[str, list[Lookup]] = defaultdict(list)
    problems: dict[str, list[Found]] = defaultdict(list)
    per_contact: dict[str, list[tuple[str, SendRow]]] = defaultdict(list)
    for channel, channel_rows in rows.items():
        adapter = channels.get(campaign.channels[channel].provider)
        for row in channel_rows:
            if adapter.kind is ChannelKind.SOCIAL:
                message = renderer.render(channel, variants[row.variant], None)
                lookups[channel].append(Lookup(row.recipient, message, _attempted(row)))
            else:
                per_contact[row.recipient].append((channel, row))
    if per_contact:
        for contact in loaded.contacts().records():
            for channel, row in per_contact.pop(contact.id, []):
                config = campaign.channels[channel]
                adapter = channels.get(config.provider)
                raw = contact.fields.get(adapter.address_column or "", "")
                try:
                    address = adapter.send_address(raw, config)
                    message = renderer.render(channel, variants[row.variant], contact, address=address)
                except (ValueError, RenderProblem) as exc:
                    why = f"cannot render it again: {exc}"
                    problems[channel].append(Found(row.recipient, Verdict.UNKNOWN, why))
                    continue
                lookups[channel].append(Lookup(row.recipient, message, _attempted(row)))
            if not per_contact:
                break
    for missing in per_contact.values():
        for channel, row in missing:
            problems[channel].append(Found(row.recipient, Verdict.UNKNOWN, "the contact is not in the file"))
    return lookups, problems


def _attempted(row: SendRow) -> datetime:
    return row.attempted_at or row.planned_at


__all__ = ["ChannelSettled", "Reconciliation", "Settled", "reconcile_run"]
