"""One arm of a comparison (a variant, or the holdout): its exposures, successes, revenue and planned share.

Shared by the statistics (stats.py) and the design checks (power.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Arm:
    name: str
    exposures: int
    successes: int
    revenue: float | None = None
    revenue_sq: float | None = None
    assigned: int | None = None
    weight: float | None = None

    def __post_init__(self) -> None:
        check_counts(self.successes, self.exposures, f"arm {self.name!r}")

    @property
    def rate(self) -> float | None:
        return self.successes / self.exposures if self.exposures else None


def check_counts(successes: int, n: int, what: str = "counts") -> None:
    """Impossible counts are a caller's bug or a bad input file: say which, never compute on them."""
    if successes < 0 or n < 0:
        raise ValueError(f"{what}: {successes} successes out of {n} exposures; counts cannot be negative")
    if successes > n:
        raise ValueError(
            f"{what}: {successes} successes out of {n} exposures; successes cannot exceed exposures"
        )
