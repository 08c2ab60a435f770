"""A gift through ActBlue, played end to end against the tracking service in-process (for `make demo`).

A supporter who got the run's email follows its tracked link; the tracking service redirects to the ActBlue
page with the link's token as `refcode`; ActBlue then notifies `POST /webhooks/actblue` (HTTP Basic, a
payload shaped like ActBlue Default's: donor, contribution with refcodes, one line item), once and again
(ActBlue retries until it gets a 2xx). The donor's email is deliberately not the contact's: the gift is
attributed by refcode alone. Nothing leaves the machine.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx

from clarion.base.errors import ClarionError
from clarion.base.settings import TrackingSettings
from clarion.campaign.loader import load_campaign
from clarion.ledger import Ledger, SendState
from clarion.messages.links import LinkSigner
from clarion.messages.render import Renderer
from clarion.tracking import build_app


@dataclass(frozen=True)
class GiftDemo:
    contact: str
    channel: str
    variant: str
    landing: str  # where the tracked link led (the ActBlue page, with the token as refcode)
    refcode: str
    amount: Decimal
    first: dict[str, int]  # the webhook's answer, first delivery
    again: dict[str, int]  # and redelivered
    conversions: tuple[int, int]  # conversions the ledger holds on that channel and variant: before, after


def actblue_payload(refcode: str, order: str, amount: Decimal) -> dict[str, object]:
    now = datetime.now(UTC).isoformat()
    return {
        "donor": {
            "firstname": "Sam", "lastname": "Donor", "addr1": "1 Main St", "city": "Washington",
            "state": "DC", "zip": "20001", "country": "United States",
            "email": "not-the-contacts-address@example.net", "phone": "", "isEligibleForExpressLane": False,
        },
        "contribution": {
            "createdAt": now, "orderNumber": order, "contributionForm": "debate-night",
            "refcodes": {"refcode": refcode}, "recurringPeriod": "once", "recurringDuration": 1,
            "isRecurring": False, "isPaypal": False, "isMobile": True, "status": "approved",
        },
        "lineitems": [
            {"sequence": 0, "entityId": 1, "committeeName": "Example for America", "amount": f"{amount:.2f}",
             "paidAt": now, "paymentId": 1, "lineitemId": order.removeprefix("AB")},
        ],
        "form": {"name": "debate-night", "kind": "page"},
    }  # fmt: skip


def play(ledger: Ledger, run_id: str, *, channel: str = "email", amount: Decimal = Decimal("25")) -> GiftDemo:
    record = ledger.get_run(run_id)
    if record is None:
        raise ClarionError(f"no run {run_id!r} in the ledger")
    row = next(ledger.sends(run_id, channel, SendState.SENT), None)
    if row is None:
        raise ClarionError(f"run {run_id} sent no message on channel {channel!r}: nothing to click")
    loaded = load_campaign(record.campaign_file)
    seq = next(c.seq for c in loaded.contacts().records() if c.id == row.contact_id)
    signer = LinkSigner.from_settings()
    token = Renderer(loaded, signer, run_id).token(channel, row.variant, seq)
    user, password = "clarion-demo", secrets.token_urlsafe(18)
    settings = TrackingSettings(
        clarion_actblue_username=user, clarion_actblue_password=password, clarion_rate_limit="off"
    )
    app = build_app(ledger, signer=signer, settings=settings, environ={})
    order = f"AB{secrets.randbelow(10**8):08d}"
    before = ledger.engagement(run_id).conversions.get((row.variant, channel), (0, 0, 0, 0))[1]
    auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    async def run() -> tuple[str, dict[str, int], dict[str, int]]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://tracking.local") as client:
                click = await client.get(f"/c/{token}")
                landing = click.headers.get("location", "")
                refcode = parse_qs(urlsplit(landing).query).get("refcode", [""])[0]
                body = json.dumps(actblue_payload(refcode, order, amount)).encode()
                headers = {"Authorization": auth, "Content-Type": "application/json"}
                first = (await client.post("/webhooks/actblue", content=body, headers=headers)).json()
                again = (await client.post("/webhooks/actblue", content=body, headers=headers)).json()
        return landing, first, again

    landing, first, again = anyio.run(run)
    refcode = parse_qs(urlsplit(landing).query).get("refcode", [""])[0]
    after = ledger.engagement(run_id).conversions.get((row.variant, channel), (0, 0, 0, 0))[1]
    return GiftDemo(
        row.contact_id or "", channel, row.variant, landing, refcode, amount, first, again, (before, after)
    )
