"""Always-valid inference: p-values and confidence sequences that stay valid however often they are read.

A fixed-horizon z-test read at every look (a rollout polling its test cell, a live report refreshed) rejects
a true null far more often than alpha: with a look every 10 minutes over a day, about a quarter of A/A tests
"win" (benchmarks/peeking.py). These statistics do not inflate: the probability that the null is ever
rejected, at any look, is at most alpha.

The method is the asymptotic confidence sequence of Waudby-Smith et al. (2023, "Time-uniform central limit
theory and asymptotic confidence sequences", arXiv:2103.06476, eq. 9, 155 and 161), the one GrowthBook's
engine (gbstats) uses for its sequential tests; tests check these figures against gbstats. For the absolute
difference of two rates, with N = n1 + n2 contacts, the difference's variance
V = p1 q1 / n1 + p2 q2 / n2 and s2 = V * N:

    rho^2 = (-2 ln alpha + ln(1 - 2 ln alpha)) / tuning
    half-width = sqrt(s2) * sqrt(2 (N rho^2 + 1) / (N^2 rho^2) * ln(sqrt(N rho^2 + 1) / alpha))
    e-value = exp(rho^2 * d^2 N / V0 / (2 (N rho^2 + 1))) / sqrt(N rho^2 + 1),  p = min(1, 1 / e-value)

One departure from gbstats, on the side of caution: the p-value tests p1 = p2, so its variance is the one
under that null, pooled, V0 = pbar (1 - pbar) (1/n1 + 1/n2), as the report's fixed-horizon z-test uses
(with V, a holdout of 190 with one conversion would look a thousand times more certain than the z-test
says). With V in place of V0 the figures are gbstats' own (tests check both).

`tuning` is the total sample size at which the sequence is tightest: the planned size of the comparison
when it is known (GrowthBook's default otherwise, 5,000). The price of peeking freely is width: at the
tuned size the interval is about 1.6 to 2 times as wide as the fixed-horizon one.

Several variants against one baseline are Holm-adjusted, as in stats.py (Holm holds for any valid p-values).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from clarion.analysis.arm import Arm
from clarion.analysis.stats import holm

DEFAULT_TUNING = 5_000  # GrowthBook's default sequential tuning parameter


def rho(alpha: float, tuning: float) -> float:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha {alpha}: give a level between 0 and 1")
    if tuning <= 0:
        raise ValueError(f"tuning {tuning}: give the planned sample size (positive)")
    return math.sqrt((-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning)


def _variance(s1: int, n1: int, s2: int, n2: int) -> float:
    p1, p2 = s1 / n1, s2 / n2
    return p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2


def confidence_sequence(
    s1: int, n1: int, s2: int, n2: int, *, alpha: float = 0.05, tuning: float = DEFAULT_TUNING
) -> tuple[float, float] | None:
    """The always-valid interval of p1 - p2 (arm 1 the variant); None when it cannot be computed yet."""
    if not n1 or not n2:
        return None
    variance = _variance(s1, n1, s2, n2)
    if variance == 0:
        return None
    n = n1 + n2
    r2 = rho(alpha, tuning) ** 2
    half = math.sqrt(variance * n) * math.sqrt(
        2 * (n * r2 + 1) * math.log(math.sqrt(n * r2 + 1) / alpha) / (n * n * r2)
    )
    diff = s1 / n1 - s2 / n2
    return (diff - half, diff + half)


def always_valid_p(
    s1: int, n1: int, s2: int, n2: int, *, alpha: float = 0.05, tuning: float = DEFAULT_TUNING
) -> float:
    """The always-valid p-value of p1 = p2 (1 when there is no evidence yet)."""
    if not n1 or not n2:
        return 1.0
    variance = _variance(s1, n1, s2, n2)
    if variance == 0:
        return 1.0
    pooled = (s1 + s2) / (n1 + n2)
    return evalue_p(s1 / n1 - s2 / n2, pooled * (1 - pooled) * (1 / n1 + 1 / n2), n1 + n2, alpha, tuning)


def evalue_p(diff: float, variance: float, n: int, alpha: float, tuning: float) -> float:
    """1 / e-value (capped at 1) of a difference with this variance over n observations (eq. 155)."""
    if variance <= 0:
        return 1.0
    r2 = rho(alpha, tuning) ** 2
    st2 = diff * diff * n / variance
    log_e = r2 * st2 / (2 * (n * r2 + 1)) - 0.5 * math.log(n * r2 + 1)
    return 1.0 if log_e <= 0 else min(1.0, math.exp(-log_e))


@dataclass(frozen=True)
class SequentialComparison:
    name: str
    lift: float | None
    low: float | None
    high: float | None
    p_value: float
    p_adjusted: float
    significant: bool


@dataclass(frozen=True)
class SequentialAnalysis:
    baseline: str
    alpha: float
    tuning: float
    comparisons: list[SequentialComparison]
    winner: str | None
    text: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sequential_analysis(
    arms: Sequence[Arm], *, baseline: int = 0, alpha: float = 0.05, tuning: float | None = None
) -> SequentialAnalysis:
    """Each arm against the baseline with always-valid p-values (Holm) and confidence sequences; a winner
    only when a gain is significant, the largest significant gain winning."""
    if not 0 <= baseline < len(arms):
        raise ValueError(f"baseline {baseline}: give the index of one of the {len(arms)} arm(s)")
    base = arms[baseline]
    others = [a for i, a in enumerate(arms) if i != baseline]
    tune = float(tuning or DEFAULT_TUNING)
    raw = []
    for arm in others:
        interval = confidence_sequence(
            arm.successes, arm.exposures, base.successes, base.exposures, alpha=alpha, tuning=tune
        )
        p = always_valid_p(
            arm.successes, arm.exposures, base.successes, base.exposures, alpha=alpha, tuning=tune
        )
        lift = arm.rate - base.rate if arm.rate is not None and base.rate is not None else None
        raw.append((arm.name, lift, interval, p))
    adjusted = holm([p for *_, p in raw]) if raw else []
    comparisons = [
        SequentialComparison(
            name,
            lift,
            interval[0] if interval else None,
            interval[1] if interval else None,
            p,
            adj,
            adj < alpha,
        )
        for (name, lift, interval, p), adj in zip(raw, adjusted, strict=True)
    ]
    gains = [c for c in comparisons if c.significant and (c.lift or 0) > 0]
    if gains:
        top = max(gains, key=lambda c: c.lift or 0)
        assert top.low is not None and top.high is not None and top.lift is not None
        text = (
            f"{top.name} beats {base.name} (always valid, safe to read at any time): "
            f"{top.lift * 100:+.2f} pts ({1 - alpha:.0%} confidence sequence {top.low * 100:+.2f} to "
            f"{top.high * 100:+.2f}), p = {top.p_adjusted:.2g} after Holm."
        )
        return SequentialAnalysis(base.name, alpha, tune, comparisons, top.name, text)
    losses = [c for c in comparisons if c.significant]
    if losses and len(losses) == len(comparisons):
        text = f"{base.name} beats every variant (always valid)."
        return SequentialAnalysis(base.name, alpha, tune, comparisons, base.name, text)
    smallest = min((c.p_adjusted for c in comparisons), default=1.0)
    text = (
        "The always-valid test does not decide yet "
        f"(smallest adjusted p = {smallest:.2g}); keep collecting, it stays valid at every look."
    )
    return SequentialAnalysis(base.name, alpha, tune, comparisons, None, text)


__all__ = [
    "DEFAULT_TUNING",
    "SequentialAnalysis",
    "SequentialComparison",
    "always_valid_p",
    "confidence_sequence",
    "evalue_p",
    "rho",
    "sequential_analysis",
]
