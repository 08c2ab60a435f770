"""Planning a run: every contact assigned, every send written to the ledger before anything goes out.

One pass over the audience validates and renders every contact (nothing is sent if anything is wrong),
records each contact's arm, and plans one send per reachable contact and channel, grouped in batches.
A batch is described by a small `Batch` (run, channel, number, where its contacts start in the file), which
is what the send tasks receive: never the contacts themselves. Planning is idempotent, so a resumed run
plans again, finds everything already there, and gets the same batches.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

from clarion import channels
from clarion.base.addresses import address_keys, stored_form
from clarion.base.consent import Kind, consent_given, kind_of_channel
from clarion.base.errors import ClarionError
from clarion.base.settings import ClarionSettings
from clarion.campaign.contacts import Contact
from clarion.campaign.loader import LoadedCampaign, campaign_digest
from clarion.campaign.model import HOLDOUT, REST
from clarion.channels.base import ChannelKind, FrequencyCap
from clarion.engine.bandit import WavePlan
from clarion.ledger import PLAN_ROWS, Ledger, PlannedSend, RunStatus, SendFields
from clarion.messages.assign import Assigner
from clarion.messages.links import LinkSigner
from clarion.messages.render import Renderer
from clarion.messages.validate import ValidationReport, scan
from clarion.messages.validated import recall, remember, validation_digest

CHANNEL_HOLDOUT = "channel_holdout"  # the skip reason of a send withheld by experiment.channel_holdouts
OPENING_BATCH = 50  # every channel's first batch is small, so its first message leaves at once
DEFAULT_BATCH = {ChannelKind.EMAIL: 5000, ChannelKind.SMS: 250, ChannelKind.SOCIAL: 1}


@dataclass(frozen=True)
class Batch:
    """What one send task gets: which planned sends to make, and where their contacts start in the file."""

    run_id: str
    channel: str
    number: int
    seq_start: int
    seq_end: int  # inclusive
    offset: int  # byte offset of the first contact's record; -1 for social posts
    size: int
    opening: bool = False  # one of the batches that start the run together, at the same moment


@dataclass
class Plan:
    run_id: str
    batches: list[Batch] = field(default_factory=list)
    report: ValidationReport | None = None
    resumed: bool = False


class RowWriter(Protocol):
    """Where planning's rows go, a chunk at a time: into the ledger from this thread (`DirectWriter`), or
    handed to a local send helper that writes them while planning reads on (clarion/engine/helpers.py).

    `rows` is how many rows a chunk holds at most. `wait` returns once every chunk written is committed
    (planning's end: nothing is sent before); `drop` forgets chunks not yet written (planning failed)."""

    rows: int

    def write(
        self, run_id: str, assignments: list[tuple[int, str, str]], sends: list[PlannedSend]
    ) -> None: ...

    def wait(self) -> None: ...

    def drop(self) -> None: ...


def write_rows(
    ledger: Ledger, run_id: str, assignments: list[tuple[int, str, str]], sends: Sequence[SendFields]
) -> None:
    """One chunk of planning's rows into the ledger (whichever process writes it)."""
    if assignments:
        ledger.add_assignments(run_id, assignments)
    if sends:
        ledger.plan_sends(run_id, sends)


class DirectWriter:
    """Planning's rows written by the thread that plans, a transaction per chunk."""

    rows = PLAN_ROWS

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def write(self, run_id: str, assignments: list[tuple[int, str, str]], sends: list[PlannedSend]) -> None:
        write_rows(self.ledger, run_id, assignments, sends)

    def wait(self) -> None:
        pass

    def drop(self) -> None:
        pass


def new_run_id(campaign: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dt%H%M%S")
    return f"{campaign}-{stamp}-{secrets.token_hex(2)}"


def batch_size(kind: ChannelKind, config: object) -> int:
    return int(getattr(config, "batch_size", 0) or DEFAULT_BATCH[kind])


@dataclass(frozen=True)
class _Consent:
    """What decides, per channel, whether a reachable contact may be sent to at all."""

    kind: Kind
    column: str | None  # the consent column, for channels that need one
    capped: frozenset[str]  # address keys already at the channel's frequency cap


class _Planner:
    """Collects a run's rows while the audience streams past, writing them in chunks."""

    def __init__(
        self,
        ledger: Ledger,
        loaded: LoadedCampaign,
        run_id: str,
        winner: str | None = None,
        wave: WavePlan | None = None,
        *,
        writer: RowWriter,
    ) -> None:
        self.ledger, self.run_id = ledger, run_id
        self.writer = writer
        # None: the launch (the rest of a rollout waits); a variant id: the rollout run, the rest gets it
        self.winner = winner
        self.wave = wave  # a Thompson wave's run: its share of the rest, each on its allocated arm
        campaign = loaded.campaign
        self._assigner = Assigner(campaign.name, campaign.experiment, campaign.test_share)
        self.assignments: list[tuple[int, str, str]] = []
        self.sends: list[PlannedSend] = []
        self.batches: list[Batch] = []
        self._open: dict[str, list[Contact]] = {}
        self._numbers: dict[str, int] = {}
        self._sizes: dict[str, int] = {}
        self._address_key = address_keys(ClarionSettings().signing_key())
        self._consent: dict[str, _Consent] = {}
        self._suppressed: dict[Kind, set[str]] = {}
        now = datetime.now(UTC)
        for cid, config in loaded.campaign.channels.items():
            adapter = channels.get(config.provider)
            kind = kind_of_channel(adapter.kind.value)
            if kind is None:
                continue
            self._open[cid] = []
            self._numbers[cid] = 0
            self._sizes[cid] = batch_size(adapter.kind, config)
            if kind not in self._suppressed:
                self._suppressed[kind] = ledger.suppressed(kind)
            cap: FrequencyCap | None = getattr(config, "frequency_cap", None)
            capped = frozenset(ledger.capped(None, now - cap.per, cap.max, excluding=run_id) if cap else ())
            self._consent[cid] = _Consent(kind, adapter.consent_column, capped)

    def _refusal(self, cid: str, contact: Contact, address: str) -> tuple[str | None, str]:
        """Why this contact may not get this channel (None: they may), and their address key."""
        rules = self._consent[cid]
        stored = stored_form(rules.kind, address)
        key = self._address_key(rules.kind, stored)
        if rules.column and not consent_given(contact.fields.get(rules.column, "")):
            return "no_consent", key
        if stored in self._suppressed[rules.kind]:
            return "suppressed", key
        if key in rules.capped:
            return "frequency_cap", key
        return None, key

    def visit(self, contact: Contact, arm: str, addresses: dict[str, str | None]) -> None:
        if self.wave is not None:
            allocated = self.wave.arm(contact.id) if arm == REST else None
            if allocated is None:
                return  # the test cell and the holdout are the launch's; other waves, their own runs'
            arm = allocated
        elif self.winner is None:
            if arm == REST:  # waits for the rollout run: assigned here, sent nothing here
                self.assignments.append((contact.seq, contact.id, arm))
                return
        elif arm == REST:
            arm = self.winner
        elif arm == HOLDOUT:
            addresses = {}  # the rollout's report compares the winner with the same holdout
        else:
            return  # the test cell was the launch's
        self.assignments.append((contact.seq, contact.id, arm))
        for cid, address in addresses.items():
            reason: str | None = "no_address"
            key: str | None = None
            if address:
                reason, key = self._refusal(cid, contact, address)
                if self._assigner.withheld(contact.id, cid):
                    reason = CHANNEL_HOLDOUT  # randomised away from this channel: its control group
            number = self._numbers[cid] if reason is None else -1
            self.sends.append(
                PlannedSend(
                    channel=cid,
                    variant=arm,
                    contact_id=contact.id,
                    recipient=contact.id,
                    seq=contact.seq,
                    batch=number,
                    skip_reason=reason,
                    address_key=key,
                )
            )
            if reason is None:
                members = self._open[cid]
                members.append(contact)
                size = self._sizes[cid] if self._numbers[cid] else min(self._sizes[cid], OPENING_BATCH)
                if len(members) >= size:
                    self._close(cid)
        if len(self.sends) >= self.writer.rows or len(self.assignments) >= self.writer.rows:
            self.flush()  # a transaction each

    def _close(self, cid: str) -> None:
        members = self._open[cid]
        if members:
            first, last = members[0], members[-1]
            self.batches.append(
                Batch(self.run_id, cid, self._numbers[cid], first.seq, last.seq, first.offset, len(members))
            )
            self._numbers[cid] += 1
            self._open[cid] = []

    def finish(self) -> None:
        for cid in self._open:
            self._close(cid)
        self.flush()

    def flush(self) -> None:
        if self.assignments or self.sends:
            self.writer.write(self.run_id, self.assignments, self.sends)
            self.assignments, self.sends = [], []


def plan_run(
    ledger: Ledger,
    loaded: LoadedCampaign,
    run_id: str,
    *,
    resend_uncertain: bool = False,
    retry_failed: bool = False,
    rollout_of: tuple[str, str] | None = None,
    wave: WavePlan | None = None,
    writer: RowWriter | None = None,
) -> Plan:
    """Validate and plan `run_id` (new, or resumed when it exists); raises CampaignInvalid or ClarionError.

    `rollout_of` = (launch run id, winning variant) plans a rollout run instead: the rest of the audience,
    every one on the winner, beside the same holdout; no posts. `wave` plans a Thompson rollout's wave
    run instead: its share of the rest, each contact on the arm the recorded allocation gives them; no
    holdout, no posts (clarion.engine.bandit). `retry_failed` plans again a resumed run's
    failures whose provider answer proves the message was not taken (`ledger.RESENDABLE`). `writer`: where
    the contacts' rows go (default: this thread writes them); every one is committed before this returns."""
    digest = campaign_digest(loaded)
    existing = ledger.get_run(run_id)
    plan = Plan(run_id, resumed=existing is not None)
    if existing is not None:
        if existing.campaign != loaded.campaign.name:
            raise ClarionError(
                f"run {run_id!r} belongs to campaign {existing.campaign!r}, not {loaded.campaign.name!r}"
            )
        if existing.digest != digest:
            raise ClarionError(
                f"the campaign, its contacts or its templates changed since run {run_id!r} was planned; "
                "restore them to resume this run, or start a new run (without --run-id)"
            )
        ledger.mark_uncertain(run_id)
        if resend_uncertain:
            ledger.requeue_uncertain(run_id)
        if retry_failed:
            ledger.requeue_failed(run_id)
    else:
        loaded.contacts()  # a missing contacts file is reported before a run is created
        # Tokens name channels and variants by position: freeze the order with the run.
        # What the tracking service needs to redirect a click without reading the campaign file.
        campaign = loaded.campaign
        assigner = Assigner(campaign.name, campaign.experiment, campaign.test_share)
        shares = dict(zip(assigner.arms, assigner.shares, strict=True))  # for the sample-ratio check
        options: dict[str, object] = {
            "channels": list(campaign.channels),
            "variants": [v.id for v in campaign.experiment.variants],
            "kinds": {cid: channels.get(c.provider).kind.value for cid, c in campaign.channels.items()},
            "cta": campaign.cta.url,
            "cta_refcode_keep_as": campaign.cta.refcode_keep_as,
            "webhooks_out": [
                {"url": w.url, "events": list(w.events), "secret_env": w.secret_env}
                for w in campaign.webhooks_out or []
            ],
            "shares": {arm: share for arm, share in shares.items() if arm != REST},
            "channel_holdouts": dict(campaign.experiment.channel_holdouts),
            "attribution_window": campaign.attribution.window.total_seconds(),
            "automated_clicks": {
                "fast_click": campaign.tracking.automated_clicks.fast_click.total_seconds(),
                "burst": campaign.tracking.automated_clicks.burst.total_seconds(),
                "beacon": campaign.tracking.automated_clicks.beacon,
            },
        }
        if rollout_of is not None:
            rest, holdout = shares.get(REST, 0.0), shares.get(HOLDOUT, 0.0)
            options["shares"] = {
                **({HOLDOUT: holdout / (rest + holdout)} if holdout else {}),
                rollout_of[1]: rest / (rest + holdout),
            }
            options["rollout_of"] = rollout_of[0]
        if wave is not None:
            options["shares"] = dict(zip(wave.allocation.arms, wave.allocation.shares, strict=True))
            options["wave_of"] = {"run_id": wave.launch, "wave": wave.wave}
        if campaign.rollout is not None and campaign.rollout.strategy == "thompson" and wave is None:
            options["bandit"] = {
                "waves": campaign.rollout.waves,
                "uniform_share": campaign.rollout.uniform_share,
                "metric": campaign.rollout.metric,
            }
        ledger.create_run(
            run_id,
            campaign=loaded.campaign.name,
            campaign_file=str(loaded.path),
            digest=digest,
            options=options,
        )
    renderer = Renderer(loaded, LinkSigner.from_settings(), run_id)
    writer = writer or DirectWriter(ledger)
    planner = _Planner(
        ledger, loaded, run_id, winner=rollout_of[1] if rollout_of else None, wave=wave, writer=writer
    )
    # files validated before need no second rendering of every message; a campaign with share kits is
    # recorded by `clarion validate` only (planning checks the campaign, not its kits)
    digest = validation_digest(loaded)
    known = recall(loaded, digest) is not None
    try:
        plan.report = scan(loaded, renderer, planner.visit, render=not known)
        if not known and not loaded.campaign.share_kits:
            remember(plan.report, digest)
    except ClarionError as exc:
        writer.drop()
        ledger.set_run_status(run_id, RunStatus.FAILED, error=f"campaign invalid: {str(exc)[:500]}")
        raise
    except BaseException:
        writer.drop()
        raise
    planner.finish()
    writer.wait()
    social = [
        (cid, variant.id)
        for cid, config in loaded.campaign.channels.items()
        if channels.get(config.provider).kind is ChannelKind.SOCIAL and rollout_of is None and wave is None
        for variant in loaded.campaign.experiment.variants
        if variant.weight > 0
    ]
    ledger.plan_sends(
        run_id,
        [
            PlannedSend(channel=cid, variant=vid, contact_id=None, recipient=f"post:{vid}", seq=i, batch=i)
            for i, (cid, vid) in enumerate(social)
        ],
    )
    per_request = {
        cid: channels.get(config.provider).max_batch for cid, config in loaded.campaign.channels.items()
    }
    plan.batches = list(_ordered(planner.batches, social, run_id, per_request))
    return plan


def _ordered(
    batches: list[Batch], social: list[tuple[str, str]], run_id: str, per_request: dict[str, int]
) -> Iterator[Batch]:
    """The order batches are submitted in: the posts, then the first batch of every channel, so that all
    channels start at the same moment; then the rest, channels that carry many recipients per request
    (email) first. Sending shares one interpreter: a channel making one request per message (SMS) would
    otherwise take most of it and slow email down to its pace."""
    for i, (cid, _vid) in enumerate(social):
        yield Batch(run_id, cid, i, i, i, -1, 1, opening=True)
    queues: dict[str, list[Batch]] = {}
    for batch in batches:
        queues.setdefault(batch.channel, []).append(batch)
    for queue in queues.values():
        yield replace(queue[0], opening=True)
    for cid in sorted(queues, key=lambda c: -per_request.get(c, 1)):
        yield from queues[cid][1:]
