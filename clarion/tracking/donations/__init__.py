"""Conversions from donation and payment platforms, attributed by link: ActBlue, Action Network, Stripe.

Each platform has one module that authenticates a webhook the way that platform does and reads its body
into `Gift`s (one per ActBlue line item, Action Network donation, Stripe payment or refund):

    actblue.py        POST /webhooks/actblue          HTTP Basic (the credentials the organiser gave ActBlue)
    actionnetwork.py  POST /webhooks/actionnetwork    a shared key in the URL (Action Network signs nothing)
    stripe_events.py  POST /webhooks/stripe           Stripe-Signature, verified by the stripe package

`attribute.py` turns gifts into ledger conversions: by the tracked-link token the platform hands back
(ActBlue's refcode, Action Network's source, Stripe's client_reference_id or metadata), else by the
donor's email or phone among the newest runs' audiences; a refund or cancellation goes where its gift
went. Every conversion is recorded once per platform id (order number and line item, donation id,
payment intent), so a redelivered webhook changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Gift:
    """One donation, refund or cancellation as a platform reported it, authenticated."""

    source: str  # "actblue", "actionnetwork", "stripe"
    external_id: str  # unique per platform: a redelivery carries the same id
    amount_minor: int  # negative for a refund
    currency: str
    at: datetime
    kind: str = "conversion"  # or "refund", "partial_refund", "cancellation"
    refers_to: str | None = None  # a reversal's gift (its external_id)
    token: str | None = None  # the tracked link's token, where the platform handed it back
    email: str | None = None
    phone: str | None = None


__all__ = ["Gift"]
