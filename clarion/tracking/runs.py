"""Which run, channel, variant and contact a token or an address names, with the run facts cached.

A token carries positions, not names: the run by a 5-byte key, the channel and variant by their index in
the run's campaign (frozen in the run's options when it was planned), the contact by audience position.
Runs never change once planned, so what is looked up once is kept (a bounded cache: a busy service meets
few runs). Addresses (for conversions keyed by email or phone) are never stored in the ledger: they are
read from the run's contacts file, once per run, into memory.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from clarion import channels
from clarion.base import addresses
from clarion.base.errors import ClarionError
from clarion.campaign.loader import load_campaign
from clarion.channels.base import ChannelKind
from clarion.channels.webhooks import Target as WebhookTarget
from clarion.ledger import Ledger, RunRecord
from clarion.messages.links import KEEP_REFCODE_AS, LinkClaims, LinkSigner, cta_url

MAX_RUNS = 256


@dataclass(frozen=True)
class RunFacts:
    """What the tracking service needs to know about a run, from its ledger record."""

    run_id: str
    campaign: str
    campaign_file: str
    channels: tuple[str, ...]
    variants: tuple[str, ...]
    kinds: dict[str, ChannelKind]
    cta: str
    responder: bool = False  # a responder's run: its links lead where each reply pointed them
    keep_refcode_as: str = KEEP_REFCODE_AS  # an ActBlue CTA's own refcode moves there (cta.refcode_keep_as)

    @classmethod
    def of(cls, run: RunRecord) -> RunFacts:
        options = run.options
        kinds = {cid: ChannelKind(kind) for cid, kind in options.get("kinds", {}).items()}
        return cls(
            run_id=run.id,
            campaign=run.campaign,
            campaign_file=run.campaign_file,
            channels=tuple(options.get("channels", ())),
            variants=tuple(options.get("variants", ())),
            kinds=kinds,
            cta=str(options.get("cta", "")),
            responder="responder" in options,
            keep_refcode_as=str(options.get("cta_refcode_keep_as") or KEEP_REFCODE_AS),
        )


@dataclass(frozen=True)
class Target:
    """A verified token, resolved: the run, channel, variant and (for email and SMS) contact it names."""

    run: RunFacts
    channel: str
    variant: str
    contact_seq: int | None
    token: str

    @property
    def plain(self) -> WebhookTarget:
        """What a provider's webhook needs of it: run, channel, variant, contact."""
        return WebhookTarget(self.run.run_id, self.channel, self.variant, self.contact_seq)

    def redirect(self, destination: str | None = None) -> str:
        """Where a click goes: the run's CTA page (for a responder, the page the reply pointed to, as the
        ledger recorded it), with UTM parameters and the token; never anywhere a request names."""
        return cta_url(
            destination or self.run.cta,
            campaign=self.run.campaign,
            channel=self.channel,
            kind=self.run.kinds[self.channel],
            variant=self.variant,
            token=self.token,
            keep_refcode_as=self.run.keep_refcode_as,
        )


class RunDirectory:
    """Resolves tokens and addresses to runs and contacts; thread-safe."""

    def __init__(self, ledger: Ledger, signer: LinkSigner) -> None:
        self.ledger = ledger
        self.signer = signer
        self._lock = threading.Lock()
        self._runs: OrderedDict[bytes, RunFacts] = OrderedDict()
        self._addresses: OrderedDict[str, AddressIndex] = OrderedDict()

    def resolve(self, token: str) -> Target | None:
        """The target of a genuine token of a known run; None for anything else (forged, unknown, stale)."""
        claims = self.signer.verify(token)
        if claims is None:
            return None
        facts = self.run(claims)
        if facts is None or claims.channel >= len(facts.channels) or claims.variant >= len(facts.variants):
            return None
        channel = facts.channels[claims.channel]
        if channel not in facts.kinds or not facts.cta:
            return None
        return Target(facts, channel, facts.variants[claims.variant], claims.contact, token)

    def run(self, claims: LinkClaims) -> RunFacts | None:
        with self._lock:
            facts = self._runs.get(claims.run)
            if facts is not None:
                self._runs.move_to_end(claims.run)
                return facts
        record = self.ledger.run_by_key(claims.run.hex())
        if record is None:
            return None
        facts = RunFacts.of(record)
        with self._lock:
            self._runs[claims.run] = facts
            while len(self._runs) > MAX_RUNS:
                self._runs.popitem(last=False)
        return facts

    def responder_redirect(self, target: Target) -> str:
        """A responder's personal link: the destination of the newest reply of that rule to that
        conversation (e.g. the sender's state's registration page), else the responder's `link.url`."""
        assert target.contact_seq is not None
        return target.redirect(self.ledger.link_destination(target.contact_seq, target.variant))

    def run_by_id(self, run_id: str) -> RunFacts | None:
        record = self.ledger.get_run(run_id)
        return None if record is None else RunFacts.of(record)

    def contact_by_address(self, facts: RunFacts, *, email: str | None, phone: str | None) -> int | None:
        """The audience position of the contact with this email or phone in the run's contacts file."""
        return self._address_index(facts).find(email=email, phone=phone)

    def address_of(self, facts: RunFacts, seq: int, kind: ChannelKind) -> str | None:
        """The email address or phone number of the contact at `seq` in the run's contacts file."""
        index = self._address_index(facts)
        return (index.email_of if kind is ChannelKind.EMAIL else index.phone_of).get(seq)

    def _address_index(self, facts: RunFacts) -> AddressIndex:
        with self._lock:
            index = self._addresses.get(facts.run_id)
            if index is not None:
                return index
        index = AddressIndex.read(Path(facts.campaign_file))
        with self._lock:
            self._addresses[facts.run_id] = index
            while len(self._addresses) > 8:  # the big ones: a few runs' audiences at most
                self._addresses.popitem(last=False)
        return index


@dataclass
class AddressIndex:
    """Normalised email and phone -> audience position, for every contact of a campaign's contacts file.

    Emails are keyed lower-cased whole; phone numbers as the campaign's SMS channel reads them (its
    adapter's normalisation, with its default region), so a number typed without +1 still matches."""

    emails: dict[str, int]
    phones: dict[str, int]
    read_phone: Callable[[str], str] = addresses.phone
    email_of: dict[int, str] = field(default_factory=dict)  # audience position -> address, for unsubscribes
    phone_of: dict[int, str] = field(default_factory=dict)

    def find(self, *, email: str | None, phone: str | None) -> int | None:
        """The audience position of the contact with this email (first) or phone number, if any."""
        if email and (seq := self.emails.get(addresses.email_key(email))) is not None:
            return seq
        if phone and (key := self.phone_key(phone)) is not None:
            return self.phones.get(key)
        return None

    def phone_key(self, raw: str) -> str | None:
        try:
            return self.read_phone(raw)
        except ValueError:
            return None

    @classmethod
    def read(cls, campaign_file: Path) -> AddressIndex:
        try:
            loaded = load_campaign(campaign_file)
        except (ClarionError, OSError) as exc:
            raise ClarionError(f"cannot read the run's campaign {campaign_file}: {exc}") from None
        index = cls({}, {})
        email_columns, phone_columns = {"email"}, {"phone"}
        for config in loaded.campaign.channels.values():
            adapter = channels.get(config.provider)
            if adapter.address_column and adapter.kind is ChannelKind.EMAIL:
                email_columns.add(adapter.address_column)
            elif adapter.address_column and adapter.kind is ChannelKind.SMS:
                phone_columns.add(adapter.address_column)
                if index.read_phone is addresses.phone:  # the first SMS channel's reading of numbers
                    index.read_phone = partial(adapter.normalise_address, config=config)
        for contact in loaded.contacts().records():
            for column in email_columns:
                if raw := contact.fields.get(column, "").strip():
                    index.emails.setdefault(addresses.email_key(raw), contact.seq)
                    index.email_of.setdefault(contact.seq, raw)
            for column in phone_columns:
                if (raw := contact.fields.get(column, "").strip()) and (key := index.phone_key(raw)):
                    index.phones.setdefault(key, contact.seq)
                    index.phone_of.setdefault(contact.seq, key)
        return index
