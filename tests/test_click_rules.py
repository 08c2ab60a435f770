"""The rules that tell a person's click from a machine's (clarion.analysis.clicks), one by one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clarion.analysis.clicks import Rules, automated_clickers, classify, split_clicks
from clarion.ledger.measurement import Hit

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def hit(seconds: float, kind: str = "click", seq: int | None = 1, automated: str | None = None) -> Hit:
    return Hit("email", "a", seq, kind, T0 + timedelta(seconds=seconds), automated, None)


@pytest.mark.parametrize(
    ("click", "siblings", "rules", "expected"),
    [
        (hit(60, automated="scanner_agent"), [], Rules(), "scanner_agent"),
        (hit(60, automated="scanner_network"), [], Rules(), "scanner_network"),
        (hit(3), [], Rules(), "fast_click"),
        (hit(-2), [], Rules(), "fast_click"),  # before the delivery was even reported
        (hit(3), [], Rules(fast_click=timedelta(0)), None),  # the rule switched off
        (hit(45), [hit(45.4, "unsubscribe_view")], Rules(), "burst"),
        (hit(45), [hit(47, "unsubscribe_view")], Rules(), None),
        (hit(45), [], Rules(beacon=True), "no_beacon"),
        (hit(45), [hit(46, "beacon")], Rules(beacon=True), None),
        (hit(45), [hit(40, "beacon")], Rules(beacon=True), "no_beacon"),  # a beacon before the click
        (hit(45), [], Rules(), None),
    ],
    ids=[
        "agent",
        "network",
        "fast",
        "before-delivery",
        "fast-off",
        "burst",
        "apart",
        "no-beacon",
        "beacon",
        "stale-beacon",
        "person",
    ],
)
def test_each_rule(click: Hit, siblings: list[Hit], rules: Rules, expected: str | None) -> None:
    assert classify(click, T0, [click, *siblings], rules) == expected


def test_a_contact_is_human_when_any_of_their_clicks_is() -> None:
    reached = {("email", 1): T0, ("email", 2): T0, ("email", 3): T0}
    hits = [
        hit(1, seq=1),  # scanner on delivery ...
        hit(90, seq=1),  # ... then the person
        hit(2, seq=2),  # only the scanner
        hit(2.3, "unsubscribe_view", seq=2),
        hit(120, seq=3),  # only the person
        hit(5, seq=None, automated="scanner_agent"),  # a post's link: no one named
        hit(6, seq=None),
    ]
    found = split_clicks(hits, reached, Rules())[("email", "a")]
    assert (found.human, found.automated) == (3, 2)  # contacts 1 and 3, a post click; contact 2, a post bot
    assert found.reasons == {"fast_click": 2, "scanner_agent": 1}
    assert automated_clickers(hits, reached, Rules()) == {2}


def test_the_rules_a_run_was_planned_with_are_read_back() -> None:
    rules = Rules.from_options({"fast_click": 5.0, "burst": 0.5, "beacon": True})
    assert rules == Rules(timedelta(seconds=5), timedelta(seconds=0.5), True)
    assert Rules.from_options(None) == Rules()
