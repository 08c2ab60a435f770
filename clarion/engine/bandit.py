"""Thompson rollouts in the launch flow (`rollout.strategy: thompson`): the rest of the audience goes in
waves, each allocated by the arms' posterior probability of being best, with a fixed uniform share kept for
the unbiased comparison (Braze's Intelligent Selection is the commercial anchor; the allocation itself is
clarion.analysis.bandit, its simulation benchmarks/bandit.py).

What was chosen, and why:

- Wave 0 is the launch's test cell (`test_share` of the non-holdout contacts, the variants at equal weights,
  as a fixed rollout's). The rest are divided among waves 1..waves-1 by sha256(launch run id, contact id),
  so a contact's wave is known without storage; wave i goes at launch + i x wait / (waves - 1), the last
  at `wait`, as a fixed rollout's rest does. Each later wave is a child run `<run>-wave-<i>`, planned when
  its time comes (its own links, its own report), as `<run>-rollout` is.
- At wave i the posteriors count what the runs sent so far show: per variant, contacts assigned and
  contacts who converted (inside the attribution window) or clicked (people, not scanners), in the test
  cell and waves 1..i-1 (the counting the fixed rollout's decision uses; the holdout is never an arm).
  `thompson_shares` turns them into the wave's shares; `allocate` assigns the wave's contacts, salted with
  the launch run id and the wave, so whether a contact came from the uniform share is recomputed from the
  recorded allocation and needs no column of its own.
- The allocation (arms, shares, P(best), the uniform share, the counts it came from) is recorded once in
  the launch run's decisions (`bandit:wave-<i>`, first writer wins) before the wave's run is planned: a
  resume, or a continuation run, reuses it and never draws again with newer data, and planning is
  idempotent, so nobody is sent twice.
- The holdout stays the launch run's and is sent nothing, in every wave.
- The report's lift for a Thompson rollout is read from the uniform share only (the test cell, and the
  uniform part of every later wave: each arm sampled evenly in every wave), labelled so; pooling every
  wave would mix the later waves' audiences into the favoured arm (clarion.analysis.report.bandit).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clarion.analysis.arm import Arm
from clarion.analysis.bandit import Allocation, allocate, thompson_shares
from clarion.campaign.model import Campaign
from clarion.engine.schedule import bandit_run_id, utcnow, variant_arms
from clarion.ledger import Ledger

DECISION = "bandit:wave-"  # decision key prefix on the launch run: one allocation per later wave


def decision_key(wave: int) -> str:
    return f"{DECISION}{wave}"


def later_wave(run_id: str, contact_id: str, waves: int) -> int:
    """The later wave (1..waves-1) a contact of the rest goes in, from sha256(launch run id, contact id)."""
    digest = hashlib.sha256(f"{run_id}\x1fwave\x1f{contact_id}".encode()).digest()
    return 1 + int.from_bytes(digest[:8], "big") * (waves - 1) // 2**64


def allocation_salt(run_id: str, wave: int) -> str:
    return f"{run_id}:wave-{wave}"


@dataclass(frozen=True)
class WavePlan:
    """What planning one wave's run needs: whose wave it is, and the allocation recorded for it."""

    launch: str  # the launch run id
    wave: int
    waves: int
    allocation: Allocation

    def arm(self, contact_id: str) -> str | None:
        """The arm of a contact of the rest in this wave (None: the contact goes in another wave)."""
        if later_wave(self.launch, contact_id, self.waves) != self.wave:
            return None
        return allocate(self.allocation, [contact_id], allocation_salt(self.launch, self.wave))[contact_id][0]

    @classmethod
    def recorded(cls, launch: str, waves: int, decision: Mapping[str, Any]) -> WavePlan:
        allocation = Allocation(
            [str(a) for a in decision["arms"]],
            [float(s) for s in decision["shares"]],
            [float(p) for p in decision["prob_best"]],
            float(decision["uniform_share"]),
        )
        return cls(launch, int(decision["wave"]), waves, allocation)


def posterior_arms(ledger: Ledger, run_id: str, campaign: Campaign, wave: int) -> list[Arm]:
    """Per variant, contacts and successes on the rollout's metric in the test cell and waves 1..wave-1."""
    rollout = campaign.rollout
    assert rollout is not None
    totals: dict[str, list[int]] = {}
    for run in (run_id, *(bandit_run_id(run_id, j) for j in range(1, wave))):
        if ledger.get_run(run) is None:
            continue
        arms, _fallback, _metric = variant_arms(ledger, run, campaign, rollout)
        for arm in arms:
            found = totals.setdefault(arm.name, [0, 0])
            found[0] += arm.exposures
            found[1] += arm.successes
    return [Arm(name, n, s) for name, (n, s) in totals.items()]


def arm_rows(decision: Mapping[str, Any]) -> list[tuple[str, float, float, int, int]]:
    """A recorded wave's arms: (arm, share of the wave, P(best), contacts so far, successes so far)."""
    return list(
        zip(
            decision["arms"],
            decision["shares"],
            decision["prob_best"],
            decision["exposures"],
            decision["successes"],
            strict=True,
        )
    )


def describe(decision: Mapping[str, Any]) -> str:
    """One line: the wave's shares and P(best) per arm, and its uniform share."""
    arms = ", ".join(
        f"{arm} {share:.0%} (P(best) {p:.2f}, {s}/{n})" for arm, share, p, n, s in arm_rows(decision)
    )
    return (
        f"wave {decision['wave']}: {arms}; {decision['uniform_share']:.0%} of the wave spread evenly "
        f"(the unbiased comparison), on {decision['metric']}"
    )


def decide_wave(
    ledger: Ledger, run_id: str, campaign: Campaign, wave: int, now: datetime | None = None
) -> tuple[WavePlan, dict[str, Any]]:
    """Wave `wave`'s allocation: the one recorded for it, or drawn now from the outcomes so far and
    recorded (first writer wins: two processes deciding at once agree on the first)."""
    rollout = campaign.rollout
    assert rollout is not None and rollout.strategy == "thompson"
    key = decision_key(wave)
    recorded = ledger.decisions(run_id).get(key)
    if recorded is None:
        arms = posterior_arms(ledger, run_id, campaign, wave)
        seed = int.from_bytes(hashlib.sha256(allocation_salt(run_id, wave).encode()).digest()[:4], "big")
        allocation = thompson_shares(arms, rollout.uniform_share, seed=seed)
        value = {
            "wave": wave,
            "run_id": bandit_run_id(run_id, wave),
            "at": (now or utcnow()).isoformat(),
            "metric": rollout.metric.replace("_", " "),
            "arms": allocation.arms,
            "shares": allocation.shares,
            "prob_best": allocation.prob_best,
            "uniform_share": allocation.uniform_share,
            "exposures": [a.exposures for a in arms],
            "successes": [a.successes for a in arms],
            "salt": allocation_salt(run_id, wave),
        }
        recorded = ledger.decide(run_id, key, {**value, "text": describe(value)})
    return WavePlan.recorded(run_id, rollout.waves, recorded), dict(recorded)


__all__ = [
    "DECISION",
    "WavePlan",
    "arm_rows",
    "decide_wave",
    "decision_key",
    "describe",
    "later_wave",
    "posterior_arms",
]
