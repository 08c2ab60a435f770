"""Thompson sampling for rollouts sent in waves: each wave is allocated by the arms' posterior probability of
being best, with a fixed uniform share kept for unbiased estimates (Braze's Intelligent Selection is the
commercial anchor).

- Posteriors: Beta(1 + s, 1 + n - s) per arm, as stats.prob_best (exact for two arms, seeded Monte Carlo
  beyond). A wave's shares are `uniform_share / k + (1 - uniform_share) * P(best)`: every arm keeps at least
  `uniform_share / k`, so a bad early draw cannot starve an arm for good.
- Contacts are allocated deterministically, as variant assignment is: a uniform number from
  sha256(salt, contact id) decides first whether the contact is in the uniform share (then an arm at equal
  odds from a second number), else an arm by P(best): overall, the wave's shares. The same inputs give
  the same allocation.
- Lift is estimated from the uniform share only (`uniform_arms`): adaptive allocation makes an arm's pooled
  rate depend on when it was favoured (the later waves' traffic differs from the earlier ones'), so pooling
  every wave biases the comparison; the uniform share is a randomised experiment throughout.

The launch flow sends Thompson waves with `rollout.strategy: thompson` (clarion.engine.bandit decides each
wave with this module; clarion.analysis.report.bandit reads the lift from the uniform share);
benchmarks/bandit.py is its simulation.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from clarion.analysis.arm import Arm


@dataclass(frozen=True)
class Allocation:
    arms: list[str]
    shares: list[float]  # of the wave, summing to 1
    prob_best: list[float]
    uniform_share: float


def thompson_shares(arms: Sequence[Arm], uniform_share: float = 0.2, *, seed: int = 20261122) -> Allocation:
    """The next wave's shares per arm from the data so far (successes over exposures per arm)."""
    if not arms:
        raise ValueError("a bandit needs at least one arm")
    if not 0 <= uniform_share <= 1:
        raise ValueError(f"uniform_share {uniform_share}: give a share between 0 and 1")
    from clarion.analysis.stats import prob_best  # scipy: loaded when a wave is allocated, not at launch

    best = prob_best(arms, seed=seed)
    k = len(arms)
    shares = [uniform_share / k + (1 - uniform_share) * p for p in best]
    total = sum(shares)
    return Allocation([a.name for a in arms], [s / total for s in shares], best, uniform_share)


def _uniform(salt: bytes, contact_id: str) -> float:
    digest = hashlib.sha256(salt + contact_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def allocate(allocation: Allocation, contact_ids: Iterable[str], salt: str) -> dict[str, tuple[str, bool]]:
    """Each contact's arm for this wave, and whether it came from the uniform share."""
    key = salt.encode() + b"\x1f"
    bounds: list[float] = []
    acc = 0.0
    for share in allocation.prob_best[:-1]:  # the rest of the wave: by P(best); overall, `shares`
        acc += share
        bounds.append(acc)
    k = len(allocation.arms)
    found = {}
    for cid in contact_ids:
        if _uniform(key + b"uniform\x1f", cid) < allocation.uniform_share:
            arm = allocation.arms[min(int(_uniform(key + b"arm\x1f", cid) * k), k - 1)]
            found[cid] = (arm, True)
        else:
            found[cid] = (
                allocation.arms[bisect.bisect_right(bounds, _uniform(key + b"pick\x1f", cid))],
                False,
            )
    return found


def uniform_arms(outcomes: Iterable[tuple[str, bool, bool]], arms: Sequence[str]) -> list[Arm]:
    """The arms of the unbiased comparison: only contacts from the uniform share. `outcomes` holds one
    (arm, from the uniform share, converted) per contact of the bandit's waves."""
    exposures = dict.fromkeys(arms, 0)
    successes = dict.fromkeys(arms, 0)
    for arm, uniform, converted in outcomes:
        if uniform and arm in exposures:
            exposures[arm] += 1
            successes[arm] += int(converted)
    return [Arm(a, exposures[a], successes[a]) for a in arms]


__all__ = ["Allocation", "allocate", "thompson_shares", "uniform_arms"]
