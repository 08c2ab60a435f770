"""From platform gifts to ledger conversions: which run, contact, channel and arm each belongs to."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from clarion.base.errors import ClarionError
from clarion.ledger import Conversion, Ledger
from clarion.tracking.donations import Gift
from clarion.tracking.runs import RunDirectory, RunFacts

log = logging.getLogger("clarion.tracking.donations")

RECENT_RUNS = 20  # a gift without a token is looked for among this many of the newest runs' audiences


def attribute(directory: RunDirectory, ledger: Ledger, gifts: Sequence[Gift]) -> tuple[list[Conversion], int]:
    """The conversions to record, and how many gifts matched no run of this ledger (recorded nowhere)."""
    found: list[Conversion] = []
    unmatched = 0
    for gift in gifts:
        conversion = _one(directory, ledger, gift)
        if conversion is None:
            unmatched += 1
        else:
            found.append(conversion)
    return found, unmatched


def _one(directory: RunDirectory, ledger: Ledger, gift: Gift) -> Conversion | None:
    if gift.refers_to is not None:
        original = ledger.gift(gift.source, gift.refers_to)
        if original is not None:
            kind = gift.kind
            if kind == "partial_refund":
                already = ledger.refunded(gift.source, gift.refers_to)
                if -(already + gift.amount_minor) >= original.amount_minor:
                    kind = "refund"  # this refund completes it: the gift is undone
            return _conversion(
                replace(gift, kind=kind),
                original.run_id,
                original.arm,
                original.channel,
                original.contact_seq,
            )
    if gift.token:
        target = directory.resolve(gift.token)
        if target is not None:
            return _conversion(gift, target.run.run_id, target.variant, target.channel, target.contact_seq)
    if gift.email or gift.phone:
        for record in ledger.list_runs(limit=RECENT_RUNS):
            facts = RunFacts.of(record)
            if facts.responder:
                continue
            try:
                seq = directory.contact_by_address(facts, email=gift.email, phone=gift.phone)
            except ClarionError as exc:  # that run's audience cannot be read now: the next one may match
                log.warning("run %s: audience not readable for matching a gift: %s", facts.run_id, exc)
                continue
            arm = None if seq is None else ledger.arms_of(facts.run_id, [seq]).get(seq)
            if seq is not None and arm is not None:
                return _conversion(gift, facts.run_id, arm, None, seq)
    return None


def _conversion(gift: Gift, run_id: str, arm: str, channel: str | None, seq: int | None) -> Conversion:
    return Conversion(
        run_id=run_id,
        source=gift.source,
        external_id=gift.external_id,
        arm=arm,
        amount_minor=gift.amount_minor,
        currency=gift.currency,
        at=gift.at,
        channel=channel,
        contact_seq=seq,
        kind=gift.kind,
        refers_to=gift.refers_to,
    )
