"""How a campaign's outcome is measured: the attribution window, which clicks count as a person's, what the
organiser expects (for power planning), and per-channel holdouts.

These are keys of the campaign file (the user-facing contract: add keys, never rename them):

    attribution:
      window: 7d              # a conversion counts from the contact's first send until this long after
    tracking:
      automated_clicks:       # rules that mark a click as a machine's (kept, shown apart, never a verdict's)
        fast_click: 10s       # clicked this soon after the message reached the recipient
        burst: 1s             # two or more of one message's links fetched within this span
        beacon: false         # the landing page runs Clarion's beacon: a click without one is a machine's
    experiment:
      channel_holdouts: {sms: 0.1, email: 0.05}
      expected: {baseline: 0.01, lift: 0.004}
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from clarion.base.timing import parse_duration

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
DEFAULT_WINDOW = timedelta(days=7)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Attribution(_Strict):
    """Which conversions a run may claim: those between the contact's first send of the run (for the
    holdout, and for contacts the run sent nothing, the run's launch) and `window` after it."""

    window: Duration = Field(
        default=DEFAULT_WINDOW, description="How long after a contact's first send a conversion still counts."
    )

    @field_validator("window")
    @classmethod
    def _span(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=1) <= value <= timedelta(days=365):
            raise ValueError("must be between 1m and 365d (e.g. 7d)")
        return value


class AutomatedClicks(_Strict):
    """The timing rules that mark a click as automated (the user-agent and network rules always apply)."""

    fast_click: Duration = Field(
        default=timedelta(seconds=10),
        description="A click this soon after the message reached the recipient is a scanner's (0s: off).",
    )
    burst: Duration = Field(
        default=timedelta(seconds=1),
        description="Two or more of one message's links fetched within this span are a scanner's (0s: off).",
    )
    beacon: bool = Field(
        default=False,
        description="The landing page runs the beacon (GET /b/<ct>): a click without one is a machine's.",
    )


class Expected(_Strict):
    """What the organiser hopes for, so validation can say whether the design can detect it."""

    baseline: float = Field(gt=0, lt=1, description="The conversion rate expected without any message.")
    lift: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="The absolute lift hoped for (0.004 = 0.4 points); without it only the smallest "
        "detectable lift is stated.",
    )

    @model_validator(mode="after")
    def _below_one(self) -> Expected:
        if self.lift is not None and self.baseline + self.lift >= 1:
            raise ValueError("expected.baseline + expected.lift must stay below 1")
        return self


__all__ = ["DEFAULT_WINDOW", "Attribution", "AutomatedClicks", "Expected"]
