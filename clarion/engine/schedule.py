"""A run in time: its steps (waves of channels at offsets from the launch), the local send window of
per-contact channels (SMS quiet hours, `send_at_local`), and a rollout's decision.

The launch flow asks `due_waves` what may go now and `next_wake` when to come back; every answer is
derived from the campaign, the launch instant recorded in the ledger and the ledger's rows, so a resumed
or continued run picks up exactly where time has brought it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import timezone as phone_zones

from clarion.base.timing import format_duration, next_local, parse_clock, quiet_until, zone
from clarion.campaign.contacts import Contact
from clarion.campaign.kits import kit_run_id
from clarion.campaign.model import Campaign, Rollout, Step
from clarion.ledger import Ledger

LAUNCHED = "launched_at"  # decision key: the instant the launch passed its gate; steps count from it
ROLLOUT = "rollout"  # decision key: the rollout's winner and why


@dataclass(frozen=True)
class Wave:
    """What goes out at one moment: a step's channels, a rollout's second half, a Thompson wave, a kit."""

    name: str
    at: datetime
    channels: tuple[str, ...]
    only_if: str | None = None
    rollout: bool = False  # the rest of a rollout, sent in the rollout run
    kit: str | None = None  # a share kit, sent in its own run from its own campaign file
    bandit: int | None = None  # a Thompson rollout's wave (1, 2...), sent in its own run

    def target(self, run_id: str) -> str:
        """The run this wave sends: the launch's own, or a child run of it."""
        if self.kit is not None:
            return kit_run_id(run_id, self.kit)
        if self.bandit is not None:
            return bandit_run_id(run_id, self.bandit)
        return rollout_run_id(run_id) if self.rollout else run_id


def waves(
    campaign: Campaign, launched: datetime, kit_channels: dict[str, tuple[str, ...]] | None = None
) -> list[Wave]:
    """The campaign's waves in time order; `kit_channels` names each share kit's channels."""
    found = [
        Wave(step.name, launched + step.after, tuple(step.channels), step.only_if)
        for step in campaign.step_plan()
    ]
    for kit in campaign.share_kits or []:
        found.append(
            Wave(
                f"kit-{kit.name}", launched + kit.after, (kit_channels or {}).get(kit.name, ()), kit=kit.name
            )
        )
    rollout = campaign.rollout
    if rollout is not None:
        per_contact = tuple(cid for cid, c in campaign.channels.items() if _per_contact(c.provider))
        if rollout.strategy == "thompson":
            found.extend(
                Wave(f"wave-{i}", launched + rollout.wave_after(i), per_contact, bandit=i)
                for i in range(1, rollout.waves)
            )
        else:
            found.append(Wave("rollout", launched + rollout.latest, per_contact, rollout=True))
    return sorted(found, key=lambda w: w.at)


def _per_contact(provider: str) -> bool:
    from clarion import channels
    from clarion.channels.base import ChannelKind

    return channels.get(provider).kind is not ChannelKind.SOCIAL


def describe(step: Step) -> str:
    when = "at launch" if not step.after else f"T+{format_duration(step.after)}"
    cond = f", only to contacts {step.only_if.replace('_', ' ')}" if step.only_if else ""
    return f"{step.name}: {', '.join(step.channels)} {when}{cond}"


# -- the local send window ------------------------------------------------------------------------------


class SendWindow:
    """When a per-contact channel may reach one contact: inside its local quiet-hours window, and at its
    local `send_at_local` time when one is set. The contact's zone is its `timezone` column, else the one
    zone its phone number belongs to, else the channel's default_timezone."""

    def __init__(self, config: Any) -> None:
        quiet = getattr(config, "quiet_hours", None)
        self.quiet = (parse_clock(quiet.start), parse_clock(quiet.end)) if quiet is not None else None
        at_local = getattr(config, "send_at_local", None)
        self.at_local = parse_clock(at_local) if at_local else None
        self.default = zone(getattr(config, "default_timezone", "UTC") or "UTC")

    @property
    def active(self) -> bool:
        return self.quiet is not None or self.at_local is not None

    def zone_of(self, contact: Contact, address: str | None) -> ZoneInfo:
        name = contact.fields.get("timezone", "").strip()
        if name:
            try:
                return zone(name)
            except ValueError:
                pass  # validation reported it; the default is the safe side here
        if address:
            try:
                zones = phone_zones.time_zones_for_number(phonenumbers.parse(address))
            except phonenumbers.NumberParseException:
                zones = ()
            if len(zones) == 1 and zones[0] != "Etc/Unknown":
                return zone(zones[0])
        return self.default

    def not_before(self, contact: Contact, address: str | None, now: datetime) -> datetime | None:
        """None when the message may go now; else the instant it may (always later than now)."""
        if not self.active:
            return None
        tz = self.zone_of(contact, address)
        at = now
        if self.at_local is not None:
            at = next_local(now, self.at_local, tz)
        if self.quiet is not None:
            wait = quiet_until(at, tz, *self.quiet)
            at = wait if wait is not None else at
        return None if at <= now else at


# -- rollout -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutDecision:
    winner: str
    decided: bool  # False: nothing won with the required confidence; `winner` is the fallback
    text: str
    metric: str

    def as_dict(self) -> dict[str, Any]:
        return {"winner": self.winner, "decided": self.decided, "text": self.text, "metric": self.metric}


def decide_rollout(ledger: Ledger, run_id: str, campaign: Campaign, rollout: Rollout) -> RolloutDecision:
    """Compare the test cell's variants on the rollout's metric; the winner, or the fallback, said plainly.

    Per variant: contacts assigned, and contacts who converted (any route, inside the attribution window)
    or clicked (any channel; people's clicks, not scanners'). A sequential rollout decides on the
    always-valid test (clarion.analysis.sequential), whenever it is read."""
    from clarion.analysis.stats import analyse  # scipy: loaded when a rollout decides, not at every launch

    arms, fallback, metric = variant_arms(ledger, run_id, campaign, rollout)
    if any(a.exposures == 0 for a in arms):
        text = f"A variant reached no one: nothing to compare. Sending the fallback, {fallback}."
        return RolloutDecision(fallback, False, text, metric)
    if rollout.decide == "sequential":
        found = sequential_rollout(ledger, run_id, campaign, rollout)
        if found is not None:
            return found
        text = (
            f"The always-valid test did not decide by max_wait on {metric}. Sending the fallback, {fallback}."
        )
        return RolloutDecision(fallback, False, text, metric)
    analysis = analyse(arms, alpha=1 - rollout.min_confidence, confidence=rollout.min_confidence)
    verdict = analysis.verdict
    if verdict.winner is not None:
        return RolloutDecision(verdict.winner, True, verdict.text, metric)
    text = f"No variant won at {rollout.min_confidence:.0%} confidence on {metric}: {verdict.text}"
    return RolloutDecision(fallback, False, f"{text} Sending the fallback, {fallback}.", metric)


def variant_arms(
    ledger: Ledger, run_id: str, campaign: Campaign, rollout: Rollout
) -> tuple[list[Any], str, str]:
    """The variants' arms of one run (contacts assigned, and converted or clicked on `rollout.metric`),
    the fallback, and the metric's name. The holdout is not an arm here."""
    from clarion.analysis.arm import Arm
    from clarion.analysis.clicks import Rules, automated_clickers

    variants = [v.id for v in campaign.experiment.variants if v.weight > 0]
    assigned = ledger.arm_counts(run_id)
    if rollout.metric == "conversion_rate":
        engagement = ledger.engagement(run_id, campaign.attribution.window)
        people = {arm: found[0] for arm, found in engagement.arm_conversions.items()}
    else:
        people = ledger.clicked_per_arm(run_id)
        rules = Rules(
            campaign.tracking.automated_clicks.fast_click,
            campaign.tracking.automated_clicks.burst,
            campaign.tracking.automated_clicks.beacon,
        )
        machines = automated_clickers(ledger.link_hits(run_id), ledger.delivered_times(run_id), rules)
        for arm in ledger.arms_of(run_id, machines).values():
            people[arm] = people.get(arm, 0) - 1
    arms = [
        Arm(name=v, exposures=assigned.get(v, 0), successes=max(0, min(people.get(v, 0), assigned.get(v, 0))))
        for v in variants
    ]
    fallback = variants[0] if rollout.fallback == "baseline" else rollout.fallback
    return arms, fallback, rollout.metric.replace("_", " ")


def sequential_rollout(
    ledger: Ledger, run_id: str, campaign: Campaign, rollout: Rollout
) -> RolloutDecision | None:
    """The winner if the always-valid test names one now (a gain over the first variant, or the first
    variant beating every other); None while it does not decide. Safe to call at every look."""
    from clarion.analysis.sequential import sequential_analysis

    arms, _fallback, metric = variant_arms(ledger, run_id, campaign, rollout)
    if len(arms) < 2 or any(a.exposures == 0 for a in arms):
        return None
    planned = sum(a.exposures for a in arms)
    found = sequential_analysis(arms, alpha=1 - rollout.min_confidence, tuning=max(planned, 1))
    if found.winner is None:
        return None
    return RolloutDecision(found.winner, True, found.text, metric)


def rollout_run_id(run_id: str) -> str:
    return f"{run_id}-rollout"


def bandit_run_id(run_id: str, wave: int | str) -> str:
    """The run of a Thompson rollout's wave `wave` (1, 2...; wave 0 is the launch's test cell; "*": a
    pattern for every wave's)."""
    return f"{run_id}-wave-{wave}"


def child_runs(campaign: Campaign, run_id: str) -> tuple[str, ...]:
    """The runs a launch may send besides its own: its rollout's (or its Thompson waves') and its kits'."""
    found: list[str] = []
    rollout = campaign.rollout
    if rollout is not None and rollout.strategy == "thompson":
        found.extend(bandit_run_id(run_id, i) for i in range(1, rollout.waves))
    elif rollout is not None:
        found.append(rollout_run_id(run_id))
    found.extend(kit_run_id(run_id, kit.name) for kit in campaign.share_kits or [])
    return tuple(found)


def utcnow() -> datetime:
    return datetime.now(UTC)


__all__ = [
    "LAUNCHED",
    "ROLLOUT",
    "RolloutDecision",
    "SendWindow",
    "Wave",
    "bandit_run_id",
    "child_runs",
    "decide_rollout",
    "describe",
    "rollout_run_id",
    "sequential_rollout",
    "variant_arms",
    "waves",
]
