"""A Thompson rollout in the launch run's report: each later wave's allocation as it was recorded (shares,
P(best), the counts it came from, the uniform share), and the comparison read from the uniform share only.

The uniform share is the test cell (every variant at equal weight) and, in each later wave, the contacts
`allocate` drew from the uniform share (recomputed from the recorded allocation and its salt): each arm
sampled evenly in every wave, so a drift between waves reaches every arm alike. Pooling every wave would
give the favoured arm more of the later audiences, and bias its rate with theirs (clarion.analysis.bandit);
the pooled counts are shown, labelled descriptive.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from clarion.analysis.bandit import Allocation, allocate, uniform_arms
from clarion.analysis.clicks import Rules, human_click_times
from clarion.analysis.stats import Analysis, Arm, analyse
from clarion.campaign.measurement import DEFAULT_WINDOW
from clarion.ledger import Ledger

DECISION = "bandit:wave-"  # as clarion.engine.bandit records them on the launch run


@dataclass(frozen=True)
class WaveRow:
    wave: int
    run_id: str
    at: str
    arms: list[str]
    shares: list[float]
    prob_best: list[float]
    exposures: list[int]  # the counts the allocation was drawn from
    successes: list[int]
    uniform_share: float
    contacts: int  # assigned in the wave's run
    uniform_contacts: int
    per_arm: dict[str, int]


@dataclass
class BanditSection:
    metric: str
    uniform_share: float
    waves: list[WaveRow]
    uniform: Analysis  # the unbiased comparison: the uniform share only
    pooled: list[Arm] = field(default_factory=list)  # every wave together: descriptive, biased by drift

    @property
    def text(self) -> str:
        contacts = sum(a.exposures for a in self.uniform.arms)
        return (
            f"Thompson rollout: lift read from the uniform share only ({contacts:,} contacts: the test cell "
            f"and {self.uniform_share:.0%} of each later wave, every arm sampled evenly), on "
            f"{self.metric.replace('_', ' ')}. {self.uniform.verdict.text}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "uniform_share": self.uniform_share,
            "waves": [asdict(w) for w in self.waves],
            "uniform": self.uniform.to_dict(),
            "pooled": [asdict(a) for a in self.pooled],
            "text": self.text,
        }


def _successes(ledger: Ledger, run_id: str, options: dict[str, Any], metric: str) -> set[int]:
    """The contacts (by audience position) a run counts as successes on the rollout's metric."""
    if metric == "conversion_rate":
        seconds = options.get("attribution_window")
        window = timedelta(seconds=float(seconds)) if isinstance(seconds, int | float) else DEFAULT_WINDOW
        return set(ledger.engagement(run_id, window).per_contact)
    rules = Rules.from_options(options.get("automated_clicks"))
    return set(human_click_times(ledger.link_hits(run_id), ledger.delivered_times(run_id), rules))


def build_bandit(ledger: Ledger, run_id: str, options: dict[str, Any]) -> BanditSection | None:
    """The section, for a launch run planned with `rollout.strategy: thompson` (None otherwise)."""
    settings = options.get("bandit")
    if not isinstance(settings, dict):
        return None
    metric = str(settings.get("metric", "conversion_rate"))
    variants = [str(v) for v in options.get("variants", [])]
    outcomes: list[tuple[str, bool, bool]] = []
    pooled: Counter[tuple[str, bool]] = Counter()
    won = _successes(ledger, run_id, options, metric)
    for seq, _cid, arm in ledger.assigned(run_id):
        if arm in variants:  # the test cell: all of it sampled at the variants' equal weights
            outcomes.append((arm, True, seq in won))
            pooled[(arm, seq in won)] += 1
    decisions = ledger.decisions(run_id)
    waves = []
    for key in sorted(
        (k for k in decisions if k.startswith(DECISION)), key=lambda k: int(k[len(DECISION) :])
    ):
        decision = decisions[key]
        child = str(decision["run_id"])
        record = ledger.get_run(child)
        if record is None:
            continue
        allocation = Allocation(
            list(decision["arms"]),
            list(decision["shares"]),
            list(decision["prob_best"]),
            float(decision["uniform_share"]),
        )
        assigned = ledger.assigned(child)
        drawn = allocate(allocation, [cid for _seq, cid, _arm in assigned], str(decision["salt"]))
        won = _successes(ledger, child, record.options, metric)
        uniform = 0
        for seq, cid, arm in assigned:
            flag = drawn[cid][1] and drawn[cid][0] == arm
            uniform += flag
            outcomes.append((arm, flag, seq in won))
            pooled[(arm, seq in won)] += 1
        waves.append(
            WaveRow(
                wave=int(decision["wave"]),
                run_id=child,
                at=str(decision.get("at", "")),
                arms=allocation.arms,
                shares=allocation.shares,
                prob_best=allocation.prob_best,
                exposures=[int(n) for n in decision.get("exposures", [])],
                successes=[int(s) for s in decision.get("successes", [])],
                uniform_share=allocation.uniform_share,
                contacts=len(assigned),
                uniform_contacts=uniform,
                per_arm=dict(Counter(arm for _seq, _cid, arm in assigned)),
            )
        )
    arms = uniform_arms(outcomes, variants)
    return BanditSection(
        metric=metric,
        uniform_share=float(settings.get("uniform_share", 0.0)),
        waves=waves,
        uniform=analyse(arms),
        pooled=[Arm(v, pooled[(v, True)] + pooled[(v, False)], pooled[(v, True)]) for v in variants],
    )


__all__ = ["BanditSection", "WaveRow", "build_bandit"]
