"""What a launch returns: the run's status, per channel x variant results, and what stopped a channel.

The command line prints it (a table, or `--json` from `as_dict()`), the Prefect artifacts show it, and the
tests read it; a run still waiting (for a step, or a contact's local hours) says until when.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from clarion.ledger.results import ChannelVariantResult


@dataclass(frozen=True)
class ChildOutcome:
    """A run a launch sent besides its own: a rollout's second half, a Thompson wave, or a share kit."""

    run_id: str
    results: list[ChannelVariantResult]


@dataclass(frozen=True)
class RolloutOutcome(ChildOutcome):
    winner: str = ""
    decided: bool = False  # False: nothing won with the required confidence; `winner` is the fallback
    text: str = ""
    metric: str = ""


@dataclass(frozen=True)
class WaveOutcome(ChildOutcome):
    """A Thompson rollout's wave: its run, and the allocation it was sent on (clarion.engine.bandit)."""

    wave: int = 0
    text: str = ""
    allocation: dict[str, Any] = field(default_factory=dict)  # arms, shares, prob_best, uniform_share...


@dataclass
class RunOutcome:
    run_id: str
    status: str  # a RunStatus value
    results: list[ChannelVariantResult] = field(default_factory=list)
    errors: dict[str, list[str]] = field(default_factory=dict)  # channel (or kit-NAME:channel) -> why
    next: datetime | None = None  # a waiting run: when it goes on
    rollout: RolloutOutcome | None = None
    kits: dict[str, ChildOutcome] = field(default_factory=dict)
    waves: list[WaveOutcome] = field(default_factory=list)  # a Thompson rollout's, in order
    helpers: dict[str, int] = field(default_factory=dict)  # batches each local send helper took
    helper_rows: dict[str, int] = field(default_factory=dict)  # planning's rows each helper wrote

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    def as_dict(self) -> dict[str, Any]:
        """The outcome as JSON-ready data (what `clarion run --json` prints)."""
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "status": self.status,
            "results": [r.as_dict() for r in self.results],
            "errors": self.errors,
        }
        if self.next is not None:
            out["next"] = self.next.isoformat()
        if self.helpers:
            out["helpers"] = self.helpers
        if self.helper_rows:
            out["helper_rows"] = self.helper_rows
        if self.rollout is not None:
            r = self.rollout
            out["rollout"] = {
                "winner": r.winner,
                "decided": r.decided,
                "text": r.text,
                "metric": r.metric,
                "run_id": r.run_id,
                "results": [x.as_dict() for x in r.results],
            }
        if self.waves:
            out["waves"] = [
                {
                    "wave": w.wave,
                    "run_id": w.run_id,
                    "text": w.text,
                    "allocation": w.allocation,
                    "results": [x.as_dict() for x in w.results],
                }
                for w in self.waves
            ]
        if self.kits:
            out["kits"] = {
                name: {"run_id": kit.run_id, "results": [x.as_dict() for x in kit.results]}
                for name, kit in self.kits.items()
            }
        return out


__all__ = ["ChildOutcome", "RolloutOutcome", "RunOutcome", "WaveOutcome"]
