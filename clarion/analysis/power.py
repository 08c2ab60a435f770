"""The design of a comparison: how many recipients it needs, and whether its arms got their planned shares.

Sample size per arm of the two-sided two-proportion z-test, equal arms: the normal approximation with the
pooled variance under the null and the unpooled variance under the alternative (Fleiss, without continuity
correction; the form statsmodels' `power_proportions_2indep` computes the power of):

    n = (z_{1-alpha/2} * sqrt(2 * pbar * (1 - pbar)) + z_{power} * sqrt(p1 (1 - p1) + p2 (1 - p2)))^2
        / (p1 - p2)^2,      pbar = (p1 + p2) / 2,

rounded up. It solves power = Phi((|p1 - p2| - z_{1-alpha/2} * se0) / se1) for n,
with se0 = sqrt(2 pbar (1 - pbar) / n) and se1 = sqrt((p1 q1 + p2 q2) / n): the rejection probability in
the direction of the lift. The other tail's (about 1e-6 at alpha 0.05 and 80% power) is left out, as
in the usual closed form.

Sample ratio: Pearson's chi-square of the assigned counts O_i against E_i = total * w_i / sum(w), with k - 1
degrees of freedom (scipy.stats.chisquare), flagged as a mismatch when p < 0.001 - the conventional
threshold, strict because an alarm on every slightly uneven split would be ignored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri  # scipy.stats (a second's import) only where a test needs it

from clarion.analysis.arm import Arm

SRM_ALPHA = 0.001


@dataclass(frozen=True)
class SampleRatio:
    chi2: float
    p_value: float
    flagged: bool


def sample_size(p_base: float, p_variant: float, *, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Recipients per arm for the two-sided pooled z-test to detect p_variant against p_base.

    n = ceil((z_{1-alpha/2} sqrt(2 pbar qbar) + z_{power} sqrt(p1 q1 + p2 q2))^2 / (p1 - p2)^2), with
    pbar = (p1 + p2) / 2 and q = 1 - p. None when the rates are equal: no sample detects a zero lift.
    """
    for name, rate in (("p_base", p_base), ("p_variant", p_variant)):
        if not 0 <= rate <= 1:
            raise ValueError(f"{name} {rate}: a rate lies between 0 and 1")
    for name, level in (("alpha", alpha), ("power", power)):
        if not 0 < level < 1:
            raise ValueError(f"{name} {level}: give a level between 0 and 1")
    if p_base == p_variant:
        return None
    z_alpha = float(ndtri(1 - alpha / 2))
    z_power = float(ndtri(power))
    pbar = (p_base + p_variant) / 2
    spread = z_alpha * math.sqrt(2 * pbar * (1 - pbar)) + z_power * math.sqrt(
        p_base * (1 - p_base) + p_variant * (1 - p_variant)
    )
    return max(1, math.ceil(spread**2 / (p_variant - p_base) ** 2))


def sample_ratio(arms: Sequence[Arm]) -> SampleRatio | None:
    """Chi-square of the assigned counts against the planned shares, flagged when p < 0.001.

    None when an arm's assigned count or weight is unknown, or nobody is assigned. An arm planned at weight
    0 that nobody reached is left out; one planned at 0 that people reached is a mismatch by itself.
    """
    if len(arms) < 2 or any(a.assigned is None or a.weight is None for a in arms):
        return None
    pairs = [(float(a.assigned or 0), float(a.weight or 0)) for a in arms]
    if any(n < 0 or w < 0 for n, w in pairs):
        raise ValueError("sample ratio: assigned counts and weights cannot be negative")
    if any(w == 0 and n > 0 for n, w in pairs):
        return SampleRatio(math.inf, 0.0, True)
    pairs = [(n, w) for n, w in pairs if w > 0]
    observed = np.array([n for n, _ in pairs])
    total = observed.sum()
    if len(pairs) < 2 or total == 0:
        return None
    weights = np.array([w for _, w in pairs])
    expected = total * weights / weights.sum()
    from scipy import stats as sps

    result = sps.chisquare(observed, expected)
    p = float(result.pvalue)
    return SampleRatio(float(result.statistic), p, p < SRM_ALPHA)
