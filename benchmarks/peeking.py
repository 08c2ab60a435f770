"""Peeking, by simulation: the false-positive rate of A/A tests read every 10 minutes over a day, with the
fixed-horizon z-test the report prints and with the always-valid test rollouts and live reports use; then
the coverage of the report's intervals, and of the confidence sequence over every look at once.

    .venv/bin/python benchmarks/peeking.py                       # 4,000 A/A tests, 144 looks each
    .venv/bin/python benchmarks/peeking.py --sims 1000 --rate 0.02 --per-look 200

Each simulated test has two arms of the same conversion rate; contacts arrive evenly, `--per-look` per arm
between looks. A test "wins" when any look's p-value is below 0.05. The statistics are vectorised here with
numpy over all tests and looks at once, from the same formulas as clarion.analysis (stats.py, sequential.py);
the script first checks them against the library's own functions on random counts and stops if they differ.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats as sps

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clarion.analysis.sequential import always_valid_p, confidence_sequence, rho  # noqa: E402
from clarion.analysis.stats import diff_interval, two_proportion_ztest, wilson  # noqa: E402

ALPHA = 0.05


def z_p(s1: np.ndarray, s2: np.ndarray, n: np.ndarray) -> np.ndarray:
    pooled = (s1 + s2) / (2 * n)
    se = np.sqrt(pooled * (1 - pooled) * (2 / n))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, (s1 / n - s2 / n) / se, 0.0)
    return 2 * sps.norm.sf(np.abs(z))


def seq_p(s1: np.ndarray, s2: np.ndarray, n: np.ndarray, tuning: float) -> np.ndarray:
    pooled = (s1 + s2) / (2 * n)
    v0 = pooled * (1 - pooled) * (2 / n)
    total = 2 * n
    r2 = rho(ALPHA, tuning) ** 2
    diff = s1 / n - s2 / n
    with np.errstate(divide="ignore", invalid="ignore"):
        st2 = np.where(v0 > 0, diff * diff * total / v0, 0.0)
    log_e = r2 * st2 / (2 * (total * r2 + 1)) - 0.5 * np.log(total * r2 + 1)
    return np.where(log_e <= 0, 1.0, np.minimum(1.0, np.exp(-log_e)))


def seq_half(s1: np.ndarray, s2: np.ndarray, n: np.ndarray, tuning: float) -> np.ndarray:
    p1, p2 = s1 / n, s2 / n
    variance = p1 * (1 - p1) / n + p2 * (1 - p2) / n
    total = 2 * n
    r2 = rho(ALPHA, tuning) ** 2
    return np.sqrt(variance * total) * np.sqrt(
        2 * (total * r2 + 1) * np.log(np.sqrt(total * r2 + 1) / ALPHA) / (total * total * r2)
    )


def check_against_library(rng: np.random.Generator) -> float:
    """The vectorised formulas must be the library's: the largest difference on 2,000 random cases."""
    worst = 0.0
    for _ in range(2000):
        n = int(rng.integers(20, 20_000))
        s1, s2 = (int(x) for x in rng.binomial(n, rng.uniform(0.001, 0.3), 2))
        tuning = float(rng.integers(1000, 100_000))
        a1, a2, an = np.array([s1]), np.array([s2]), np.array([n])
        worst = max(worst, abs(float(z_p(a1, a2, an)[0]) - two_proportion_ztest(s1, n, s2, n)[1]))
        worst = max(
            worst, abs(float(seq_p(a1, a2, an, tuning)[0]) - always_valid_p(s1, n, s2, n, tuning=tuning))
        )
        interval = confidence_sequence(s1, n, s2, n, tuning=tuning)
        if interval is not None:
            worst = max(worst, abs(float(seq_half(a1, a2, an, tuning)[0]) - (interval[1] - interval[0]) / 2))
    return worst


def peeking(rng: np.random.Generator, sims: int, looks: int, per_look: int, rate: float) -> dict[str, float]:
    a = rng.binomial(per_look, rate, size=(sims, looks)).cumsum(axis=1)
    b = rng.binomial(per_look, rate, size=(sims, looks)).cumsum(axis=1)
    n = per_look * np.arange(1, looks + 1)[None, :].repeat(sims, axis=0)
    tuning = 2 * per_look * looks
    fixed = z_p(a, b, n) < ALPHA
    sequential = seq_p(a, b, n, tuning) < ALPHA
    half = seq_half(a, b, n, tuning)
    diff = a / n - b / n
    return {
        "fixed, peeked at every look": float(fixed.any(axis=1).mean()),
        "fixed, read once at the end": float(fixed[:, -1].mean()),
        "always-valid, peeked at every look": float(sequential.any(axis=1).mean()),
        "confidence sequence missed 0 at some look": float((np.abs(diff) > half).any(axis=1).mean()),
    }


def coverage(rng: np.random.Generator, sims: int) -> list[tuple[str, float]]:
    """Share of 95% intervals that cover the true value (Wilson rate, Wald lift), at a few sizes."""
    found = []
    for n, p1, p2 in ((200, 0.03, 0.02), (2_000, 0.03, 0.02), (20_000, 0.012, 0.01), (500, 0.2, 0.15)):
        s1 = rng.binomial(n, p1, sims)
        s2 = rng.binomial(n, p2, sims)
        rate_ok = np.mean([lo <= p1 <= hi for lo, hi in (wilson(int(s), n) for s in s1)])
        lift_ok = np.mean(
            [
                lo <= p1 - p2 <= hi
                for lo, hi in (diff_interval(int(x), n, int(y), n) for x, y in zip(s1, s2, strict=True))
            ]
        )
        found.append((f"Wilson rate, n={n:,}, p={p1:.1%}", float(rate_ok)))
        found.append((f"Wald lift, n={n:,} per arm, {p1:.1%} vs {p2:.1%}", float(lift_ok)))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sims", type=int, default=4000)
    parser.add_argument(
        "--looks", type=int, default=144, help="looks over the test (144: every 10 min for 24 h)"
    )
    parser.add_argument("--per-look", type=int, default=70, help="contacts per arm between looks")
    parser.add_argument("--rate", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=20261203)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.monotonic()
    worst = check_against_library(rng)
    if worst > 1e-9:
        sys.exit(f"the vectorised formulas differ from clarion.analysis by {worst:.3g}: fix the benchmark")
    total = args.per_look * args.looks
    print(f"formulas agree with clarion.analysis to {worst:.1e}")
    print(
        f"\nA/A tests: {args.sims:,} simulated, {args.looks} looks each, "
        f"{total:,} contacts per arm at the end, "
        f"true rate {args.rate:.1%} in both arms, alpha {ALPHA}"
    )
    for name, value in peeking(rng, args.sims, args.looks, args.per_look, args.rate).items():
        se = math.sqrt(value * (1 - value) / args.sims)
        print(f"  {name:<45} false-positive rate {value:6.1%}  (± {1.96 * se:.1%})")
    print(f"\nCoverage of 95% intervals ({args.sims:,} simulated experiments each)")
    for name, value in coverage(rng, args.sims):
        print(f"  {name:<45} {value:6.1%}")
    print(
        f"\n({time.monotonic() - started:.0f} s on a shared, noisy machine; "
        "the figures are simulated, not timed)"
    )


if __name__ == "__main__":
    main()
