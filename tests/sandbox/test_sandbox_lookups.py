"""The providers' list and lookup endpoints that settle uncertain sends, through the real SDKs: Twilio's
Messages list (filters, paging, the DateSent trap), X's user timeline (t.co links, entities, paging),
SendGrid's Email Activity API (its query language, and the add-on and scope it needs)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import requests
import tweepy
from python_http_client.exceptions import BadRequestsError, ForbiddenError
from sendgrid import SendGridAPIClient
from twilio.rest import Client

from clarion.channels.x.emulator import ACCOUNT_ID
from clarion.sandbox import FaultConfig, Sandbox
from tests.sandbox.conftest import ACCOUNT_SID, twilio_client

SENDER = "+15005550006"


# -- Twilio: GET /2010-04-01/Accounts/{sid}/Messages.json --------------------------------------------


def test_twilio_lists_texts_newest_first_filtered_by_to_and_from(twilio: Client) -> None:
    sids = [twilio.messages.create(to="+14155552671", from_=SENDER, body=f"hi {i}").sid for i in range(3)]
    twilio.messages.create(to="+14155552672", from_=SENDER, body="someone else")
    twilio.messages.create(to="+14155552671", from_="+15005550007", body="another sender")

    listed = twilio.messages.list(to="+14155552671", from_=SENDER)

    assert [m.sid for m in listed] == sids[::-1]
    assert {m.direction for m in listed} == {"outbound-api"} and listed[0].body == "hi 2"
    assert listed[0].date_created.tzinfo is not None and listed[0].date_sent is None
    assert len(twilio.messages.list(to="+14155552671")) == 4


def test_twilio_pages_through_next_page_uri(twilio: Client, http: httpx.Client) -> None:
    for i in range(7):
        twilio.messages.create(to="+14155552671", from_=SENDER, body=f"hi {i}")

    page = twilio.messages.page(to="+14155552671", page_size=3)
    seen = []
    while page is not None:
        seen += [m.body for m in page]
        page = page.next_page()

    assert seen == [f"hi {i}" for i in range(6, -1, -1)]
    raw = http.get(
        f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
        params={"To": "+14155552671", "PageSize": 3},
        auth=(ACCOUNT_SID, "token"),
    ).json()
    assert raw["page"] == 0 and raw["page_size"] == 3 and raw["start"] == 0 and raw["end"] == 2
    assert raw["next_page_uri"].startswith(f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json?To=")
    assert "PageToken=PASM" in raw["next_page_uri"] and raw["previous_page_uri"] is None


def test_a_date_sent_filter_misses_texts_still_queued(twilio: Client) -> None:
    """Twilio's trap: a text not yet sent has no DateSent, so filtering on it hides exactly the texts an
    uncertain send is about. The lookup filters by To and From and reads the creation time instead."""
    twilio.messages.create(to="+14155552671", from_=SENDER, body="queued")
    today = datetime.now(UTC).date()

    assert twilio.messages.list(to="+14155552671", date_sent_after=datetime(today.year, 1, 1)) == []
    assert [m.body for m in twilio.messages.list(to="+14155552671")] == ["queued"]


@pytest.mark.parametrize(
    "params", [{"PageSize": "0"}, {"PageSize": "1001"}, {"DateSent>": "yesterday"}, {"PageToken": "x"}]
)
def test_twilio_refuses_bad_list_parameters_with_its_error(
    http: httpx.Client, params: dict[str, str]
) -> None:
    response = http.get(
        f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json", params=params, auth=(ACCOUNT_SID, "token")
    )
    assert response.status_code == 400 and response.json()["code"] == 20001


def test_twilio_lists_only_for_its_own_credentials(http: httpx.Client) -> None:
    response = http.get(f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json", auth=("AC" + "1" * 32, "t"))
    assert response.status_code == 401 and response.json()["code"] == 20003


# -- X: GET /2/users/{id}/tweets -------------------------------------------------------------------


def _tweepy(sb: Sandbox) -> tweepy.Client:
    from clarion.channels.x.adapter import XChannel, XConfig, XSettings

    settings = XSettings.model_validate({"X_ACCESS_TOKEN": "t", "CLARION_X_URL": sb.url})
    return XChannel("x", XConfig(provider="x", body="b"), settings).client()


def test_x_lists_the_accounts_posts_newest_first_with_tco_links(sb: Sandbox, x: httpx.Client) -> None:
    ids = [
        x.post("/2/tweets", json={"text": f"post {i} https://go.example.org/c/{i}"}).json()["data"]["id"]
        for i in range(3)
    ]
    client = _tweepy(sb)

    response = client.get_users_tweets(ACCOUNT_ID, tweet_fields=["created_at", "entities"], max_results=5)

    assert [str(p.id) for p in response.data] == ids[::-1]
    newest = response.data[0]
    assert newest.text.startswith("post 2 https://t.co/") and "go.example.org" not in newest.text
    [url] = newest.entities["urls"]
    assert url["expanded_url"] == "https://go.example.org/c/2"
    assert newest.text[url["start"] : url["end"]] == url["url"]
    assert abs(newest.created_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert response.meta == {"result_count": 3, "newest_id": ids[2], "oldest_id": ids[0]}


def test_x_timeline_pages_and_honours_start_time(sb: Sandbox, x: httpx.Client) -> None:
    for i in range(7):
        x.post("/2/tweets", json={"text": f"post {i}"})
    client = _tweepy(sb)

    seen, token = [], None
    while True:
        page = client.get_users_tweets(ACCOUNT_ID, max_results=5, pagination_token=token)
        seen += [p.text for p in page.data]
        token = page.meta.get("next_token")
        if not token:
            break

    assert seen == [f"post {i}" for i in range(6, -1, -1)]
    later = client.get_users_tweets(ACCOUNT_ID, start_time=datetime.now(UTC) + timedelta(minutes=1))
    assert later.data is None and later.meta == {"result_count": 0}


def test_x_timeline_of_another_user_is_not_found_and_bad_values_are_refused(x: httpx.Client) -> None:
    body = x.get("/2/users/42/tweets").json()
    assert body["errors"][0]["title"] == "Not Found Error" and "data" not in body
    response = x.get(f"/2/users/{ACCOUNT_ID}/tweets", params={"max_results": "500"})
    assert response.status_code == 400 and response.json()["title"] == "Invalid Request"
    assert x.get(f"/2/users/{ACCOUNT_ID}/tweets", params={"start_time": "noon"}).status_code == 400


# -- SendGrid: GET /v3/messages (Email Activity) ---------------------------------------------------


def _mail(client: SendGridAPIClient, to: list[str], subject: str) -> str:
    body = {
        "personalizations": [{"to": [{"email": a}], "subject": subject} for a in to],
        "from": {"email": "team@example.org"},
        "subject": subject,
        "content": [{"type": "text/plain", "value": "hello"}],
        "custom_args": {},
    }
    return str(client.send(body).headers["X-Message-Id"])


def _activity(client: SendGridAPIClient, query: str, limit: int = 10) -> list[dict[str, object]]:
    import json

    response = client.client.messages.get(query_params={"query": query, "limit": limit})
    return list(json.loads(response.body)["messages"])


def test_email_activity_answers_sendgrids_query_language(sendgrid_client: SendGridAPIClient) -> None:
    first = _mail(sendgrid_client, ["ada@example.org", "ben@example.org"], "Chip in")
    _mail(sendgrid_client, ["ada@example.org"], "Other news")
    now = datetime.now(UTC)
    window = (
        f'last_event_time BETWEEN TIMESTAMP "{(now - timedelta(minutes=1)):%Y-%m-%dT%H:%M:%SZ}" '
        f'AND TIMESTAMP "{(now + timedelta(minutes=1)):%Y-%m-%dT%H:%M:%SZ}"'
    )

    by_id = _activity(sendgrid_client, f"msg_id LIKE '{first}%'")
    assert sorted(r["to_email"] for r in by_id) == ["ada@example.org", "ben@example.org"]
    assert all(str(r["msg_id"]).startswith(first + ".") for r in by_id)
    row = by_id[0]
    assert set(row) == {
        "from_email", "msg_id", "subject", "to_email", "status", "opens_count", "clicks_count",
        "last_event_time",
    }  # fmt: skip
    assert row["status"] == "processed" and str(row["last_event_time"]).endswith("Z")
    ada = _activity(
        sendgrid_client, f'(to_email="ada@example.org" OR to_email="nobody@example.org") AND {window}'
    )
    assert [r["subject"] for r in ada] == ["Other news", "Chip in"]  # newest first
    assert _activity(sendgrid_client, 'subject="Chip in" and NOT to_email="ada@example.org"')[0][
        "to_email"
    ] == ("ben@example.org")
    assert len(_activity(sendgrid_client, 'from_email="team@example.org"', limit=2)) == 2
    past = 'last_event_time < TIMESTAMP "2020-01-01T00:00:00Z"'
    assert _activity(sendgrid_client, past) == []


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ('bad_field="x"', "'bad_field' is not a known field"),
        ('to_email="unclosed', "invalid syntax"),
        ('(to_email="a@b.org"', "invalid syntax"),
        ('last_event_time > TIMESTAMP "noon"', "not a timestamp"),
    ],
)
def test_email_activity_refuses_bad_queries_with_sendgrids_400(
    sendgrid_client: SendGridAPIClient, query: str, says: str
) -> None:
    with pytest.raises(BadRequestsError) as exc:
        _activity(sendgrid_client, query)
    assert says in exc.value.body.decode()


def test_email_activity_needs_the_add_on_and_the_scope(
    sb: Sandbox, sendgrid_client: SendGridAPIClient
) -> None:
    sb.set_account("sendgrid", email_activity=False)
    with pytest.raises(BadRequestsError) as no_add_on:
        _activity(sendgrid_client, 'to_email="ada@example.org"')
    assert b"authorization required" in no_add_on.value.body

    sb.set_account("sendgrid", email_activity=True, scopes=["mail.send"])
    with pytest.raises(ForbiddenError) as no_scope:
        _activity(sendgrid_client, 'to_email="ada@example.org"')
    assert b"access forbidden" in no_scope.value.body


# -- a stall the provider took first ------------------------------------------------------------------


def test_a_stall_the_provider_accepted_stores_the_message_and_answers_too_late(sb: Sandbox) -> None:
    sb.set_faults("twilio", FaultConfig(timeout_rate=1.0, stall_seconds=1.5, stall_accepted=1.0, seed=1))
    client = twilio_client(sb.url, timeout=0.3)
    started = time.monotonic()
    try:
        with pytest.raises(requests.exceptions.Timeout):
            client.messages.create(to="+14155552671", from_=SENDER, body="hello")
    finally:
        client.http_client.session.close()
    assert time.monotonic() - started < 1.2
    [stored] = sb.messages("twilio")
    assert stored["to"] == "+14155552671"
    [entry] = sb.requests("twilio")
    assert entry["fault"] == "timeout" and entry["status"] == 201


def test_stall_accepted_keeps_earlier_seeded_sequences() -> None:
    from clarion.sandbox.faults import Faults

    plain = Faults(["x"], {"x": FaultConfig(failure_rate=0.2, timeout_rate=0.3, seed=4)})
    mixed = Faults(["x"], {"x": FaultConfig(failure_rate=0.2, timeout_rate=0.3, stall_accepted=0.0, seed=4)})
    assert [plain.decide("x").kind for _ in range(50)] == [mixed.decide("x").kind for _ in range(50)]
    with pytest.raises(ValueError, match="stall_accepted"):
        FaultConfig(stall_accepted=1.5)
