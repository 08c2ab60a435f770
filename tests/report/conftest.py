"""A planned run whose sends are settled and whose engagement is simulated straight into the ledger.

The simulation keeps its own tally of what it recorded, so tests compare the report with counts made
independently of the report's queries. Variant b is made clearly better on email, so a verdict is due there.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from clarion.base.settings import ClarionSettings
from clarion.campaign.loader import load_campaign
from clarion.engine.plan import plan_run
from clarion.ledger import Click, Conversion, Ledger, ProviderEvent, SendState, Settlement
from clarion.ledger.events import METRICS
from tests.flows.conftest import write_campaign

RUN = "flow-test-20261122t200000-c0de"
CLICK = {("email", "a"): 0.04, ("email", "b"): 0.09, ("sms", "a"): 0.06, ("sms", "b"): 0.06}
CONVERT = 0.3
ORGANIC = 0.01
IMPRESSIONS = {"a": 2000, "b": 2400}
SOCIAL_CLICKS = {"a": 30, "b": 70}


@dataclass
class Simulated:
    ledger: Ledger
    run_id: str
    campaign: Path
    sent: Counter[tuple[str, str]] = field(default_factory=Counter)
    delivered: Counter[tuple[str, str]] = field(default_factory=Counter)
    clickers: Counter[tuple[str, str]] = field(default_factory=Counter)
    converters: Counter[tuple[str, str]] = field(default_factory=Counter)  # (channel, variant)
    revenue: Counter[tuple[str, str]] = field(default_factory=Counter)  # cents
    arm_people: Counter[str] = field(default_factory=Counter)
    assigned: Counter[str] = field(default_factory=Counter)


@pytest.fixture
def simulated(tmp_path: Path) -> Simulated:
    path = write_campaign(tmp_path, 3000)
    ledger = Ledger(ClarionSettings().ledger_url())
    ledger.migrate()
    plan_run(ledger, load_campaign(path), RUN)
    sim = Simulated(ledger, RUN, path)
    rng = random.Random(20261122)
    # after the sends below (attribution counts from each contact's first send)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1)
    clicks: list[Click] = []
    events: list[ProviderEvent] = []
    conversions: list[Conversion] = []
    converted: set[int] = set()
    for channel in ("email", "sms", "x"):
        for batch in ledger.batches(RUN, channel):
            rows = ledger.pending(RUN, channel, batch)
            ledger.begin(RUN, channel, [r.recipient for r in rows])
            ledger.settle(RUN, channel, [Settlement(r.recipient, SendState.SENT, f"p-{r.id}") for r in rows])
            for row in rows:
                key = (channel, row.variant)
                sim.sent[key] += 1
                if channel == "x":
                    metrics = {"impression_count": IMPRESSIONS[row.variant], "like_count": 11}
                    events.append(
                        ProviderEvent(
                            f"x:{row.variant}",
                            RUN,
                            channel,
                            row.variant,
                            None,
                            METRICS,
                            start,
                            row.provider_id,
                            json.dumps(metrics),
                        )
                    )
                    for i in range(SOCIAL_CLICKS[row.variant]):
                        clicks.append(Click(RUN, channel, row.variant, None, start + timedelta(seconds=i)))
                        sim.clickers[key] += 1
                    continue
                if rng.random() < 0.97:
                    sim.delivered[key] += 1
                    events.append(
                        ProviderEvent(
                            f"d:{channel}:{row.seq}", RUN, channel, row.variant, row.seq, "delivered", start
                        )
                    )
                if rng.random() < CLICK[key]:
                    at = start + timedelta(seconds=60 + rng.randrange(3600))  # a person, not a scanner
                    clicks.append(Click(RUN, channel, row.variant, row.seq, at))
                    clicks.append(
                        Click(RUN, channel, row.variant, row.seq, at + timedelta(seconds=5))
                    )  # a repeat
                    sim.clickers[key] += 1
                    if rng.random() < CONVERT and row.seq not in converted:
                        converted.add(row.seq)
                        amount = rng.choice([1000, 2500, 5000])
                        conversions.append(
                            Conversion(
                                RUN,
                                "webhook",
                                f"w{row.seq}",
                                row.variant,
                                amount,
                                "USD",
                                at,
                                channel,
                                row.seq,
                            )
                        )
                        sim.converters[key] += 1
                        sim.revenue[key] += amount
                        sim.arm_people[row.variant] += 1
    sim.assigned.update(ledger.arm_counts(RUN))
    arms = ledger.arms_of(RUN, range(3000))
    for seq, arm in arms.items():  # organic donations, every arm alike (an export, joined to contacts)
        if seq not in converted and rng.random() < ORGANIC:
            conversions.append(Conversion(RUN, "import", f"i{seq}", arm, 2000, "USD", start, None, seq))
            sim.arm_people[arm] += 1
    ledger.record(clicks, events, conversions)
    return sim
