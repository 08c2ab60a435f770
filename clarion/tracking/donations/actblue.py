"""ActBlue's webhooks (ActBlue Default, Default Refunds, Default Cancellations): `POST /webhooks/actblue`.

ActBlue authenticates its webhooks with HTTP Basic credentials that the organiser chooses when requesting
the webhook; here they are CLARION_ACTBLUE_USERNAME and CLARION_ACTBLUE_PASSWORD, compared in constant
time. Without them the endpoint refuses everything (403).

A notification is one contribution with its donor, its refcodes and its line items (one per receiving
entity); each line item is one conversion, recorded once per (order number, line item id). The same
endpoint takes the refund and cancellation webhooks: a line item with `refundedAt` (or a contribution
whose `status` is refunded) is a refund of its gift, a recurring contribution cancelled
(`status` cancelled, `cancelledAt` or `recurringCancelledAt`) a cancellation that keeps past gifts.

Attribution: Clarion's tracked links give an ActBlue CTA its token as `refcode` (the organiser's own
refcode moves to `refcode2`, or `cta.refcode_keep_as`), and ActBlue reports it back in
`contribution.refcodes.refcode`; a gift without a token is matched by the donor's email or phone.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from clarion.channels.webhooks import Refused, WebhookRequest
from clarion.tracking.donations import Gift
from clarion.tracking.donations.common import basic_credentials, json_body, mapping, minor, same, text, when

SOURCE = "actblue"
MAX_BODY = 256 * 1024
REFUNDED = {"refunded", "refund"}
CANCELLED = {"cancelled", "canceled", "cancellation"}


def authenticate(request: WebhookRequest, username: str | None, password: str | None) -> None:
    if not username or not password:
        raise Refused(403, "ActBlue webhook refused: CLARION_ACTBLUE_USERNAME/PASSWORD are not set")
    given = basic_credentials(request.headers)
    if given is None:
        raise Refused(401, "ActBlue webhook without HTTP Basic credentials")
    ok_user = same(given[0], username)
    ok_password = same(given[1], password)
    if not (ok_user and ok_password):
        raise Refused(401, "ActBlue webhook with wrong credentials")


def read(body: bytes) -> list[Gift]:
    data = json_body(body, "ActBlue")
    if not isinstance(data, dict):
        raise Refused(422, "ActBlue body is not an object with contribution and lineitems")
    contribution = data.get("contribution")
    items = data.get("lineitems")
    if not isinstance(contribution, dict) or not isinstance(items, list) or not items:
        raise Refused(422, "ActBlue body lacks contribution or lineitems")
    order = text(contribution.get("orderNumber"), 100)
    if not order:
        raise Refused(422, "ActBlue contribution without orderNumber")
    donor = mapping(data.get("donor"))
    token = _token(contribution)
    status = str(contribution.get("status") or "").strip().lower()
    cancelled = status in CANCELLED or bool(
        contribution.get("cancelledAt") or contribution.get("recurringCancelledAt")
    )
    gifts = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise Refused(422, f"ActBlue lineitems[{index}] is not an object")
        line = text(item.get("lineitemId"), 60)
        if not line:
            raise Refused(422, f"ActBlue lineitems[{index}] without lineitemId")
        gift_id = f"{order}:{line}"
        amount = minor(item.get("amount"), f"lineitems[{index}]")
        base = Gift(
            source=SOURCE,
            external_id=gift_id,
            amount_minor=amount,
            currency="USD",
            at=when(item.get("paidAt") or contribution.get("createdAt")),
            token=token,
            email=text(donor.get("email")),
            phone=text(donor.get("phone"), 40),
        )
        if item.get("refundedAt") or status in REFUNDED:
            refunded = minor(item.get("refundedAmount") or item.get("amount"), f"lineitems[{index}]")
            gifts.append(
                replace(
                    base,
                    external_id=f"{gift_id}:refund",
                    amount_minor=-abs(refunded),
                    at=when(item.get("refundedAt") or contribution.get("refundedAt")),
                    kind="refund" if abs(refunded) >= abs(amount) else "partial_refund",
                    refers_to=gift_id,
                )
            )
        elif cancelled:
            at = contribution.get("cancelledAt") or contribution.get("recurringCancelledAt")
            gifts.append(
                replace(
                    base,
                    external_id=f"{gift_id}:cancel",
                    amount_minor=0,
                    at=when(at),
                    kind="cancellation",
                    refers_to=gift_id,
                )
            )
        else:
            gifts.append(base)
    return gifts


def _token(contribution: dict[str, Any]) -> str | None:
    refcodes = contribution.get("refcodes")
    if isinstance(refcodes, dict) and refcodes.get("refcode"):
        return text(refcodes.get("refcode"), 64)
    return text(contribution.get("refcode"), 64)
