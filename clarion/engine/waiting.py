"""What a run is waiting for, said plainly: sends held for their recipients' local hours (per channel,
until when in UTC and in the recipients' own time), steps not yet due, an approval nobody gave yet.

The progress display of `clarion run`, `clarion status` and the console all show this; everything is read
from the ledger (deferred sends, the launch instant, the run's status and decisions) and the campaign file
(steps, approvers, each contact's zone), so it is right whichever process is sending.

A deferred send's local time is read in the zone of one of the recipients due at that instant (the contact's
`timezone`, else its number's zone, else the channel's default, as the send window chose it): sends held
for quiet hours go at the window's opening in each recipient's zone, so the instants differ by zone and each
names the zone it is for.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from clarion import channels
from clarion.campaign.loader import LoadedCampaign
from clarion.engine.schedule import LAUNCHED, SendWindow, utcnow, waves
from clarion.ledger import Ledger, RunRecord, RunStatus

APPROVAL_REQUEST = "approval_request"  # a run's note: what its approvers are asked (engine.preflight)


@dataclass(frozen=True)
class Deferral:
    """Sends of one channel held until one instant."""

    channel: str
    count: int
    due: datetime  # UTC
    local: str | None = None  # e.g. "08:00 America/New_York": the instant in a recipient's zone

    def text(self) -> str:
        where = f" ({self.local})" if self.local else ""
        return f"{self.count:,} until {self.due:%Y-%m-%d %H:%M} UTC{where}"


@dataclass(frozen=True)
class WaitingStep:
    name: str
    channels: tuple[str, ...]
    due: datetime


@dataclass(frozen=True)
class PendingApproval:
    approvers: tuple[str, ...]  # empty: anyone may approve
    since: datetime
    expires: datetime | None


@dataclass
class RunWaits:
    """What one run waits for (empty lists and None: nothing)."""

    run_id: str
    status: str
    deferred: dict[str, list[Deferral]] = field(default_factory=dict)  # channel -> soonest first
    steps: list[WaitingStep] = field(default_factory=list)
    approval: PendingApproval | None = None
    # channel -> (instant, count): accepted by the provider for delivery then (local-time email)
    scheduled: dict[str, list[tuple[datetime, int]]] = field(default_factory=dict)

    def deferred_count(self, channel: str) -> int:
        return sum(d.count for d in self.deferred.get(channel, []))

    def channel_text(self, channel: str, limit: int = 2) -> str:
        """`deferred 10: 6 until 2026-12-03 13:00 UTC (08:00 America/New_York), 4 until ...`."""
        groups = self.deferred.get(channel, [])
        if not groups:
            return ""
        shown = "; ".join(g.text() for g in groups[:limit])
        more = f"; {len(groups) - limit} later instants" if len(groups) > limit else ""
        return f"deferred {self.deferred_count(channel):,}: {shown}{more}"

    def lines(self, now: datetime | None = None) -> list[str]:
        """One sentence per thing waited for, for a terminal."""
        now = now or utcnow()
        found = []
        if self.approval is not None:
            who = ", ".join(self.approval.approvers) or "anyone"
            until = f", until {self.approval.expires:%H:%M} UTC" if self.approval.expires else ""
            found.append(
                f"waiting for approval by {who}{until}: clarion approve {self.run_id} --as NAME "
                "(or the console)"
            )
        for channel in self.deferred:
            found.append(f"{channel}: {self.channel_text(channel)}")
        for channel, groups in self.scheduled.items():
            count = sum(n for _, n in groups)
            first, last = groups[0][0], groups[-1][0]
            span = (
                f"at {first:%Y-%m-%d %H:%M} UTC"
                if first == last
                else (f"from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC")
            )
            found.append(
                f"{channel}: {count:,} scheduled at the provider for delivery {span}; "
                f"clarion email cancel {self.run_id} takes them back"
            )
        for step in self.steps:
            found.append(
                f"step {step.name} ({', '.join(step.channels) or 'nothing planned yet'}) due "
                f"{step.due:%Y-%m-%d %H:%M:%S} UTC, in {_duration(step.due - now)}"
            )
        return found

    def as_dict(self) -> dict[str, Any]:
        return {
            "deferred": {
                channel: [{**asdict(g), "due": g.due.isoformat()} for g in groups]
                for channel, groups in self.deferred.items()
            },
            "steps": [
                {"name": s.name, "channels": list(s.channels), "due": s.due.isoformat()} for s in self.steps
            ],
            "scheduled": {
                channel: [{"at": at.isoformat(), "count": n} for at, n in groups]
                for channel, groups in self.scheduled.items()
            },
            "approval": None
            if self.approval is None
            else {
                "approvers": list(self.approval.approvers),
                "since": self.approval.since.isoformat(),
                "expires": self.approval.expires.isoformat() if self.approval.expires else None,
            },
        }


class Explainer:
    """Builds `RunWaits` for the runs of one ledger; keeps the campaigns it loaded and the zones it found,
    so a display polling every second reads the contacts file once per deferral instant, not each time."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._campaigns: dict[str, LoadedCampaign | None] = {}
        self._zones: dict[tuple[str, str, str], str] = {}  # (run, channel, contact) -> zone name

    def campaign(self, record: RunRecord) -> LoadedCampaign | None:
        """The run's campaign file, loaded once (None when it moved or no longer loads)."""
        if record.campaign_file not in self._campaigns:
            from clarion.base.errors import ClarionError
            from clarion.campaign.loader import load_campaign

            try:
                self._campaigns[record.campaign_file] = load_campaign(record.campaign_file)
            except (ClarionError, OSError):
                self._campaigns[record.campaign_file] = None
        return self._campaigns[record.campaign_file]

    def explain(self, run_id: str, now: datetime | None = None) -> RunWaits:
        now = now or utcnow()
        record = self.ledger.get_run(run_id)
        if record is None:
            return RunWaits(run_id, "unknown")
        waits = RunWaits(run_id, str(record.status))
        loaded = self.campaign(record)
        rows = self.ledger.deferred(run_id, now)
        zones = self._zones_of(run_id, loaded, [(c, contact) for c, _at, _n, contact in rows if contact])
        for channel, due, count, contact in rows:
            zone = zones.get((run_id, channel, contact or ""))
            local = f"{due.astimezone(_zone(zone)):%H:%M} {zone}" if zone else None
            waits.deferred.setdefault(channel, []).append(Deferral(channel, count, due, local))
        for channel, at, count in self.ledger.scheduled_later(run_id, now):
            waits.scheduled.setdefault(channel, []).append((at, count))
        if loaded is not None:
            waits.steps = _waiting_steps(record, loaded, now)
            if record.status is RunStatus.AWAITING_APPROVAL:
                waits.approval = _pending_approval(record, loaded)
        return waits

    def _zones_of(
        self, run_id: str, loaded: LoadedCampaign | None, wanted: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str, str], str]:
        missing = {(channel, contact) for channel, contact in wanted} - {
            (c, k) for r, c, k in self._zones if r == run_id
        }
        if missing and loaded is not None:
            ids = {contact for _c, contact in missing}
            try:
                for contact in loaded.contacts().records():
                    if contact.id not in ids:
                        continue
                    for channel in {c for c, k in missing if k == contact.id}:
                        config = loaded.campaign.channels.get(channel)
                        if config is None:
                            continue
                        adapter = channels.get(config.provider)
                        raw = contact.fields.get(adapter.address_column or "", "")
                        try:
                            address = adapter.send_address(raw, config) if raw else None
                        except ValueError:
                            address = None
                        zone = SendWindow(config).zone_of(contact, address)
                        self._zones[(run_id, channel, contact.id)] = str(zone.key)
                    ids.discard(contact.id)
                    if not ids:
                        break
            except Exception:  # the contacts file changed or went away: show UTC only
                pass
        return {key: zone for key, zone in self._zones.items() if key[0] == run_id}


def _zone(name: str) -> Any:
    from clarion.base.timing import zone

    return zone(name)


def _waiting_steps(record: RunRecord, loaded: LoadedCampaign, now: datetime) -> list[WaitingStep]:
    launched_at = record.decisions.get(LAUNCHED)
    if not launched_at or record.status.finished:
        return []
    launched = datetime.fromisoformat(str(launched_at))
    begun = {key.removeprefix("wave:") for key in record.decisions if key.startswith("wave:")}
    return [
        WaitingStep(w.name, w.channels, w.at)
        for w in waves(loaded.campaign, launched)
        if w.name not in begun and w.at > now
    ]


def _pending_approval(record: RunRecord, loaded: LoadedCampaign) -> PendingApproval:
    gate = loaded.campaign.approval
    approvers = tuple(gate.approvers) if gate is not None else ()
    request = record.decisions.get(APPROVAL_REQUEST) or {}
    since = datetime.fromisoformat(request["asked_at"]) if request.get("asked_at") else record.updated_at
    expires = since + gate.timeout if gate is not None and gate.timeout else None
    return PendingApproval(approvers, since, expires)


def _duration(delta: timedelta) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


__all__ = ["APPROVAL_REQUEST", "Deferral", "Explainer", "PendingApproval", "RunWaits", "WaitingStep"]
