"""Power before launch: the smallest lift each planned comparison can detect, and whether the holdouts can
see the lift the organiser hopes for.

For two arms of n1 and n2 contacts and a baseline rate p2, the power of the two-sided two-proportion
z-test (pooled variance under the null, unpooled under the alternative: the test the report runs) to detect
an absolute lift d (p1 = p2 + d) is

    power(d) = Phi((|d| - z_{1-alpha/2} * se0) / se1) + Phi((-|d| - z_{1-alpha/2} * se0) / se1),
    se0 = sqrt(pbar (1 - pbar) (1/n1 + 1/n2)),  pbar = (n1 p1 + n2 p2) / (n1 + n2),
    se1 = sqrt(p1 (1 - p1) / n1 + p2 (1 - p2) / n2),

the form statsmodels' `power_proportions_2indep` computes (tests check it against statsmodels). The minimum
detectable effect (MDE) at 80% power is the d solving power(d) = 0.8 (Brent's method on (0, 1 - p2)).
When the hoped-for lift is below the MDE, the design cannot detect it: the warning names the size needed,
scaling both arms alike (their ratio is the design's) until power reaches 80%.

Comparisons planned: each variant against the holdout, each variant against the first variant, and each
channel holdout (contacts sent the channel against those it was withheld from). The baseline rate is the
organiser's `experiment.expected.baseline` for all of them (for variants against each other it is a
stand-in: their own rate is not known before the launch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from scipy import optimize
from scipy import stats as sps

POWER = 0.8
ALPHA = 0.05


def power(d: float, p2: float, n1: float, n2: float, *, alpha: float = ALPHA) -> float:
    """Power of the two-sided pooled z-test to detect p1 = p2 + d with n1 and n2 contacts."""
    if n1 <= 0 or n2 <= 0:
        return 0.0
    p1 = p2 + d
    if not 0 <= p1 <= 1:
        raise ValueError(f"baseline {p2} + lift {d} is not a rate")
    pbar = (n1 * p1 + n2 * p2) / (n1 + n2)
    se0 = math.sqrt(pbar * (1 - pbar) * (1 / n1 + 1 / n2))
    se1 = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    if se1 == 0:
        return 1.0 if d else 0.0
    z = float(sps.norm.ppf(1 - alpha / 2))
    return float(sps.norm.cdf((abs(d) - z * se0) / se1) + sps.norm.cdf((-abs(d) - z * se0) / se1))


def mde(p2: float, n1: int, n2: int, *, alpha: float = ALPHA, target: float = POWER) -> float | None:
    """The smallest absolute lift above p2 detected with `target` power; None when even 1 - p2 is not."""
    if not 0 < p2 < 1:
        raise ValueError(f"baseline {p2}: give a rate between 0 and 1")
    if n1 <= 0 or n2 <= 0:
        return None
    top = 1 - p2 - 1e-12
    if power(top, p2, n1, n2, alpha=alpha) < target:
        return None
    return float(
        optimize.brentq(lambda d: power(d, p2, n1, n2, alpha=alpha) - target, 1e-12, top, xtol=1e-10)
    )


def needed(p2: float, d: float, n1: int, n2: int, *, alpha: float = ALPHA) -> tuple[int, int]:
    """Contacts per arm to detect d with 80% power, keeping the design's ratio n1 : n2."""
    ratio = n2 / n1 if n1 and n2 else 1.0
    f = optimize.brentq(lambda k: power(d, p2, k, k * ratio, alpha=alpha) - POWER, 1e-3, 1e12)
    return math.ceil(f), math.ceil(f * ratio)


@dataclass(frozen=True)
class PowerCheck:
    """One planned comparison: its sizes, the smallest lift it detects at 80% power, and the verdict on
    the organiser's hoped-for lift (None when no lift was given or the comparison is not against a
    holdout)."""

    name: str
    kind: str  # holdout, variants, channel
    treated: str
    control: str
    n_treated: int
    n_control: int
    baseline: float
    mde: float | None
    expected_lift: float | None
    enough: bool | None
    needed_treated: int | None
    needed_control: int | None
    text: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check(
    kind: str, treated: str, control: str, n_t: int, n_c: int, baseline: float, lift: float | None
) -> PowerCheck:
    found = mde(baseline, n_t, n_c)
    name = f"{treated} vs {control}"
    shown = "no lift up to 100%" if found is None else f"{found * 100:.2f} pts"
    text = f"{name} ({n_t:,} vs {n_c:,} contacts): detects a lift of {shown} from {baseline:.2%} at 80% power"
    if min(n_t, n_c) * baseline < 10:
        text += (
            f" (under 10 conversions expected in {treated if n_t < n_c else control}: the normal "
            "approximation is rough there; benchmarks/power_planning.py simulates it)"
        )
    enough = need_t = need_c = None
    if lift is not None and kind != "variants":
        enough = found is not None and lift >= found
        if not enough:
            need_t, need_c = needed(baseline, lift, max(n_t, 1), max(n_c, 1))
            text += (
                f"; too small for the hoped-for {lift * 100:.2f} pts: that needs about {need_t:,} contacts "
                f"in {treated} and {need_c:,} in {control} at this split"
            )
        else:
            text += f"; enough for the hoped-for {lift * 100:.2f} pts"
    return PowerCheck(
        name, kind, treated, control, n_t, n_c, baseline, found, lift, enough, need_t, need_c, text
    )


def plan_power(
    arms: Mapping[str, int],
    variants: list[str],
    channel_groups: Mapping[str, tuple[int, int]],
    baseline: float,
    lift: float | None,
    *,
    holdout: str = "holdout",
) -> list[PowerCheck]:
    """Every planned comparison's power; `channel_groups` per channel: (exposed, withheld) contacts."""
    checks = []
    present = [v for v in variants if arms.get(v)]
    if arms.get(holdout):
        for v in present:
            checks.append(_check("holdout", v, holdout, arms[v], arms[holdout], baseline, lift))
    for v in present[1:]:
        checks.append(_check("variants", v, present[0], arms[v], arms[present[0]], baseline, lift))
    for cid, (exposed, withheld) in channel_groups.items():
        if exposed and withheld:
            checks.append(
                _check("channel", f"{cid} sent", f"{cid} withheld", exposed, withheld, baseline, lift)
            )
    return checks


__all__ = ["POWER", "PowerCheck", "mde", "needed", "plan_power", "power"]


def campaign_power(
    arms: Mapping[str, int], channel_groups: Mapping[str, tuple[int, int]], experiment: Any
) -> list[PowerCheck]:
    """The power of a campaign's planned comparisons (its `experiment.expected`); [] without one."""
    expected = experiment.expected
    if expected is None:
        return []
    variants = [v.id for v in experiment.variants if v.weight > 0]
    return plan_power(arms, variants, channel_groups, expected.baseline, expected.lift)


def power_lines(checks: list[PowerCheck]) -> list[tuple[bool, str]]:
    """(is a warning, text) per check: what `clarion validate` and the approval preview print."""
    return [(c.enough is False, c.text) for c in checks]
