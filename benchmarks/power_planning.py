"""Power planning, by simulation: for a few designs (the demo's among them), the smallest lift each detects
at 80% power (clarion.analysis.design), the power simulated at that lift with the report's z-test, and what
the always-valid test (read once at the end, or at every one of 144 looks) gives up for its freedom.

    .venv/bin/python benchmarks/power_planning.py              # 4,000 simulated experiments per design
    .venv/bin/python benchmarks/power_planning.py --sims 1000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.peeking import seq_p, z_p  # noqa: E402
from clarion.analysis.design import mde, needed  # noqa: E402

DESIGNS = [  # name, baseline, treated contacts, control contacts, hoped-for lift
    ("demo: a variant vs the 2% holdout", 0.005, 4_900, 190, 0.004),
    ("demo: sms sent vs its 10% holdout", 0.005, 7_540, 823, 0.004),
    ("two variants, 5,000 each", 0.02, 5_000, 5_000, 0.005),
    ("Facebook 2010 scale: 600,000 vs 600,000", 0.5, 600_000, 600_000, 0.004),
]


def simulate(
    rng: np.random.Generator, p2: float, d: float, n1: int, n2: int, sims: int
) -> tuple[float, float, float]:
    """Power of: the z-test at the end; the always-valid test at the end; it at any of 144 even looks."""
    looks = 144
    n_a = np.round(np.linspace(0, n1, looks + 1)).astype(int)[1:]  # contacts in by each look
    n_b = np.round(np.linspace(0, n2, looks + 1)).astype(int)[1:]
    a = rng.binomial(np.diff(n_a, prepend=0)[None, :].repeat(sims, axis=0), p2 + d).cumsum(axis=1)
    b = rng.binomial(np.diff(n_b, prepend=0)[None, :].repeat(sims, axis=0), p2).cumsum(axis=1)
    end_z = _z(a[:, -1], b[:, -1], n1, n2) < 0.05
    tuning = float(n1 + n2)
    end_seq = _seq(a[:, -1], b[:, -1], n1, n2, tuning) < 0.05
    any_seq = np.zeros(sims, dtype=bool)
    for k in range(looks):
        if n_a[k] and n_b[k]:
            any_seq |= _seq(a[:, k], b[:, k], int(n_a[k]), int(n_b[k]), tuning) < 0.05
    return float(end_z.mean()), float(end_seq.mean()), float(any_seq.mean())


def _z(s1: np.ndarray, s2: np.ndarray, n1: int, n2: int) -> np.ndarray:
    if n1 == n2:
        return z_p(s1, s2, np.full(s1.shape, n1))
    from scipy import stats as sps

    pooled = (s1 + s2) / (n1 + n2)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, (s1 / n1 - s2 / n2) / se, 0.0)
    return 2 * sps.norm.sf(np.abs(z))


def _seq(s1: np.ndarray, s2: np.ndarray, n1: int, n2: int, tuning: float) -> np.ndarray:
    if n1 == n2:
        return seq_p(s1, s2, np.full(s1.shape, n1), tuning)
    from clarion.analysis.sequential import always_valid_p

    return np.array(
        [always_valid_p(int(x), n1, int(y), n2, tuning=tuning) for x, y in zip(s1, s2, strict=True)]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sims", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.monotonic()
    for name, p2, n1, n2, hoped in DESIGNS:
        d = mde(p2, n1, n2)
        print(f"\n{name}: {n1:,} vs {n2:,} contacts, baseline {p2:.1%}")
        if d is None:
            print("  no lift is detectable")
            continue
        end_z, end_seq, any_seq = simulate(rng, p2, d, n1, n2, args.sims)
        print(f"  smallest lift detected at 80% power: {d * 100:.2f} pts")
        print(
            f"  simulated power at that lift: z-test {end_z:.1%}; always-valid at the end {end_seq:.1%}, "
            f"at any of 144 looks {any_seq:.1%}"
        )
        if hoped < d:
            t, c = needed(p2, hoped, n1, n2)
            print(f"  the hoped-for {hoped * 100:.2f} pts needs about {t:,} vs {c:,} contacts at this split")
        else:
            print(f"  enough for the hoped-for {hoped * 100:.2f} pts")
    print(
        f"\n({time.monotonic() - started:.0f} s; simulated on a shared, noisy machine: figures, not timings)"
    )


if __name__ == "__main__":
    main()
