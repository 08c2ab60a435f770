"""ActBlue, Action Network and Stripe webhooks: authenticated as each platform does, attributed by the
token the platform hands back (else by email or phone), idempotent, refunds undo their gifts; forged,
unauthenticated or malformed requests get a 4xx and record nothing. Payloads follow the platforms'
documented examples (fields Clarion does not read are kept, to show it ignores them)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import stripe

from clarion.channels.base import ChannelKind
from clarion.messages.links import cta_url
from tests.conftest import CampaignDir
from tests.tracking.conftest import RUN, Tracked, tracking_service

AB_USER, AB_PASSWORD = "clarion-actblue", "actblue-password-for-tests-000"
AN_KEY = "action-network-key-for-tests-00"
STRIPE_SECRET = "whsec_test_secret_for_clarion_tests"


@pytest.fixture
def service(campaign_dir: CampaignDir) -> Iterator[Tracked]:
    with tracking_service(
        campaign_dir,
        clarion_rate_limit="off",
        clarion_reject_limit="off",
        clarion_actblue_username=AB_USER,
        clarion_actblue_password=AB_PASSWORD,
        clarion_actionnetwork_key=AN_KEY,
        stripe_webhook_secret=STRIPE_SECRET,
    ) as tracked:
        yield tracked


def actblue_payload(
    refcode: str | None,
    *,
    order: str = "AB123456",
    lines: tuple[tuple[str, str], ...] = (("9001", "25.00"),),
    email: str = "someone@example.net",
    **contribution: Any,
) -> dict[str, Any]:
    """Shaped like ActBlue's documented "ActBlue Default" payload (donor, contribution, lineitems, form)."""
    return {
        "donor": {
            "firstname": "Ada",
            "lastname": "Lovelace",
            "addr1": "1 Main St",
            "city": "Washington",
            "state": "DC",
            "zip": "20001",
            "country": "United States",
            "email": email,
            "phone": "",
            "isEligibleForExpressLane": False,
            "employerData": {"employer": "None", "occupation": "Retired"},
        },
        "contribution": {
            "createdAt": "2026-12-03T02:05:00-05:00",
            "orderNumber": order,
            "contributionForm": "debate-night",
            "refcodes": {"refcode": refcode, "refcode2": "tv"} if refcode else {},
            "recurringPeriod": "once",
            "recurringDuration": 1,
            "isRecurring": False,
            "isPaypal": False,
            "isMobile": True,
            "abTestName": None,
            "abTestVariation": None,
            "isExpress": False,
            "withExpressLane": False,
            "expressSignup": False,
            "status": "approved",
            "thanksUrl": None,
            "retryUrl": None,
            "smartBoostAmount": None,
            **contribution,
        },
        "lineitems": [
            {
                "sequence": i,
                "entityId": 12345,
                "fecId": "C00000000",
                "committeeName": "Example for Congress",
                "amount": amount,
                "paidAt": "2026-12-03T02:05:01-05:00",
                "paymentId": 777,
                "lineitemId": line,
            }
            for i, (line, amount) in enumerate(lines)
        ],
        "form": {"name": "debate-night", "kind": "page", "managingEntityName": "Example for Congress"},
    }


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def post_actblue(service: Tracked, payload: dict[str, Any], **auth: str) -> Any:
    headers = (
        basic(auth.get("user", AB_USER), auth.get("password", AB_PASSWORD)) if auth.get("auth", "1") else {}
    )
    return service.client.post("/webhooks/actblue", content=json.dumps(payload).encode(), headers=headers)


def test_an_actblue_cta_gets_the_token_as_refcode_and_keeps_its_own_in_refcode2() -> None:
    url = cta_url(
        "https://secure.actblue.com/donate/debate?refcode=tv&amount=5",
        campaign="c",
        channel="email",
        kind=ChannelKind.EMAIL,
        variant="a",
        token="TOKEN",
    )
    assert "refcode=TOKEN" in url and "refcode2=tv" in url and "amount=5" in url
    kept = cta_url(
        "https://secure.actblue.com/donate/x?refcode=tv",
        campaign="c",
        channel="e",
        kind=ChannelKind.EMAIL,
        variant="a",
        token="T",
        keep_refcode_as="refcode_source",
    )
    assert "refcode_source=tv" in kept and "refcode=T" in kept


def test_an_actblue_gift_through_a_tracked_link_is_attributed_to_its_contact_channel_and_variant(
    service: Tracked,
) -> None:
    token = service.token("email", "b", 1)
    payload = actblue_payload(token, lines=(("9001", "25.00"), ("9002", "10.50")))
    for _ in range(2):  # ActBlue retries until it gets a 2xx: a redelivery records nothing new
        response = post_actblue(service, payload)
        assert response.status_code == 200, response.text
    assert response.json() == {"recorded": 2, "unmatched": 0}
    found = service.ledger.engagement(RUN)
    assert found.conversions == {("b", "email"): (1, 2, 3550, 3550**2)}


def test_actblue_refunds_undo_the_gift_and_cancellations_keep_it(service: Tracked) -> None:
    token = service.token("email", "b", 1)
    post_actblue(service, actblue_payload(token, order="AB1"))
    post_actblue(service, actblue_payload(token, order="AB2", lines=(("7", "5.00"),)))
    refund = actblue_payload(token, order="AB1", status="refunded")
    refund["lineitems"][0]["refundedAt"] = "2026-12-04T10:00:00-05:00"
    assert post_actblue(service, refund).json() == {"recorded": 1, "unmatched": 0}
    assert post_actblue(service, refund).status_code == 200  # redelivered: still one refund
    cancel = actblue_payload(token, order="AB2", lines=(("7", "5.00"),), status="cancelled")
    assert post_actblue(service, cancel).json() == {"recorded": 1, "unmatched": 0}
    found = service.ledger.engagement(RUN)
    # one gift left (AB2's $5, whose recurring series was cancelled), the refunded $25 gone
    assert found.conversions == {("b", "email"): (1, 1, 500, 500**2)}


def test_an_actblue_gift_without_a_token_is_matched_by_email(service: Tracked) -> None:
    response = post_actblue(service, actblue_payload(None, email="BEN@example.org"))
    assert response.json() == {"recorded": 1, "unmatched": 0}
    stranger = post_actblue(
        service, actblue_payload("organisers-own-refcode", order="AB9", email="x@example.net")
    )
    assert stranger.json() == {"recorded": 0, "unmatched": 1}
    arms = service.ledger.engagement(RUN).arm_conversions
    assert sum(people for people, *_ in arms.values()) == 1


@pytest.mark.parametrize(
    "auth",
    [
        pytest.param({"auth": ""}, id="no-credentials"),
        pytest.param({"password": "wrong-password-of-the-same-len"}, id="wrong-password"),
        pytest.param({"user": "someone-else"}, id="wrong-user"),
    ],
)
def test_actblue_webhooks_without_the_credentials_record_nothing(
    service: Tracked, auth: dict[str, str]
) -> None:
    response = post_actblue(service, actblue_payload(service.token("email", "b", 1)), **auth)
    assert response.status_code == 401
    assert service.ledger.engagement(RUN).conversions == {}


def test_malformed_actblue_bodies_get_a_4xx_and_record_nothing(service: Tracked) -> None:
    headers = basic(AB_USER, AB_PASSWORD)
    assert service.client.post("/webhooks/actblue", content=b"{not json", headers=headers).status_code == 400
    no_items = actblue_payload("x")
    no_items["lineitems"] = []
    assert post_actblue(service, no_items).status_code == 422
    bad_amount = actblue_payload("x")
    bad_amount["lineitems"][0]["amount"] = "lots"
    assert post_actblue(service, bad_amount).status_code == 422
    assert service.ledger.engagement(RUN).conversions == {}


def test_webhooks_of_unconfigured_platforms_are_refused(campaign_dir: CampaignDir) -> None:
    with tracking_service(campaign_dir, clarion_rate_limit="off", clarion_reject_limit="off") as bare:
        assert post_actblue(bare, actblue_payload("x")).status_code == 403
        assert bare.client.post("/webhooks/actionnetwork?key=x", content=b"[]").status_code == 403
        assert (
            bare.client.post(
                "/webhooks/stripe", content=b"{}", headers={"Stripe-Signature": "t=1,v1=0"}
            ).status_code
            == 403
        )


# -- Action Network ------------------------------------------------------------------------------------


def an_donation(
    source: str | None, *, ident: str = "d9f1e8c2-1111-2222-3333-444455556666", email: str = "x@example.net"
) -> list[dict[str, Any]]:
    """Shaped like Action Network's documented donation webhook: an array of events keyed by type."""
    return [
        {
            "osdi:donation": {
                "identifiers": [f"action_network:{ident}"],
                "created_date": "2026-12-03T07:05:31Z",
                "modified_date": "2026-12-03T07:05:31Z",
                "amount": "20.00",
                "currency": "USD",
                "recipients": [{"display_name": "Example Org", "amount": "20.00"}],
                "payment": {
                    "method": "Credit Card",
                    "reference_number": "4235",
                    "authorization_stored": False,
                },
                "action_network:recurrence": {"recurring": False},
                "action_network:referrer_data": {
                    "source": source,
                    "referrer": "group-example",
                    "website": "www.example.org",
                },
                "person": {
                    "given_name": "Ada",
                    "family_name": "Lovelace",
                    "email_addresses": [{"primary": True, "address": email}],
                    "phone_numbers": [{"primary": True, "number": "", "number_type": "Mobile"}],
                },
                "add_tags": ["debate"],
                "_links": {
                    "self": {
                        "href": f"https://actionnetwork.org/api/v2/fundraising_pages/x/donations/{ident}"
                    }
                },
            },
            "action_network:sponsor": {
                "title": "Example Org",
                "url": "https://actionnetwork.org/groups/example",
            },
        },
        {"osdi:signature": {"identifiers": ["action_network:sig-1"], "created_date": "2026-12-03T07:06:00Z"}},
    ]


def test_action_network_donations_are_attributed_by_source_once(service: Tracked) -> None:
    body = json.dumps(an_donation(service.token("sms", "a", 0))).encode()
    for _ in range(2):
        response = service.client.post(f"/webhooks/actionnetwork?key={AN_KEY}", content=body)
        assert response.status_code == 200, response.text
    assert response.json() == {"recorded": 1, "unmatched": 0}
    assert service.ledger.engagement(RUN).conversions == {("a", "sms"): (1, 1, 2000, 2000**2)}
    by_email = json.dumps(an_donation(None, ident="other", email="ben@example.org")).encode()
    assert service.client.post(
        "/webhooks/actionnetwork", content=by_email, headers=basic("x", AN_KEY)
    ).json() == {
        "recorded": 1,
        "unmatched": 0,
    }


def test_action_network_without_the_key_records_nothing(service: Tracked) -> None:
    body = json.dumps(an_donation(service.token("sms", "a", 0))).encode()
    assert service.client.post("/webhooks/actionnetwork", content=body).status_code == 401
    assert service.client.post("/webhooks/actionnetwork?key=guess", content=body).status_code == 401
    assert (
        service.client.post(
            f"/webhooks/actionnetwork?key={AN_KEY}", content=b'{"osdi:donation": 5}'
        ).status_code
        == 422
    )
    assert service.ledger.engagement(RUN).conversions == {}


# -- Stripe --------------------------------------------------------------------------------------------


def stripe_headers(body: bytes, *, secret: str = STRIPE_SECRET, at: int | None = None) -> dict[str, str]:
    """Stripe-Signature as Stripe computes it (the stripe package's own signer)."""
    timestamp = int(time.time()) if at is None else at
    signature = stripe.WebhookSignature._compute_signature(f"{timestamp}.{body.decode()}", secret)
    return {"Stripe-Signature": f"t={timestamp},v1={signature}", "Content-Type": "application/json"}


def stripe_event(kind: str, obj: dict[str, Any], event_id: str = "evt_1") -> bytes:
    event = {
        "id": event_id,
        "object": "event",
        "api_version": "2025-09-30.clover",
        "created": 1764745501,
        "livemode": False,
        "pending_webhooks": 1,
        "type": kind,
        "data": {"object": obj},
        "request": {"id": None, "idempotency_key": None},
    }
    return json.dumps(event).encode()


def checkout_session(token: str | None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "cs_test_a1",
        "object": "checkout.session",
        "amount_subtotal": 4200,
        "amount_total": 4200,
        "client_reference_id": token,
        "currency": "usd",
        "created": 1764745500,
        "customer_details": {"email": "someone@example.net", "name": "Ada", "phone": None},
        "metadata": {},
        "mode": "payment",
        "payment_intent": "pi_3Abc",
        "payment_status": "paid",
        "status": "complete",
        **extra,
    }


def post_stripe(service: Tracked, body: bytes, **sig: Any) -> Any:
    return service.client.post("/webhooks/stripe", content=body, headers=stripe_headers(body, **sig))


def test_a_stripe_checkout_is_one_gift_with_its_payment_intent_and_refunds_undo_it(service: Tracked) -> None:
    token = service.token("email", "a", 2)
    completed = stripe_event("checkout.session.completed", checkout_session(token))
    for _ in range(2):
        assert post_stripe(service, completed).json() == {"recorded": 1, "unmatched": 0}
    intent = {
        "id": "pi_3Abc",
        "object": "payment_intent",
        "amount": 4200,
        "amount_received": 4200,
        "currency": "usd",
        "metadata": {"clarion_token": token},
        "status": "succeeded",
        "created": 1764745500,
    }
    assert post_stripe(service, stripe_event("payment_intent.succeeded", intent, "evt_2")).status_code == 200
    assert service.ledger.engagement(RUN).conversions == {("a", "email"): (1, 1, 4200, 4200**2)}
    partial = {
        "id": "ch_1",
        "object": "charge",
        "amount": 4200,
        "amount_refunded": 1200,
        "currency": "usd",
        "payment_intent": "pi_3Abc",
        "refunded": False,
        "metadata": {},
    }
    assert post_stripe(service, stripe_event("charge.refunded", partial, "evt_3")).json()["recorded"] == 1
    assert service.ledger.engagement(RUN).conversions == {("a", "email"): (1, 1, 3000, 3000**2)}
    whole = {**partial, "amount_refunded": 4200, "refunded": True}
    assert post_stripe(service, stripe_event("charge.refunded", whole, "evt_4")).json()["recorded"] == 1
    assert post_stripe(service, stripe_event("charge.refunded", whole, "evt_4")).json()["recorded"] == 0
    assert service.ledger.engagement(RUN).conversions == {}


def test_stripe_events_with_a_forged_or_stale_signature_record_nothing(service: Tracked) -> None:
    body = stripe_event("checkout.session.completed", checkout_session(service.token("email", "a", 2)))
    assert post_stripe(service, body, secret="whsec_someone_else_entirely_0000").status_code == 401
    assert post_stripe(service, body, at=int(time.time()) - 3600).status_code == 401
    assert service.client.post("/webhooks/stripe", content=body).status_code == 401
    tampered = body.replace(b"4200", b"9999")
    assert (
        service.client.post("/webhooks/stripe", content=tampered, headers=stripe_headers(body)).status_code
        == 401
    )
    assert service.ledger.engagement(RUN).conversions == {}


def test_other_stripe_events_and_unpaid_sessions_are_acknowledged_and_ignored(service: Tracked) -> None:
    unpaid = stripe_event("checkout.session.completed", checkout_session("t", payment_status="unpaid"))
    assert post_stripe(service, unpaid).json() == {"recorded": 0, "unmatched": 0}
    other = stripe_event("customer.created", {"id": "cus_1", "object": "customer"})
    assert post_stripe(service, other).json() == {"recorded": 0, "unmatched": 0}


def test_the_demo_command_plays_a_gift_through_actblue(campaign_dir: CampaignDir) -> None:
    from typer.testing import CliRunner

    from clarion.base.settings import ClarionSettings
    from clarion.campaign.loader import load_campaign
    from clarion.cli.main import app
    from clarion.engine.plan import plan_run
    from clarion.ledger import Ledger, SendState, Settlement
    from tests.conftest import CAMPAIGN

    text = CAMPAIGN.replace(
        "https://donate.example.org/appeal", "https://secure.actblue.com/donate/appeal?refcode=tv"
    )
    ledger = Ledger(ClarionSettings().ledger_url())
    ledger.migrate()
    plan_run(ledger, load_campaign(campaign_dir.campaign(text)), "demo-run")
    ledger.begin("demo-run", "email", ["c-002"])
    ledger.settle("demo-run", "email", [Settlement("c-002", SendState.SENT, "sg-1")])
    result = CliRunner(env={"COLUMNS": "250"}).invoke(app, ["donations", "demo", "demo-run"])
    assert result.exit_code == 0, result.output
    assert "refcode2=tv" in result.output and "contact c-002" in result.output
    assert "went from 0 to 1" in result.output
    assert sum(n for n, *_ in ledger.engagement("demo-run").conversions.values()) == 1
