"""Stripe's webhooks: `POST /webhooks/stripe`, verified by the stripe package (`Stripe-Signature`).

Stripe signs every event with the endpoint's signing secret (`whsec_...`, STRIPE_WEBHOOK_SECRET): the
header carries a timestamp and HMAC-SHA256 signatures of "<timestamp>.<body>", and
`stripe.Webhook.construct_event` checks them and the timestamp's age (300 s), so this module never
computes a signature itself. Without the secret the endpoint refuses everything (403).

Events read (others are acknowledged and ignored, as Stripe asks):
- `checkout.session.completed` (when `payment_status` is paid) and `checkout.session.async_payment_succeeded`:
  a gift of `amount_total`; the token in `client_reference_id` (a Payment Link or Checkout Session given
  `?client_reference_id=` / `client_reference_id=`) or `metadata.clarion_token`;
- `payment_intent.succeeded`: a gift of `amount_received`, the token in `metadata.clarion_token` (or `ct`);
- `charge.refunded` and `refund.created`: a refund, attributed where its payment went.
A payment is recorded once by its PaymentIntent id (a Checkout Session and its PaymentIntent are one
gift); a refund once by its refund id (or, for a charge.refunded without its refunds listed, by the
charge's cumulative amount_refunded). Amounts are in the currency's minor unit, as Stripe sends them.
"""

from __future__ import annotations

import json
from typing import Any

from clarion.channels.webhooks import Refused, WebhookRequest
from clarion.tracking.donations import Gift
from clarion.tracking.donations.common import currency, mapping, text, when

SOURCE = "stripe"
MAX_BODY = 512 * 1024
TOLERANCE = 300
GIFTS = {"checkout.session.completed", "checkout.session.async_payment_succeeded", "payment_intent.succeeded"}
REFUNDS = {"charge.refunded", "refund.created"}


def verify(request: WebhookRequest, secret: str | None) -> dict[str, Any]:
    """The verified event as JSON; Refused when the signature, its age or the body is wrong."""
    import stripe

    if not secret:
        raise Refused(403, "Stripe webhook refused: STRIPE_WEBHOOK_SECRET is not set")
    header = request.headers.get("stripe-signature")
    if not header:
        raise Refused(401, "Stripe webhook without Stripe-Signature")
    try:
        stripe.Webhook.construct_event(request.body, header, secret, tolerance=TOLERANCE)
    except stripe.SignatureVerificationError:
        raise Refused(401, "Stripe webhook signature does not verify (or is too old)") from None
    except ValueError:
        raise Refused(400, "Stripe webhook body is not JSON") from None
    event = json.loads(request.body)
    if not isinstance(event, dict) or not isinstance(event.get("data"), dict):
        raise Refused(422, "Stripe event without data")
    return event


def read(event: dict[str, Any], refunded_before: Any) -> list[Gift]:
    """The gifts or refunds one verified event carries. `refunded_before(gift_id)` gives the minor units
    already recorded as refunded of a payment (<= 0), for charge.refunded without its refund list."""
    kind = str(event.get("type") or "")
    obj = event["data"].get("object")
    if not isinstance(obj, dict):
        raise Refused(422, "Stripe event without data.object")
    if kind in GIFTS:
        if kind == "checkout.session.completed" and obj.get("payment_status") not in (
            "paid",
            "no_payment_required",
        ):
            return []  # paid later: checkout.session.async_payment_succeeded
        return [_gift(kind, obj)]
    if kind == "refund.created":
        return [_refund(obj, str(obj.get("id") or ""), int(obj.get("amount") or 0), obj)]
    if kind == "charge.refunded":
        return _charge_refunds(obj, refunded_before)
    return []


def _metadata(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _gift(kind: str, obj: dict[str, Any]) -> Gift:
    meta = _metadata(obj)
    if kind.startswith("checkout.session"):
        amount = obj.get("amount_total")
        payment = obj.get("payment_intent")
        external = payment if isinstance(payment, str) and payment else obj.get("id")
        token = obj.get("client_reference_id") or meta.get("clarion_token") or meta.get("ct")
        details = mapping(obj.get("customer_details"))
        email = details.get("email") or obj.get("customer_email")
        phone = details.get("phone")
    else:
        amount = obj.get("amount_received", obj.get("amount"))
        external = obj.get("id")
        token = meta.get("clarion_token") or meta.get("ct")
        email, phone = obj.get("receipt_email"), None
    if not external:
        raise Refused(422, f"Stripe {kind} without an id")
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise Refused(422, f"Stripe {kind} without an integer amount")
    return Gift(
        source=SOURCE,
        external_id=str(external)[:200],
        amount_minor=amount,
        currency=currency(obj.get("currency")),
        at=when(obj.get("created")),
        token=text(token, 64),
        email=text(email),
        phone=text(phone, 40),
    )


def _refund(obj: dict[str, Any], refund_id: str, amount: int, charge: dict[str, Any]) -> Gift:
    payment = (
        charge.get("payment_intent") or obj.get("payment_intent") or charge.get("charge") or charge.get("id")
    )
    if not refund_id or not payment:
        raise Refused(422, "Stripe refund without its id or its payment")
    return Gift(
        source=SOURCE,
        external_id=f"refund:{refund_id}"[:200],
        amount_minor=-abs(amount),
        currency=currency(obj.get("currency") or charge.get("currency")),
        at=when(obj.get("created")),
        kind="partial_refund",  # made "refund" by attribute() once the whole gift is refunded
        refers_to=str(payment),
    )


def _charge_refunds(charge: dict[str, Any], refunded_before: Any) -> list[Gift]:
    listed = charge.get("refunds")
    data = listed.get("data") if isinstance(listed, dict) else None
    if isinstance(data, list) and data:
        return [
            _refund(r, str(r.get("id") or ""), int(r.get("amount") or 0), charge)
            for r in data
            if isinstance(r, dict)
        ]
    total = int(charge.get("amount_refunded") or 0)
    payment = str(charge.get("payment_intent") or charge.get("id") or "")
    if not payment or total <= 0:
        raise Refused(422, "Stripe charge.refunded without amount_refunded or its payment")
    new = total + int(refunded_before(payment))  # refunded_before is <= 0
    if new <= 0:
        return []
    gift = _refund(charge, f"{charge.get('id')}:{total}", new, charge)
    return [gift]
