"""Whole-campaign validation: the file, its templates, and every contact rendered under each channel's rules.

Problems that repeat across contacts (a bad address, a template field missing for some rows, a text too
long for some names) are grouped: one line per kind of problem, naming the first few contacts and how many
in all, located where the fix goes (the contacts file's line, or the template's).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from clarion import channels
from clarion.base.addresses import PhoneShaped
from clarion.base.consent import consent_given
from clarion.base.errors import CampaignInvalid, ClarionError, Problem
from clarion.base.runtime import bulk_work
from clarion.campaign.contacts import Contact, ContactsError, ContactsFile
from clarion.campaign.kits import load_kits
from clarion.campaign.loader import LoadedCampaign, load_campaign
from clarion.campaign.model import HOLDOUT, REST, ShareKit, Variant
from clarion.campaign.query import QueryContacts
from clarion.channels.base import Channel, ChannelConfig, ChannelKind, Message
from clarion.messages.assign import Assigner
from clarion.messages.links import LinkSigner
from clarion.messages.render import PREVIEW_RUN, Renderer
from clarion.messages.sources import RenderProblem

EXAMPLES_SHOWN = 3
#: Checked messages remembered by what they depend on (`Renderer.check_key`); cleared when full, so that
#: memory stays flat on any audience.
CHECK_MEMO = 65_536
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class _Group:
    problem: Problem
    examples: list[str] = field(default_factory=list)
    count: int = 0


class ProblemGroups:
    """Problems keyed by what they are and where, each with the contacts it hit."""

    def __init__(self) -> None:
        self._groups: dict[tuple[str, ...], _Group] = {}
        self.unit = "line"  # how the contacts' source numbers them ("row" for a query's result)

    def add(self, key: tuple[str, ...], problem: Problem, contact: Contact | None = None) -> None:
        group = self._groups.setdefault(key, _Group(problem))
        group.count += 1
        if contact is not None and len(group.examples) < EXAMPLES_SHOWN:
            group.examples.append(f"{contact.id or '(no id)'} ({self.unit} {contact.line})")

    def problems(self) -> list[Problem]:
        out = []
        for group in self._groups.values():
            problem = group.problem
            if group.examples:
                more = group.count - len(group.examples)
                who = ", ".join(group.examples) + (
                    f" and {more} more ({group.count} in all)" if more > 0 else ""
                )
                label = "contact" if group.count == 1 else "contacts"
                problem = Problem(
                    problem.file,
                    problem.line,
                    problem.col,
                    f"{problem.message} [{label}: {who}]",
                    problem.field,
                )
            out.append(problem)
        return out

    def __bool__(self) -> bool:
        return bool(self._groups)


@dataclass
class ValidationReport:
    loaded: LoadedCampaign
    contacts: int = 0
    arms: Counter[str] = field(default_factory=Counter)
    reachable: Counter[str] = field(default_factory=Counter)  # channel -> contacts with an address
    consented: Counter[str] = field(default_factory=Counter)  # channel -> of those, who agreed (SMS)
    withheld: Counter[str] = field(default_factory=Counter)  # channel -> of the reachable, its holdout
    samples: dict[str, Message] = field(default_factory=dict)

    def tally(self) -> dict[str, Any]:
        """The counts and samples, without the campaign: what a helper that planned a part sends back."""
        names = ("contacts", "arms", "reachable", "consented", "withheld", "samples")
        return {name: getattr(self, name) for name in names}

    def absorb(self, tally: dict[str, Any]) -> None:
        """Add the tally of the contacts after this report's (its samples are of later contacts: kept only
        for a channel and variant this report has none of, as one pass would have)."""
        self.contacts += tally["contacts"]
        for name in ("arms", "reachable", "consented", "withheld"):
            getattr(self, name).update(tally[name])
        for key, message in tally["samples"].items():
            self.samples.setdefault(key, message)


#: Called for every valid contact: (contact, arm, {channel id: normalised address or None}).
Visitor = Callable[[Contact, str, dict[str, str | None]], None]


def validate_campaign(path: Path | str) -> ValidationReport:
    """Load and check one campaign file (see `validate`)."""
    return validate(load_campaign(path))


#: Told how far a check of a contacts file is: (bytes read, the file's size)
Progress = Callable[[int, int], None]
PROGRESS_CONTACTS = 5_000  # contacts between two calls of a Progress


def validate(loaded: LoadedCampaign, progress: Progress | None = None) -> ValidationReport:
    """Check everything that can be checked before sending, share kits included; raises CampaignInvalid
    listing every problem. `progress` hears how far the campaign's own contacts file is read."""
    problems = []
    kits = []
    try:
        kits = load_kits(loaded)
    except CampaignInvalid as exc:
        problems.extend(exc.problems)
    report = None
    signer = LinkSigner.from_settings()
    for each in [loaded, *(kit for _, kit in kits)]:
        try:
            counting = _counting(each, progress) if each is loaded else None
            scanned = scan(each, Renderer(each, signer, PREVIEW_RUN), counting)
        except CampaignInvalid as exc:
            problems.extend(exc.problems)
            continue
        if each is loaded:
            report = scanned
    if problems or report is None:
        raise CampaignInvalid(problems)
    return report


def _counting(loaded: LoadedCampaign, progress: Progress | None) -> Visitor | None:
    """A visitor telling `progress` how far a contacts file is read, every PROGRESS_CONTACTS contacts."""
    contacts = loaded.contacts()
    if progress is None or not isinstance(contacts, ContactsFile):
        return None
    size, seen = contacts.path.stat().st_size, 0

    def visit(contact: Contact, arm: str, addresses: dict[str, str | None]) -> None:
        nonlocal seen
        seen += 1
        if seen % PROGRESS_CONTACTS == 0:
            progress(contact.offset, size)

    return visit


def check_kits(parent: LoadedCampaign) -> list[tuple[ShareKit, LoadedCampaign]]:
    """The parent's share kits, loaded and each checked as `clarion validate` checks a campaign
    (contacts, templates, every message): at the launch, not hours later when a kit is due."""
    kits = load_kits(parent)
    problems: list[Problem] = []
    signer = LinkSigner.from_settings()
    for _, kit in kits:
        try:
            scan(kit, Renderer(kit, signer, PREVIEW_RUN))
        except CampaignInvalid as exc:
            problems.extend(exc.problems)
    if problems:
        raise CampaignInvalid(problems)
    return kits


def scan(
    loaded: LoadedCampaign,
    renderer: Renderer,
    visitor: Visitor | None = None,
    *,
    render: bool = True,
    start: tuple[int, int, int | None] | None = None,
    until: Callable[[Contact], bool] | None = None,
    seen: set[str] | None = None,
) -> ValidationReport:
    """One pass over the audience: check and render every contact, telling `visitor` about each.

    `render=False`: these very files validated before (validated.py), so each contact's messages need not
    be rendered and checked again; the contacts are still read, checked and told to `visitor`.

    A pass over part of a contacts file (planning split between two processes, clarion/engine/plan.py):
    `start` = (offset, seq, line before) of the record to begin at, as a read from the top found it (line
    None: not known); `until(contact)` True ends the pass before that contact; `seen` holds the ids met
    (duplicates are checked against what it held before)."""
    contacts = loaded.contacts()
    report = ValidationReport(loaded)
    groups = ProblemGroups()
    groups.unit = contacts.unit
    campaign = loaded.campaign
    variants = {v.id: v for v in campaign.experiment.variants}
    # per channel, what each contact's check needs: looked up once, not once a contact
    per_contact: list[tuple[str, type[Channel], ChannelConfig, str, str | None]] = []
    for cid, config in campaign.channels.items():
        adapter = channels.get(config.provider)
        if adapter.kind is ChannelKind.SOCIAL:
            for variant in campaign.experiment.variants:
                _render_checked(renderer, cid, variant, None, None, groups, report)
            continue
        column = adapter.address_column
        if column and column not in contacts.columns:
            groups.add(
                ("column", cid),
                loaded.source.problem(
                    ("channels", cid),
                    f"{adapter.provider} sends to the {column!r} column, which {contacts.display} lacks "
                    f"(columns: {', '.join(contacts.columns)})",
                    key=True,
                ),
            )
            continue
        consent = adapter.consent_column
        if consent and consent not in contacts.columns:
            groups.add(
                ("consent", cid),
                loaded.source.problem(
                    ("channels", cid),
                    f"{adapter.kind.value.upper()} goes only to contacts who agreed to it: "
                    f"{contacts.display} needs a {consent!r} column (yes/no per contact; only 'yes' is sent)",
                    key=True,
                ),
            )  # the rest is still checked: one run of validate lists every problem
        asked = consent if consent and consent in contacts.columns else None
        per_contact.append((cid, adapter, config, column or "", asked))

    assigner = Assigner(campaign.name, campaign.experiment, campaign.test_share)
    seen = set() if seen is None else seen
    if start is None:
        records = contacts.records()
    elif isinstance(contacts, ContactsFile):
        records = contacts.records(start[0], start[1], line=start[2])
    else:
        raise ValueError("a pass from a position in the audience reads a contacts file, not a query")
    # an id that is a phone number where the campaign texts (its SMS channels' regions; else the US)
    phone_shaped = PhoneShaped(
        str(region)
        for config in campaign.channels.values()
        if (region := getattr(config, "default_region", None))
    )
    memo: dict[tuple[object, ...], _Checked] = {}
    with bulk_work():  # a few containers per contact, freed at once: fewer collector passes
        try:
            for contact in records:
                if until is not None and until(contact):
                    break
                report.contacts += 1
                if not _contact_ok(contact, contacts, seen, groups, phone_shaped):
                    continue
                arm = assigner.arm(contact.id)
                report.arms[arm] += 1
                addresses: dict[str, str | None] = {}
                for cid, adapter, config, column, consent in per_contact:
                    raw = contact.fields.get(column, "")
                    if arm != HOLDOUT:
                        addresses[cid] = None
                    agreed = True
                    if consent is not None:
                        try:
                            agreed = consent_given(contact.fields.get(consent, ""))
                        except ValueError as exc:
                            at = contacts.column_of(consent)
                            problem = Problem(contacts.display, contact.line, at, str(exc), consent)
                            groups.add(("consent_value", cid), problem, contact)
                            continue
                    if not raw:
                        continue  # not reachable on this channel: skipped at send time, with the reason
                    try:
                        address = adapter.normalise_address(raw, config)
                    except ValueError as exc:
                        at = contacts.column_of(column)
                        problem = Problem(contacts.display, contact.line, at, str(exc), f"channels.{cid}")
                        groups.add(("address", cid), problem, contact)
                        continue
                    if arm == HOLDOUT:
                        continue  # checked all the same: the file is wrong, whoever the contact is
                    addresses[cid] = address
                    report.reachable[cid] += 1
                    if assigner.withheld(contact.id, cid):
                        report.withheld[cid] += 1
                    if adapter.consent_column and agreed:
                        report.consented[cid] += 1
                    if not render:
                        continue
                    # the rest of a rollout gets whichever variant wins: each must render for them
                    for variant in [variants[arm]] if arm != REST else list(variants.values()):
                        _render_checked(renderer, cid, variant, contact, address, groups, report, memo)
                if visitor is not None and not groups:
                    visitor(contact, arm, addresses)
        except ContactsError as exc:
            groups.add(("file",), exc.problem)
    if report.contacts == 0 and not groups and start is None and until is None:
        groups.add(("empty",), Problem(contacts.display, 2, 1, "has a header but no contacts"))
    if groups:
        raise CampaignInvalid(groups.problems())
    return report


def _contact_ok(
    contact: Contact,
    contacts: ContactsFile | QueryContacts,
    seen: set[str],
    groups: ProblemGroups,
    phone_shaped: PhoneShaped,
) -> bool:
    cid = contact.id

    def bad(code: str, message: str) -> bool:
        column = contacts.column_of("id")
        groups.add(("id", code), Problem(contacts.display, contact.line, column, message, "id"), contact)
        return False

    if not cid:
        return bad("empty", "contact has an empty id; every contact needs a unique id")
    if cid in seen:
        return bad("duplicate", f"contact id {cid!r} appears more than once; ids must be unique")
    seen.add(cid)
    if _CONTROL.search(cid) or len(cid) > 128:
        return bad("shape", "contact id has control characters or is over 128 characters")
    if "@" in cid or phone_shaped(cid):
        return bad(
            "pii",
            "contact id looks like an email address or phone number; ids are stored in the ledger and "
            "sent to providers as metadata, so use an opaque id (e.g. your CRM's)",
        )
    tz = contact.fields.get("timezone", "")
    if tz:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a zone folder ("America")
            groups.add(
                ("timezone",),
                Problem(
                    contacts.display,
                    contact.line,
                    contacts.column_of("timezone"),
                    f"timezone {tz!r} is not an IANA time zone (e.g. America/Chicago)",
                    "timezone",
                ),
                contact,
            )
    return True


#: A message's check: the rules it breaks (code, text), or the template failure it met.
_Checked = list[tuple[str, str]] | RenderProblem


def _render_checked(
    renderer: Renderer,
    cid: str,
    variant: Variant,
    contact: Contact | None,
    address: str | None,
    groups: ProblemGroups,
    report: ValidationReport,
    memo: dict[tuple[object, ...], _Checked] | None = None,
) -> None:
    """Render and check one message; a contact whose message was checked for another with the same
    `Renderer.check_key` gets that check's outcome, without rendering."""
    config = renderer.campaign.channels[cid]
    adapter = channels.get(config.provider)
    key = renderer.check_key(cid, variant, contact) if memo is not None and contact is not None else None
    checked = memo.get(key) if memo is not None and key is not None else None
    if checked is None:
        try:
            message = renderer.render(cid, variant, contact, address=address)
            report.samples.setdefault(f"{cid}:{variant.id}", message)
            checked = adapter.check(message, config)
        except RenderProblem as exc:
            checked = exc
        if memo is not None and key is not None:
            if len(memo) >= CHECK_MEMO:
                memo.clear()
            memo[key] = checked
    if isinstance(checked, RenderProblem):
        problem = checked.problem
        groups.add(("render", cid, checked.code, problem.file, str(problem.line)), problem, contact)
        return
    for code, text in checked:
        where = adapter.rule_fields.get(code) or ("template" if config.template else "body")
        problem = renderer.loaded.source.problem(("channels", cid, where), f"variant {variant.id}: {text}")
        groups.add(("rule", cid, variant.id, code), problem, contact)


def preview(loaded: LoadedCampaign, contact_id: str | None = None) -> list[Message]:
    """Every channel x variant rendered for one contact (default: the first in the file)."""
    renderer = Renderer(loaded, LinkSigner.from_settings(), PREVIEW_RUN)
    contacts = loaded.contacts()
    try:
        chosen = next(
            (c for c in contacts.records() if contact_id is None or c.id == contact_id),
            None,
        )
    except ContactsError as exc:
        raise CampaignInvalid([exc.problem]) from None
    if chosen is None:
        raise ClarionError(
            f"{contacts.display}: no contact with id {contact_id!r}"
            if contact_id
            else f"{contacts.display}: has no contacts to preview"
        )
    messages = []
    for cid, config in loaded.campaign.channels.items():
        adapter = channels.get(config.provider)
        raw = chosen.fields.get(adapter.address_column or "", "")
        address = None
        if raw:
            try:
                address = adapter.normalise_address(raw, config)
            except ValueError as exc:
                raise ClarionError(f"{contacts.display}:{chosen.line}: channels.{cid}: {exc}") from None
        for variant in loaded.campaign.experiment.variants:
            try:
                messages.append(renderer.render(cid, variant, chosen, address=address))
            except RenderProblem as exc:
                raise CampaignInvalid([exc.problem]) from None
    return messages
