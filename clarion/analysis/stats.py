"""The statistics of a comparison, on scipy: what a careful analyst would compute, and a plain verdict.

For arms with `exposures` (the denominator) and `successes` (clicks or conversions):

- rate intervals: Wilson score interval;
- absolute lift p1 - p2: Wald (unpooled) interval; relative lift p1 / p2 - 1: log-ratio (Katz) interval;
- two-sided two-proportion z-test with the pooled variance, Holm-adjusted across an analysis's comparisons;
- revenue per recipient: Welch's t-test from each arm's sum and sum of squares of per-recipient revenue
  (recipients without revenue count as 0);
- probability of being best under Beta(1 + s, 1 + n - s) posteriors: exact for two arms (the closed-form sum
  over the smaller arm's successes, in log space), Monte Carlo with a fixed seed beyond;
- in power.py (re-exported here): the sample-ratio check, chi-square of the assigned counts against the
  planned shares, flagged below 0.001; and the sample size per arm to detect a lift at 80% power
  (two-sided, pooled/unpooled normal approximation; the formula is in that module).

The verdict: a winner is named only when a Holm-adjusted p-value is below alpha and the sample ratio is
sound. Among significant gains the largest absolute lift wins; when every significant difference is a loss,
the baseline wins; otherwise the data do not decide yet, and the verdict says how many recipients per arm
would detect the observed difference (the largest such number across comparisons). Impossible counts
(negative, or more successes than exposures) raise ValueError; empty arms, zero or all successes and a
single arm give an answer, never an exception. Every number is a float or None (never NaN or infinite), so
`Analysis.to_dict()` serialises to JSON as it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.special import betaln, ndtr, ndtri  # scipy.stats (a second's import) only where a test needs it

from clarion.analysis.arm import Arm as Arm
from clarion.analysis.arm import check_counts

# The design checks live in clarion.analysis.power; they are part of this module's API, so re-exported here.
from clarion.analysis.power import SRM_ALPHA as SRM_ALPHA
from clarion.analysis.power import SampleRatio as SampleRatio
from clarion.analysis.power import sample_ratio as sample_ratio
from clarion.analysis.power import sample_size as sample_size

EXACT_LIMIT = 200_000  # successes above which the two-arm exact sum gives way to Monte Carlo


@dataclass(frozen=True)
class ArmStats:
    name: str
    exposures: int
    successes: int
    rate: float | None
    rate_low: float | None
    rate_high: float | None
    revenue: float | None
    revenue_per_recipient: float | None
    prob_best: float | None


@dataclass(frozen=True)
class Comparison:
    name: str
    lift_abs: float | None
    lift_abs_low: float | None
    lift_abs_high: float | None
    lift_rel: float | None
    lift_rel_low: float | None
    lift_rel_high: float | None
    z: float | None
    p_value: float | None
    p_adjusted: float | None
    revenue_t: float | None
    revenue_p: float | None
    significant: bool
    sample_size_needed: int | None


@dataclass(frozen=True)
class Verdict:
    winner: str | None
    text: str


@dataclass(frozen=True)
class Analysis:
    baseline: str
    arms: list[ArmStats]
    comparisons: list[Comparison]
    srm: SampleRatio | None
    verdict: Verdict

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = _finite(asdict(self))
        return found


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence {confidence}: give a level between 0 and 1, e.g. 0.95")
    return float(ndtri(1 - (1 - confidence) / 2))


# -- intervals and tests ---------------------------------------------------------------------------


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of successes / n; (0, 1) when there are no exposures."""
    check_counts(successes, n)
    z = _z(confidence)
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, center - half), min(1.0, center + half))


def two_proportion_ztest(s1: int, n1: int, s2: int, n2: int) -> tuple[float, float]:
    """(z, two-sided p) of p1 - p2 with the pooled variance; arm 1 is the variant, arm 2 the baseline.

    With no exposures in an arm, or a pooled rate of 0 or 1 (no variance), there is no evidence: (0, 1).
    """
    check_counts(s1, n1, "variant")
    check_counts(s2, n2, "baseline")
    if not n1 or not n2:
        return (0.0, 1.0)
    pooled = (s1 + s2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return (0.0, 1.0)
    z = (s1 / n1 - s2 / n2) / se
    return (z, float(2 * ndtr(-abs(z))))


def diff_interval(s1: int, n1: int, s2: int, n2: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wald (unpooled) interval of p1 - p2; the whole range (-1, 1) when an arm has no exposures."""
    check_counts(s1, n1, "variant")
    check_counts(s2, n2, "baseline")
    half_width = _z(confidence)
    if not n1 or not n2:
        return (-1.0, 1.0)
    p1, p2 = s1 / n1, s2 / n2
    half = half_width * math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    return (p1 - p2 - half, p1 - p2 + half)


def ratio_interval(
    s1: int, n1: int, s2: int, n2: int, confidence: float = 0.95
) -> tuple[float, float] | None:
    """Interval of the relative lift p1 / p2 - 1 (Katz log-ratio).

    None when either arm has no successes: the log of the ratio, and its standard error
    sqrt(1/s1 - 1/n1 + 1/s2 - 1/n2), are then undefined (statsmodels divides by zero there).
    """
    check_counts(s1, n1, "variant")
    check_counts(s2, n2, "baseline")
    z = _z(confidence)
    if s1 == 0 or s2 == 0:
        return None
    log_ratio = math.log((s1 / n1) / (s2 / n2))
    half = z * math.sqrt(1 / s1 - 1 / n1 + 1 / s2 - 1 / n2)
    return (math.exp(log_ratio - half) - 1, math.exp(log_ratio + half) - 1)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: the k-th smallest p times (m - k + 1), made monotone, capped at 1."""
    if any(not 0 <= p <= 1 for p in pvalues):
        raise ValueError(f"p-values must lie in [0, 1], got {list(pvalues)}")
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted = [0.0] * len(pvalues)
    running = 0.0
    m = len(pvalues)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def welch(arm: Arm, baseline: Arm) -> tuple[float, float] | None:
    """(t, two-sided p) of revenue per recipient, arm against baseline; None when it cannot be computed."""
    first, second = _moments(arm), _moments(baseline)
    if first is None or second is None:
        return None
    (m1, v1, n1), (m2, v2, n2) = first, second
    if v1 == 0 and v2 == 0:  # the t statistic is 0/0
        return None
    from scipy import stats as sps

    result = sps.ttest_ind_from_stats(m1, math.sqrt(v1), n1, m2, math.sqrt(v2), n2, equal_var=False)
    return (float(result.statistic), float(result.pvalue))


def _moments(arm: Arm) -> tuple[float, float, int] | None:
    n = arm.exposures
    if arm.revenue is None or arm.revenue_sq is None or n < 2:
        return None
    mean = arm.revenue / n
    variance = max(0.0, (arm.revenue_sq - n * mean * mean) / (n - 1))
    return (mean, variance, n)


# -- posterior probability of being best ------------------------------------------------------------


def prob_best(arms: Sequence[Arm], *, draws: int = 200_000, seed: int = 20261122) -> list[float]:
    """P(arm has the highest rate) under independent Beta(1 + s, 1 + n - s) posteriors (uniform priors)."""
    if len(arms) <= 1:
        return [1.0] * len(arms)
    if len(arms) == 2 and min(a.successes for a in arms) <= EXACT_LIMIT:
        second = _prob_greater(arms[1], arms[0])
        return [1 - second, second]
    return prob_best_monte_carlo(arms, draws=draws, seed=seed)


def _prob_greater(b: Arm, a: Arm) -> float:
    """P(p_b > p_a) for Beta(1 + s, 1 + n - s) posteriors, summing over the arm with fewer successes."""
    alpha_a, beta_a = 1 + a.successes, 1 + a.exposures - a.successes
    alpha_b, beta_b = 1 + b.successes, 1 + b.exposures - b.successes
    if alpha_b > alpha_a:  # P(b > a) = 1 - P(a > b): loop over the smaller count
        return 1 - _prob_greater(a, b)
    i = np.arange(alpha_b)
    terms = (
        betaln(alpha_a + i, beta_a + beta_b)
        - np.log(beta_b + i)
        - betaln(1 + i, beta_b)
        - betaln(alpha_a, beta_a)
    )
    return float(min(1.0, max(0.0, np.exp(terms).sum())))


def prob_best_monte_carlo(arms: Sequence[Arm], *, draws: int = 200_000, seed: int = 20261122) -> list[float]:
    """The share of `draws` joint posterior draws in which each arm is highest; a fixed seed repeats it."""
    if not arms:
        return []
    if draws < 1:
        raise ValueError(f"draws: {draws}; give at least 1")
    rng = np.random.default_rng(seed)
    samples = np.stack([rng.beta(1 + a.successes, 1 + a.exposures - a.successes, size=draws) for a in arms])
    wins = np.bincount(samples.argmax(axis=0), minlength=len(arms))
    return [float(w / draws) for w in wins]


# -- an analysis and its verdict -------------------------------------------------------------------


def analyse(
    arms: Sequence[Arm], *, baseline: int = 0, alpha: float = 0.05, confidence: float = 0.95
) -> Analysis:
    """Every arm's rate, each variant against the baseline (Holm across them), SRM check and verdict."""
    if not arms:
        raise ValueError("an analysis needs at least one arm")
    if not 0 <= baseline < len(arms):
        raise ValueError(f"baseline {baseline}: give the index of one of the {len(arms)} arm(s)")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha {alpha}: give a level between 0 and 1, e.g. 0.05")
    _z(confidence)  # refuses a confidence outside (0, 1) before any work
    base = arms[baseline]
    best = prob_best(arms) if all(a.exposures for a in arms) else [None] * len(arms)
    arm_stats = [_arm_stats(a, confidence, p) for a, p in zip(arms, best, strict=True)]
    others = [a for i, a in enumerate(arms) if i != baseline]
    tests = [_compare(a, base, confidence) for a in others]
    adjusted = holm([t["p_value"] for t in tests if t["p_value"] is not None])
    comparisons, k = [], 0
    for arm, test in zip(others, tests, strict=True):
        p_adj = None
        if test["p_value"] is not None:
            p_adj, k = adjusted[k], k + 1
        observed = (
            sample_size(base.rate, arm.rate, alpha=alpha)
            if base.rate is not None and arm.rate is not None
            else None
        )
        comparisons.append(
            Comparison(
                name=arm.name,
                **test,
                p_adjusted=p_adj,
                significant=p_adj is not None and p_adj < alpha,
                sample_size_needed=observed,
            )
        )
    srm = sample_ratio(arms)
    return Analysis(
        base.name, arm_stats, comparisons, srm, _verdict(arms, base, comparisons, srm, confidence)
    )


def _arm_stats(arm: Arm, confidence: float, best: float | None) -> ArmStats:
    low, high = wilson(arm.successes, arm.exposures, confidence) if arm.exposures else (None, None)
    per_recipient = arm.revenue / arm.exposures if arm.revenue is not None and arm.exposures else None
    return ArmStats(
        arm.name, arm.exposures, arm.successes, arm.rate, low, high, arm.revenue, per_recipient, best
    )


_COMPARED = (
    "lift_abs lift_abs_low lift_abs_high lift_rel lift_rel_low lift_rel_high z p_value revenue_t revenue_p"
)


def _compare(arm: Arm, base: Arm, confidence: float) -> dict[str, Any]:
    if not arm.exposures or not base.exposures:
        return dict.fromkeys(_COMPARED.split(), None)
    s1, n1, s2, n2 = arm.successes, arm.exposures, base.successes, base.exposures
    z, p = two_proportion_ztest(s1, n1, s2, n2)
    low, high = diff_interval(s1, n1, s2, n2, confidence)
    relative = ratio_interval(s1, n1, s2, n2, confidence)
    revenue = welch(arm, base)
    return {
        "lift_abs": s1 / n1 - s2 / n2,
        "lift_abs_low": low,
        "lift_abs_high": high,
        "lift_rel": (s1 / n1) / (s2 / n2) - 1 if s2 else None,
        "lift_rel_low": relative[0] if relative else None,
        "lift_rel_high": relative[1] if relative else None,
        "z": z,
        "p_value": p,
        "revenue_t": revenue[0] if revenue else None,
        "revenue_p": revenue[1] if revenue else None,
    }


def _pts(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.2f}"


def _p(value: float | None) -> str:
    return "p < 0.0001" if value is not None and value < 0.0001 else f"p = {value or 1:.2g}"


def _lift(c: Comparison, level: str) -> str:
    """`+2.00 pts (95% CI +1.15 to +2.85), p = 0.003 after Holm`."""
    return (
        f"{_pts(c.lift_abs)} pts ({level} {_pts(c.lift_abs_low)} to {_pts(c.lift_abs_high)}), "
        f"{_p(c.p_adjusted)} after Holm"
    )


def _verdict(
    arms: Sequence[Arm], base: Arm, comparisons: list[Comparison], srm: SampleRatio | None, confidence: float
) -> Verdict:
    if not comparisons:
        return Verdict(None, "Only one arm: there is nothing to compare.")
    if srm is not None and srm.flagged:
        return Verdict(
            None,
            f"No verdict: sample-ratio mismatch ({_p(srm.p_value)}); the arms' sizes are off their planned "
            "shares, so the comparison cannot be trusted. Check the assignment and what reached each arm.",
        )
    level = f"{confidence * 100:.0f}% CI"
    significant = [c for c in comparisons if c.significant]
    winners = [c for c in significant if (c.lift_abs or 0) > 0]
    if winners:
        top = max(winners, key=lambda c: c.lift_abs or 0)
        return Verdict(top.name, f"{top.name} beats {base.name}: {_lift(top, level)}.")
    if significant:  # every significant difference is a loss: the baseline wins
        return Verdict(base.name, _baseline_wins(base, comparisons, significant, level))
    return Verdict(None, _undecided(arms, comparisons))


def _baseline_wins(
    base: Arm, comparisons: list[Comparison], significant: list[Comparison], level: str
) -> str:
    closest = max(significant, key=lambda c: c.lift_abs or 0)
    if len(significant) == 1:
        text = f"{base.name} beats {closest.name}: {closest.name} is {_lift(closest, level)}."
    else:
        every = len(significant) == len(comparisons)
        beaten = "every variant" if every else ", ".join(c.name for c in significant)
        text = f"{base.name} beats {beaten}; the closest, {closest.name}, is {_lift(closest, level)}."
    others = [c.name for c in comparisons if not c.significant]
    if others:
        verb = "does" if len(others) == 1 else "do"
        text += f" No variant beats {base.name}; {', '.join(others)} {verb} not differ from it significantly."
    return text


def _undecided(arms: Sequence[Arm], comparisons: list[Comparison]) -> str:
    text = "The data do not decide yet"
    empty = [a.name for a in arms if not a.exposures]
    if empty:
        return f"{text}: no exposures in {', '.join(empty)}."
    smallest = min(c.p_adjusted for c in comparisons if c.p_adjusted is not None)
    text += f": no difference is significant after Holm (smallest adjusted {_p(smallest)})."
    needed = [c.sample_size_needed for c in comparisons if c.sample_size_needed]
    if not needed:
        return text + " The observed rates are equal, so no sample size would detect the difference."
    n = max(needed)
    have = min(a.exposures for a in arms)
    text += f" Detecting the observed difference at 80% power needs about {n:,} per arm"
    return text + (f" ({n - have:,} more than the smallest arm has)." if n > have else ".")
