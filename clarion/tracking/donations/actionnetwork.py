"""Action Network's donation webhook (`osdi:donation`): `POST /webhooks/actionnetwork`.

Action Network does not sign its webhooks; it POSTs to the HTTPS URL the organiser registers. So that
nothing unauthenticated is recorded, that URL carries a shared key, CLARION_ACTIONNETWORK_KEY: register
`https://go.example.org/webhooks/actionnetwork?key=<the key>` (or give it as the password of HTTP Basic
credentials in the URL); it is compared in constant time, and without it set the endpoint refuses (403).

The body is an array; each element wraps one event in its type. `osdi:donation` elements are read (other
types, such as `osdi:signature`, are ignored and counted); each donation is recorded once by its
`action_network:` identifier. Clarion's tracked links give an Action Network page the token as `source`,
which comes back in `action_network:referrer_data.source`; without it the donor is matched by email or
phone. Action Network sends no refund webhooks.
"""

from __future__ import annotations

from typing import Any

from clarion.channels.webhooks import Refused, WebhookRequest
from clarion.tracking.donations import Gift
from clarion.tracking.donations.common import (
    basic_credentials,
    currency,
    json_body,
    mapping,
    minor,
    same,
    text,
    when,
)

SOURCE = "actionnetwork"
MAX_BODY = 512 * 1024


def authenticate(request: WebhookRequest, key: str | None) -> None:
    if not key:
        raise Refused(403, "Action Network webhook refused: CLARION_ACTIONNETWORK_KEY is not set")
    given = request.query.get("key")
    if given is None:
        basic = basic_credentials(request.headers)
        given = basic[1] if basic else None
    if not given or not same(given, key):
        raise Refused(401, "Action Network webhook without the right key")


def read(body: bytes) -> tuple[list[Gift], int]:
    """The donations in a body, and how many other events it carried."""
    data = json_body(body, "Action Network")
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise Refused(422, "Action Network body is not an array of events")
    gifts, others = [], 0
    for index, element in enumerate(data):
        if not isinstance(element, dict):
            raise Refused(422, f"Action Network event {index} is not an object")
        donation = element.get("osdi:donation")
        if donation is None:
            others += 1
            continue
        if not isinstance(donation, dict):
            raise Refused(422, f"Action Network event {index}: osdi:donation is not an object")
        gifts.append(_gift(index, donation, element))
    return gifts, others


def _gift(index: int, donation: dict[str, Any], element: dict[str, Any]) -> Gift:
    ids = [str(i) for i in donation.get("identifiers") or [] if str(i).startswith("action_network:")]
    external = ids[0] if ids else text(element.get("idempotency_key"), 200)
    if not external:
        raise Refused(422, f"Action Network donation {index} has no action_network identifier")
    referrer = donation.get("action_network:referrer_data")
    referrer = referrer if isinstance(referrer, dict) else {}
    person = mapping(donation.get("person"))
    return Gift(
        source=SOURCE,
        external_id=external[:200],
        amount_minor=minor(donation.get("amount", 0), f"donation {index}"),
        currency=currency(donation.get("currency")),
        at=when(donation.get("created_date")),
        token=text(referrer.get("source"), 64),
        email=_first(person.get("email_addresses"), "address"),
        phone=_first(person.get("phone_numbers"), "number"),
    )


def _first(entries: Any, key: str) -> str | None:
    """The primary entry's value (else the first) of an OSDI list of addresses or numbers."""
    if not isinstance(entries, list):
        return None
    found = [e for e in entries if isinstance(e, dict) and e.get(key)]
    primary = [e for e in found if e.get("primary")]
    chosen = primary or found
    return text(chosen[0].get(key)) if chosen else None
