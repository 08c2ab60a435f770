"""Planning a run: every contact assigned, every send written to the ledger before anything goes out.

One pass over the audience validates and renders every contact (nothing is sent if anything is wrong),
records each contact's arm, and plans one send per reachable contact and channel, grouped in batches.
A batch is described by a small `Batch` (run, channel, number, where its contacts start in the file), which
is what the send tasks receive: never the contacts themselves. Planning is idempotent, so a resumed run
plans again, finds everything already there, and gets the same batches.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from clarion import channels
from clarion.base.addresses import address_keys, stored_form
from clarion.base.consent import Kind, consent_given, kind_of_channel
from clarion.base.errors import CampaignInvalid, ClarionError
from clarion.base.settings import ClarionSettings
from clarion.campaign.contacts import Contact, ContactsError, ContactsFile
from clarion.campaign.loader import LoadedCampaign, campaign_digest
from clarion.campaign.model import HOLDOUT, REST
from clarion.channels.base import ChannelKind, FrequencyCap
from clarion.engine.bandit import WavePlan
from clarion.engine.spawn import HELPER_AUDIENCE_BYTES
from clarion.ledger import PLAN_ROWS, Ledger, PlannedSend, RunStatus, SendFields
from clarion.messages.assign import Assigner
from clarion.messages.links import LinkSigner
from clarion.messages.render import Renderer
from clarion.messages.validate import ValidationReport, scan
from clarion.messages.validated import recall, remember, validation_digest

log = logging.getLogger("clarion.engine")

#: A contacts file this big is planned in halves numbered apart (`_Planner`), which a launch and its local
#: send helper can plan at once (`_Split`); the size at which a launch starts a helper
HALVES_BYTES = HELPER_AUDIENCE_BYTES
HALVES = "halves"  # the run option that says a run's halves were numbered apart

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
    (planning's end: nothing is sent before); `wait_through(mark())` once every chunk written before that
    `mark` is (a launch's openings: their rows); `drop` forgets chunks not yet written (planning failed).
    `parts`: who may plan the second half of a big contacts file meanwhile (None: nobody)."""

    rows: int
    parts: PartPlanner | None

    def write(
        self, run_id: str, assignments: list[tuple[int, str, str]], sends: list[PlannedSend]
    ) -> None: ...

    def wait(self) -> None: ...

    def mark(self) -> int: ...

    def wait_through(self, mark: int) -> None: ...

    def drop(self) -> None: ...


@dataclass(frozen=True)
class Part:
    """The second half of a big contacts file, offered to a local send helper while the launch plans the
    first: the helper plans and writes it as the launch would have (`plan_part`)."""

    run_id: str
    offset: int  # where the half starts (ContactsFile.middle): the helper confirms a record starts there
    digest: str  # the run's campaign digest: a helper that loaded other files declines
    render: bool  # scan's `render`: False when these files validated before


@dataclass
class PartResult:
    """What a helper planned: the part's first seq, its report's tally, its batches, and how many rows it
    wrote."""

    count: int
    tally: dict[str, Any]
    batches: list[Batch]
    rows: int


INVALID = "invalid"  # a helper's answer for a part with a problem: the launch finds and lists them all


class PartPlanner(Protocol):
    """The launch's side of a part (clarion/engine/helpers.py): offered before planning reads, `taken`
    asked once when planning reaches it (False: withdrawn, the launch reads on), then `result` awaited:
    the PartResult, why not (a str: INVALID, or a reason when nothing was written), or None when the
    helper died (having written some of it, maybe)."""

    def offer(self, part: Part) -> None: ...

    def taken(self) -> bool: ...

    def result(self) -> PartResult | str | None: ...


class Opener(Protocol):
    """Who sends a new run's opening batches while the rest of it is planned (flows/openings.py).

    Only for files that validated before, or that a `Checker` found valid while this plans (nothing found
    while planning can stop the run then): once every channel of `channels` (the first step's) has its
    opening batch, the rows planned by then are committed and `opened` gets the posts and those batches;
    planning reads on. `stopped` True makes planning stop (`PlanningStopped`): the launch was asked to stop,
    and a resume plans the rest."""

    channels: frozenset[str]

    def opened(self, batches: list[Batch]) -> None: ...

    def stopped(self) -> bool: ...


class Checker(Protocol):
    """Who is validating a launch's files while it plans (a local send helper, clarion/engine/helpers.py).

    Planning then reads every contact without rendering and checking each message itself, sends nothing
    (no openings handed) until `valid` says True, and checks every message itself after all when it says
    False: the files are invalid (that pass lists every problem), or the checker could not tell."""

    campaign: Path  # the campaign file it validates (resolved)

    def valid(self, digest: str, wait: bool = False) -> bool | None:
        """Whether the files under this validation digest are valid; None: not known yet (`wait` False)."""
        ...


class PlanningStopped(Exception):
    """Planning stopped before its end because the launch was asked to stop (`Opener.stopped`)."""


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
    parts: PartPlanner | None = None

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def write(self, run_id: str, assignments: list[tuple[int, str, str]], sends: list[PlannedSend]) -> None:
        write_rows(self.ledger, run_id, assignments, sends)

    def wait(self) -> None:
        pass

    def mark(self) -> int:
        return 0

    def wait_through(self, mark: int) -> None:
        pass  # each chunk was committed as it was written

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
        middle: int | None = None,
    ) -> None:
        """`middle`: where the file's second half starts (`halves`): from the record there on, batches are
        numbered above any number the first half can reach, so that two processes can plan a half each, and
        a resume or either alone number every batch alike."""
        self.ledger, self.run_id = ledger, run_id
        self.writer = writer
        self.written = 0  # rows handed to the writer
        self.early: _Early | None = None  # who hands a launch's openings before planning ends
        self._middle = middle
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

    @property
    def channels(self) -> list[str]:
        """The per-contact channels this planner makes batches of."""
        return list(self._open)

    def opened(self, channels: list[str]) -> bool:
        """Whether each of `channels` has its first batch."""
        return all(self._numbers[cid] for cid in channels)

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
        if self._middle is not None and contact.offset >= self._middle:
            self._second_half(contact)
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

    def _second_half(self, contact: Contact) -> None:
        """The first contact at or after the middle: where a record starts exactly there, the first half's
        batches end and the second half's are numbered from 2 + (records before) // batch size. The first
        half's `seq` records make an opening batch and at most seq // size more: numbers below that."""
        if contact.offset == self._middle:
            for cid in self._open:
                self._close(cid)
                self._numbers[cid] = 2 + contact.seq // self._sizes[cid]
        self._middle = None

    def _close(self, cid: str) -> None:
        members = self._open[cid]
        if members:
            first, last = members[0], members[-1]
            self.batches.append(
                Batch(self.run_id, cid, self._numbers[cid], first.seq, last.seq, first.offset, len(members))
            )
            self._numbers[cid] += 1
            self._open[cid] = []
            if self.early is not None and not self.early.handed:  # a channel's first batch, maybe the last
                self.early.check()

    def finish(self) -> None:
        for cid in self._open:
            self._close(cid)
        self.flush()

    def flush(self) -> None:
        if self.early is not None and self.early.opener.stopped():  # looked at once a chunk
            raise PlanningStopped(f"planning of run {self.run_id} stopped: the launch was asked to stop")
        if self.assignments or self.sends:
            self.written += len(self.assignments) + len(self.sends)
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
    opener: Opener | None = None,
    checker: Checker | None = None,
) -> Plan:
    """Validate and plan `run_id` (new, or resumed when it exists); raises CampaignInvalid or ClarionError.

    `rollout_of` = (launch run id, winning variant) plans a rollout run instead: the rest of the audience,
    every one on the winner, beside the same holdout; no posts. `wave` plans a Thompson rollout's wave
    run instead: its share of the rest, each contact on the arm the recorded allocation gives them; no
    holdout, no posts (clarion.engine.bandit). `retry_failed` plans again a resumed run's
    failures whose provider answer proves the message was not taken (`ledger.RESENDABLE`). `writer`: where
    the contacts' rows go (default: this thread writes them); every one is committed before this returns.
    `opener`: who sends a new launch's openings before planning ends (`Opener`; only when these files
    validated before, or `checker` found them valid). `checker`: who validates files that never validated
    while this plans (`Checker`)."""
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
            # a big file's halves numbered apart (_middle), so a resume numbers them alike: on PostgreSQL,
            # where a helper planning one half writes beside the launch (SQLite has one writer at a time:
            # there the helper writes the launch's rows while it reads the whole file, HelperWriter)
            HALVES: ledger.url.get_backend_name() == "postgresql",
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
    # files validated before need no second rendering of every message; a campaign with share kits is
    # recorded by `clarion validate` only (planning checks the campaign, not its kits)
    validated = validation_digest(loaded)
    render = recall(loaded, validated) is None
    if not render or checker is None or checker.campaign != loaded.path.resolve():
        checker = None  # nothing to check, or not these files (a kit's)
    else:  # the checker renders and checks every message meanwhile: this pass need not
        render = False
    middle = _middle(loaded, bool((existing.options if existing else options).get(HALVES)))
    split = None
    if middle is not None and writer.parts is not None and existing is None and not (rollout_of or wave):
        split = _Split(writer.parts, Part(run_id, middle, digest, render))
    planner = _Planner(
        ledger,
        loaded,
        run_id,
        winner=rollout_of[1] if rollout_of else None,
        wave=wave,
        writer=writer if split is None else DirectWriter(ledger),  # the helper plans, not writes, then
        middle=middle,
    )
    social = _posts(loaded, rollout_of is None and wave is None)
    posts = [
        PlannedSend(channel=cid, variant=vid, contact_id=None, recipient=f"post:{vid}", seq=i, batch=i)
        for i, (cid, vid) in enumerate(social)
    ]
    if opener is not None and existing is None and not render and rollout_of is None and wave is None:
        ready = (lambda: checker.valid(validated) is True) if checker is not None else None
        _Early(opener, planner, ledger, posts, ready)
    more: list[Batch] = []
    try:
        seen: set[str] = set()
        try:
            plan.report = scan(
                loaded,
                renderer,
                planner.visit,
                render=render,
                until=split.until if split else None,
                seen=seen,
            )
        except CampaignInvalid:
            if split is not None:  # part of the file was read: one pass over it all lists every problem
                scan(loaded, renderer, render=render)
            raise
        if split is not None and split.stop is not None:
            more = split.rest(ledger, loaded, renderer, planner, plan.report, seen)
        planner.finish()
        if checker is not None and not checker.valid(validated, wait=True):
            render = True  # invalid, or not known: every message checked here, every problem listed
            plan.report = scan(loaded, renderer, render=True)
        if render and not loaded.campaign.share_kits:
            remember(plan.report, validated)
    except ClarionError as exc:
        writer.drop()
        ledger.set_run_status(run_id, RunStatus.FAILED, error=f"campaign invalid: {str(exc)[:500]}")
        raise
    except BaseException:
        writer.drop()
        raise
    writer.wait()
    ledger.plan_sends(run_id, posts)  # already there when the openings went before planning's end
    per_request = {
        cid: channels.get(config.provider).max_batch for cid, config in loaded.campaign.channels.items()
    }
    plan.batches = list(_ordered(planner.batches + more, social, run_id, per_request))
    return plan


def _posts(loaded: LoadedCampaign, launch: bool) -> list[tuple[str, str]]:
    """A launch's posts (channel, variant): one per social channel and variant sent at all; none for a
    rollout's or a Thompson wave's run."""
    return [
        (cid, variant.id)
        for cid, config in loaded.campaign.channels.items()
        if launch and channels.get(config.provider).kind is ChannelKind.SOCIAL
        for variant in loaded.campaign.experiment.variants
        if variant.weight > 0
    ]


def _post_batch(run_id: str, channel: str, number: int) -> Batch:
    """The opening batch of a launch's post number `number` (`_posts`' order: its seq and batch too)."""
    return Batch(run_id, channel, number, number, number, -1, 1, opening=True)


class _Early:
    """A new launch's openings handed to its `Opener` before planning ends, by its planner: once every
    channel the opener waits for has closed its first batch (`check`, from the planner), or at once for
    posts alone; and `ready` (a Checker found the files valid), if given. The planner looks at
    `opener.stopped` before each chunk it writes: no cost per contact."""

    def __init__(
        self,
        opener: Opener,
        planner: _Planner,
        ledger: Ledger,
        posts: list[PlannedSend],
        ready: Callable[[], bool] | None = None,
    ) -> None:
        self.opener, self.planner, self.ledger = opener, planner, ledger
        self.ready = ready  # whether the files are known valid (a Checker's answer), when not known before
        self.posts = [p for p in posts if p.channel in opener.channels]
        self.waiting = [cid for cid in planner.channels if cid in opener.channels]
        self.handed = not (self.waiting or self.posts)  # nothing of the first step is planned here
        self.mark: int | None = None  # the writer's mark once every opening's rows were handed to it
        planner.early = self
        if not self.handed and not self.waiting:  # posts alone at launch: no contact to wait for
            self.check()

    def check(self) -> None:
        if self.mark is None and self.planner.opened(self.waiting):
            self.planner.flush()  # the openings' rows: all in chunks up to this mark
            self.mark = self.planner.writer.mark()
        if self.mark is not None and (self.ready is None or self.ready()):
            self._hand()

    def _hand(self) -> None:
        """Commit the openings' rows (every chunk up to the mark; planned later, waiting for a Checker's
        answer, need not be) and the posts', then hand the posts and each channel's first batch."""
        self.handed = True
        planner = self.planner
        assert self.mark is not None
        planner.writer.wait_through(self.mark)
        self.ledger.plan_sends(planner.run_id, self.posts)
        first: dict[str, Batch] = {}
        for batch in planner.batches:
            if batch.channel in self.waiting:
                first.setdefault(batch.channel, replace(batch, opening=True))
        posts = [_post_batch(planner.run_id, p.channel, p.batch) for p in self.posts]
        self.opener.opened(posts + list(first.values()))


def _middle(loaded: LoadedCampaign, halves: bool) -> int | None:
    """Where the second half of a contacts file of HALVES_BYTES or more starts (ContactsFile.middle), for
    `_Planner`; None for a smaller file, a query, or a run whose options do not say HALVES (a SQLite
    ledger's, or one planned before halves were numbered apart: it is resumed as it was planned)."""
    if not halves:
        return None
    contacts = loaded.contacts()
    if not isinstance(contacts, ContactsFile) or contacts.path.stat().st_size < HALVES_BYTES:
        return None
    return contacts.middle()


class _Split:
    """Planning shared with a local send helper (a new run, a big contacts file): the launch reads up to the
    file's middle, a helper from there (`plan_part`), each writing its own rows. What the helper could not
    do (it was not up in time, declined, failed or died), the launch does after all, with the same rows
    and batch numbers (`_Planner`'s halves); a problem anywhere is listed by one pass over the whole file."""

    def __init__(self, parts: PartPlanner, part: Part) -> None:
        self.parts, self.part = parts, part
        self.stop: Contact | None = None  # the first contact of the helper's part, once it took it
        self._asked = False
        parts.offer(part)

    def until(self, contact: Contact) -> bool:
        """scan's `until`: the launch stops at the middle when a helper took the part, else reads on."""
        if self._asked or contact.offset < self.part.offset:
            return False
        self._asked = True
        if self.parts.taken():
            self.stop = contact
            return True
        return False

    def rest(
        self,
        ledger: Ledger,
        loaded: LoadedCampaign,
        renderer: Renderer,
        planner: _Planner,
        report: ValidationReport,
        seen: set[str],
    ) -> list[Batch]:
        """The helper's part added to the launch's `report`, and its batches; or, when the helper did not
        plan it, planned here by `planner` (which has the first half's batches open)."""
        assert self.stop is not None
        stop, result, run_id = self.stop, self.parts.result(), self.part.run_id
        display = loaded.contacts().display
        if isinstance(result, PartResult) and result.count == stop.seq:
            report.absorb(result.tally)
            ledger.inserted_elsewhere(result.rows)
            planner.flush()
            # an id in both halves: its second assignment was not written (one per contact and run)
            if sum(ledger.arm_counts(run_id).values()) == report.contacts:
                return result.batches
        if result == INVALID or (isinstance(result, PartResult) and result.count == stop.seq):
            scan(loaded, renderer, render=self.part.render)  # one pass over it all lists every problem
            raise ClarionError(f"a contact of {display} has a problem: `clarion validate` the campaign")
        if isinstance(result, PartResult):
            raise ClarionError(
                f"{display} changed while run {run_id} was planned; "
                "leave the file as it is while a run plans, and start a new run"
            )
        log.warning(
            "run %s: the send helper did not plan the second half of the contacts (%s); the launch does",
            run_id,
            result or "it stopped",
        )
        start = (stop.offset, stop.seq, stop.line - 1)
        more = scan(loaded, renderer, planner.visit, render=self.part.render, start=start, seen=seen)
        report.absorb(more.tally())
        return []


def plan_part(ledger: Ledger, loaded: LoadedCampaign, part: Part) -> PartResult | str:
    """A local send helper's side of a split plan: confirm a record starts at `part.offset`, then plan and
    write every contact from there as the launch would have (numbered after those before it, batches
    numbered above the launch's). A str says why not: INVALID for a problem in the part (the launch lists
    them all, and the run fails; the rows before the first problem stay, as in one pass), else nothing
    was written."""
    if campaign_digest(loaded) != part.digest:
        return "the campaign's files changed since the run was planned"
    contacts = loaded.contacts()
    if not isinstance(contacts, ContactsFile):
        return "the audience is a query"
    try:
        count = contacts.count_before(part.offset)
    except ContactsError:
        return INVALID
    if count is None:
        return "no record starts at the file's middle (a quoted value spans it)"
    renderer = Renderer(loaded, LinkSigner.from_settings(), part.run_id)
    planner = _Planner(ledger, loaded, part.run_id, writer=DirectWriter(ledger), middle=part.offset)
    try:
        report = scan(loaded, renderer, planner.visit, render=part.render, start=(part.offset, count, None))
    except CampaignInvalid:
        return INVALID
    planner.finish()
    return PartResult(count, report.tally(), planner.batches, planner.written)


def _ordered(
    batches: list[Batch], social: list[tuple[str, str]], run_id: str, per_request: dict[str, int]
) -> Iterator[Batch]:
    """The order batches are submitted in: the posts, then the first batch of every channel, so that all
    channels start at the same moment; then the rest, channels that carry many recipients per request
    (email) first. Sending shares one interpreter: a channel making one request per message (SMS) would
    otherwise take most of it and slow email down to its pace."""
    for i, (cid, _vid) in enumerate(social):
        yield _post_batch(run_id, cid, i)
    queues: dict[str, list[Batch]] = {}
    for batch in batches:
        queues.setdefault(batch.channel, []).append(batch)
    for queue in queues.values():
        yield replace(queue[0], opening=True)
    for cid in sorted(queues, key=lambda c: -per_request.get(c, 1)):
        yield from queues[cid][1:]
