"""Human and automated clicks: which requests to a message's links were a person's.

Corporate mail security (Microsoft Defender Safe Links, Mimecast, Proofpoint, Barracuda) and link-preview
bots fetch a message's links with GET within seconds of delivery; counted as people, they inflate click
rates. A click (a GET of a tracked link) is automated when any of these rules holds, checked in this order
and reported by the first that matched:

1. `scanner_agent`: its User-Agent matches a known scanner or preview bot (clarion/tracking/scanners.json,
   decided when the request arrives, so no address is stored);
2. `scanner_network`: it came from a network a mail-security vendor publishes for its scanners (same list);
3. `fast_click`: it came less than `fast_click` (default 10 s) after the message reached the recipient (the
   provider's delivered event, else the moment the provider accepted the message), or before it;
4. `burst`: another of the same message's links (its unsubscribe page) was fetched within `burst` (default
   1 s) of it: a person opens one link, a scanner fetches every link at once;
5. `no_beacon`: the campaign says its landing page runs the beacon (`tracking.automated_clicks.beacon`), and
   no beacon from that contact's link arrived after the click (scanners do not run the page's script).

Automated clicks are kept in the ledger and shown apart; a contact is a human clicker when at least one of
their clicks is not automated. Clicks recorded before these rules existed (no row in `link_hits`) count as
human. A social post's link names no one: only rules 1 and 2 apply to it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from clarion.ledger.measurement import Hit

CLICK, UNSUBSCRIBE_VIEW, BEACON = "click", "unsubscribe_view", "beacon"


@dataclass(frozen=True)
class Rules:
    fast_click: timedelta = timedelta(seconds=10)
    burst: timedelta = timedelta(seconds=1)
    beacon: bool = False

    @classmethod
    def from_options(cls, options: Mapping[str, object] | None) -> Rules:
        """The rules a run was planned with (run options `automated_clicks`); the defaults otherwise."""
        found = dict(options or {})
        fast = found.get("fast_click", 10.0)
        burst = found.get("burst", 1.0)
        return cls(
            timedelta(seconds=float(fast) if isinstance(fast, int | float) else 10.0),
            timedelta(seconds=float(burst) if isinstance(burst, int | float) else 1.0),
            bool(found.get("beacon", False)),
        )


@dataclass
class ClickCounts:
    """One channel x variant's clicks, split."""

    human: int = 0  # contacts with at least one human click (every human click, for a post)
    automated: int = 0  # contacts whose every click was automated (every automated click, for a post)
    automated_clicks: int = 0  # automated requests
    reasons: Counter[str] = field(default_factory=Counter)  # automated requests by the rule that matched


def classify(hit: Hit, reached: datetime | None, siblings: list[Hit], rules: Rules) -> str | None:
    """Why this click is automated (the first rule that matched), or None for a person's click."""
    if hit.automated:
        return hit.automated
    if hit.contact_seq is None:
        return None
    if reached is not None and rules.fast_click > timedelta(0) and hit.at - reached < rules.fast_click:
        return "fast_click"
    if rules.burst > timedelta(0) and any(
        other.kind == UNSUBSCRIBE_VIEW and abs(other.at - hit.at) <= rules.burst for other in siblings
    ):
        return "burst"
    if rules.beacon and not any(other.kind == BEACON and other.at >= hit.at for other in siblings):
        return "no_beacon"
    return None


def split_clicks(
    hits: Iterable[Hit], reached: Mapping[tuple[str, int], datetime], rules: Rules
) -> dict[tuple[str, str], ClickCounts]:
    """Per (channel, variant): human and automated clickers, and automated requests by reason."""
    by_message: dict[tuple[str, int | None], list[Hit]] = defaultdict(list)
    anonymous: list[Hit] = []
    for hit in hits:
        if hit.contact_seq is None:
            anonymous.append(hit)
        else:
            by_message[(hit.channel, hit.contact_seq)].append(hit)
    found: dict[tuple[str, str], ClickCounts] = defaultdict(ClickCounts)
    for (channel, seq), group in by_message.items():
        assert seq is not None
        clicks = [h for h in group if h.kind == CLICK]
        if not clicks:
            continue
        verdicts = [classify(h, reached.get((channel, seq)), group, rules) for h in clicks]
        counts = found[(channel, clicks[0].variant)]
        for why in verdicts:
            if why is not None:
                counts.automated_clicks += 1
                counts.reasons[why] += 1
        if all(why is not None for why in verdicts):
            counts.automated += 1
        else:
            counts.human += 1
    for hit in anonymous:
        if hit.kind != CLICK:
            continue
        counts = found[(hit.channel, hit.variant)]
        why = classify(hit, None, [], rules)
        if why is None:
            counts.human += 1
        else:
            counts.automated += 1
            counts.automated_clicks += 1
            counts.reasons[why] += 1
    return dict(found)


def automated_clickers(
    hits: Iterable[Hit], reached: Mapping[tuple[str, int], datetime], rules: Rules
) -> set[int]:
    """Contacts every one of whose clicks (on any channel) was automated: not clickers, for a verdict."""
    by_contact: dict[int, list[bool]] = defaultdict(list)
    by_message: dict[tuple[str, int], list[Hit]] = defaultdict(list)
    for hit in hits:
        if hit.contact_seq is not None:
            by_message[(hit.channel, hit.contact_seq)].append(hit)
    for (channel, seq), group in by_message.items():
        for hit in group:
            if hit.kind == CLICK:
                by_contact[seq].append(classify(hit, reached.get((channel, seq)), group, rules) is not None)
    return {seq for seq, flags in by_contact.items() if flags and all(flags)}


def human_click_times(
    hits: Iterable[Hit], reached: Mapping[tuple[str, int], datetime], rules: Rules
) -> dict[int, list[tuple[datetime, str]]]:
    """Per contact, the (time, channel) of every human click, in time order: what touch attribution reads."""
    by_message: dict[tuple[str, int], list[Hit]] = defaultdict(list)
    for hit in hits:
        if hit.contact_seq is not None:
            by_message[(hit.channel, hit.contact_seq)].append(hit)
    found: dict[int, list[tuple[datetime, str]]] = defaultdict(list)
    for (channel, seq), group in by_message.items():
        for hit in group:
            if hit.kind == CLICK and classify(hit, reached.get((channel, seq)), group, rules) is None:
                found[seq].append((hit.at, channel))
    return {seq: sorted(times) for seq, times in found.items()}


__all__ = [
    "BEACON",
    "CLICK",
    "UNSUBSCRIBE_VIEW",
    "ClickCounts",
    "Rules",
    "automated_clickers",
    "classify",
    "human_click_times",
    "split_clicks",
]
