"""Thompson waves against an even split, by simulation (clarion.analysis.bandit): conversions gained, the
share of the audience sent the best arm, and the bias of the lift read from every wave pooled against the
lift read from the uniform share only.

    .venv/bin/python benchmarks/bandit.py                   # 300 simulated rollouts
    .venv/bin/python benchmarks/bandit.py --trials 100 --waves 6

Each rollout sends `--waves` waves of `--wave-size` contacts to three arms (3.0%, 3.5%, 4.5%). Later waves'
audiences convert less (a drift of `--drift` per wave, as a late audience does), which is what makes pooled
adaptive estimates biased.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clarion.analysis.arm import Arm  # noqa: E402
from clarion.analysis.bandit import allocate, thompson_shares, uniform_arms  # noqa: E402

RATES = {"a": 0.030, "b": 0.035, "c": 0.045}


def one(
    rng: np.random.Generator, trial: int, waves: int, size: int, drift: float, uniform: float
) -> dict[str, float]:
    data = {k: [0, 0] for k in RATES}
    even = {k: [0, 0] for k in RATES}
    outcomes: list[tuple[str, bool, bool]] = []
    for wave in range(waves):
        shift = -drift * wave
        arms = [Arm(k, v[0], v[1]) for k, v in data.items()]
        allocation = thompson_shares(arms, uniform, seed=trial * 100 + wave)
        ids = [f"t{trial}-w{wave}-{i}" for i in range(size)]
        for arm, from_uniform in allocate(allocation, ids, f"bench:{trial}:{wave}").values():
            converted = bool(rng.random() < RATES[arm] + shift)
            data[arm][0] += 1
            data[arm][1] += converted
            outcomes.append((arm, from_uniform, converted))
        for i, arm in enumerate(RATES):  # the even split, for comparison
            n = size // len(RATES) + (1 if i < size % len(RATES) else 0)
            even[arm][0] += n
            even[arm][1] += int(rng.binomial(n, RATES[arm] + shift))
    uniform_found = {a.name: a.rate or 0.0 for a in uniform_arms(outcomes, list(RATES))}
    return {
        "thompson": sum(v[1] for v in data.values()),
        "even": sum(v[1] for v in even.values()),
        "best_share": data["c"][0] / sum(v[0] for v in data.values()),
        "pooled_lift": data["c"][1] / data["c"][0] - data["a"][1] / max(data["a"][0], 1),
        "uniform_lift": uniform_found["c"] - uniform_found["a"],
        "mean_drift": -drift * (waves - 1) / 2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--waves", type=int, default=4)
    parser.add_argument("--wave-size", type=int, default=3000)
    parser.add_argument("--drift", type=float, default=0.004)
    parser.add_argument("--uniform-share", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.monotonic()
    runs = [
        one(rng, t, args.waves, args.wave_size, args.drift, args.uniform_share) for t in range(args.trials)
    ]

    def mean(key: str) -> float:
        return float(np.mean([r[key] for r in runs]))

    def se(key: str) -> float:
        return float(np.std([r[key] for r in runs], ddof=1) / np.sqrt(len(runs)))

    truth = RATES["c"] - RATES["a"]
    audience = args.waves * args.wave_size
    print(
        f"{args.trials} rollouts of {args.waves} waves x {args.wave_size:,} contacts, arms "
        + ", ".join(f"{k} {v:.1%}" for k, v in RATES.items())
        + f", drift {-args.drift:+.1%} per wave, uniform share {args.uniform_share:.0%}"
    )
    gained = mean("thompson") - mean("even")
    print(
        f"  conversions: Thompson {mean('thompson'):.1f}, even split {mean('even'):.1f} "
        f"({gained:+.1f} per {audience:,})"
    )
    print(f"  share of the audience sent the best arm (c): {mean('best_share'):.1%} (even split: 33.3%)")
    print(f"  lift c - a, truth {truth * 100:+.2f} pts:")
    for label, key in (
        ("pooled over every wave:", "pooled_lift"),
        ("uniform share only:    ", "uniform_lift"),
    ):
        print(f"    {label} {mean(key) * 100:+.2f} pts (± {1.96 * se(key) * 100:.2f})")
    print(f"\n({time.monotonic() - started:.0f} s on a shared, noisy machine; figures simulated, not timed)")


if __name__ == "__main__":
    main()
