"""SendGrid's /v3/mail/send through the real sendgrid SDK: SendGrid's answers, errors and what is stored."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from python_http_client.exceptions import BadRequestsError, UnauthorizedError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Category,
    Content,
    CustomArg,
    From,
    Mail,
    Personalization,
    Substitution,
    To,
)

from clarion.sandbox import Sandbox

UNAUTHORIZED_MESSAGE = "The provided authorization grant is invalid, expired, or revoked"


def campaign_mail(recipients: list[tuple[str, str]]) -> Mail:
    """One personalization per (address, variant): its own subject, link substitution and custom_args."""
    mail = Mail(from_email=From("team@example.org", "Team"))
    for address, variant in recipients:
        p = Personalization()
        p.add_to(To(address))
        p.subject = f"Variant {variant}: chip in"
        p.add_substitution(Substitution("-link-", f"https://l.example/{variant}/{address}"))
        p.add_custom_arg(CustomArg("clarion_variant", variant))
        mail.add_personalization(p)
    mail.add_custom_arg(CustomArg("clarion_run", "run-1"))
    mail.add_content(Content("text/plain", "Give here: -link-"))
    mail.add_content(Content("text/html", "<a href='-link-'>Give</a>"))
    mail.add_category(Category("appeal"))
    return mail


def payload(personalizations: int, per: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "personalizations": [
            {"to": [{"email": f"p{i}-{j}@example.org"} for j in range(per)], "subject": "Hi"}
            for i in range(personalizations)
        ],
        "from": {"email": "team@example.org"},
        "content": [{"type": "text/plain", "value": "hello"}],
        **extra,
    }


def errors_of(exc: pytest.ExceptionInfo[BadRequestsError]) -> list[dict[str, Any]]:
    body = json.loads(exc.value.body)
    return list(body["errors"])


def test_accepted_mail_is_202_with_a_message_id_and_one_record_per_recipient(
    sb: Sandbox, sendgrid_client: SendGridAPIClient
) -> None:
    recipients = [("ada@example.org", "a"), ("ben@example.org", "b"), ("chloe@example.com", "a")]
    response = sendgrid_client.send(campaign_mail(recipients))

    assert response.status_code == 202
    assert response.body == b""
    message_id = response.headers["X-Message-Id"]
    assert len(message_id) == 22
    stored = {m["to"]: m for m in sb.messages("sendgrid")}
    assert set(stored) == {a for a, _ in recipients}
    for address, variant in recipients:
        m = stored[address]
        assert m["provider"] == "sendgrid"
        assert m["subject"] == f"Variant {variant}: chip in"
        assert m["text"] == f"Give here: https://l.example/{variant}/{address}"
        assert m["html"] == f"<a href='https://l.example/{variant}/{address}'>Give</a>"
        assert m["custom_args"] == {"clarion_run": "run-1", "clarion_variant": variant}
        assert m["categories"] == ["appeal"]
        assert m["provider_id"] == m["x_message_id"] == message_id
        assert m["from"] == "team@example.org"
        assert m["received_at"].endswith("+00:00") and "." in m["received_at"]
    assert sb.messages("twilio") == []


def test_personalization_values_override_the_top_level_ones(
    sb: Sandbox, sendgrid_client: SendGridAPIClient
) -> None:
    soon = int(time.time()) + 3600  # SendGrid schedules at most 72 hours ahead
    body = payload(
        2,
        subject="Top subject",
        custom_args={"run": "r1", "variant": "top"},
        headers={"X-Campaign": "c1"},
        send_at=soon,
    )
    body["personalizations"][0] = {
        "to": [{"email": "ada@example.org", "name": "Ada"}],
        "cc": [{"email": "cc@example.org"}],
        "custom_args": {"variant": "a"},
        "send_at": soon + 100,
    }
    del body["personalizations"][1]["subject"]
    sendgrid_client.send(body)

    by_to = {m["to"]: m for m in sb.messages()}
    assert by_to["ada@example.org"]["subject"] == "Top subject"
    assert by_to["ada@example.org"]["name"] == "Ada"
    assert by_to["ada@example.org"]["custom_args"] == {"run": "r1", "variant": "a"}
    assert by_to["ada@example.org"]["send_at"] == soon + 100
    assert by_to["cc@example.org"]["recipient_type"] == "cc"
    assert by_to["p1-0@example.org"]["custom_args"] == {"run": "r1", "variant": "top"}
    assert by_to["p1-0@example.org"]["send_at"] == soon
    assert by_to["p1-0@example.org"]["headers"] == {"X-Campaign": "c1"}


def test_the_request_log_holds_the_exact_request_with_the_key_redacted(
    sb: Sandbox, sendgrid_client: SendGridAPIClient
) -> None:
    mail = campaign_mail([("ada@example.org", "a")])
    sendgrid_client.send(mail)

    [entry] = sb.requests("sendgrid")
    assert (entry["method"], entry["path"], entry["status"], entry["fault"]) == (
        "POST",
        "/v3/mail/send",
        202,
        None,
    )
    assert entry["headers"]["authorization"] == "Bearer [REDACTED]"
    assert "SG.test" not in json.dumps(entry)
    assert json.loads(entry["body"]) == mail.get()


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic U0cuYTpi"}, {"Authorization": "Bearer None"}],
)
def test_requests_without_a_bearer_key_are_401(http: httpx.Client, headers: dict[str, str]) -> None:
    response = http.post("/v3/mail/send", json=payload(1), headers=headers)
    assert response.status_code == 401
    assert response.json()["errors"][0]["message"] == UNAUTHORIZED_MESSAGE


def test_an_unset_key_is_401_with_sendgrids_body(sb: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENDGRID_API_KEY", raising=False)
    client = SendGridAPIClient(api_key="", host=sb.url)  # sends "Authorization: Bearer None"
    with pytest.raises(UnauthorizedError) as exc:
        client.send(payload(1))
    assert exc.value.status_code == 401
    assert json.loads(exc.value.body) == {
        "errors": [
            {
                "message": "The provided authorization grant is invalid, expired, or revoked",
                "field": None,
                "help": None,
            }
        ]
    }
    assert sb.messages() == []
    assert sb.requests("sendgrid")[0]["status"] == 401


def test_every_problem_is_reported_at_once_with_its_field(
    sendgrid_client: SendGridAPIClient, sb: Sandbox
) -> None:
    body = {
        "personalizations": [
            {"to": []},
            {"to": [{"email": "not-an-address"}]},
            {"to": [{"email": "ok@example.org"}]},
        ],
        "content": [{"type": "text/html", "value": "<p>x</p>"}, {"type": "text/plain", "value": "x"}],
    }
    with pytest.raises(BadRequestsError) as exc:
        sendgrid_client.send(body)

    assert exc.value.status_code == 400
    fields = {e["field"]: e for e in errors_of(exc)}
    assert set(fields) == {
        "personalizations.0.to",
        "personalizations.1.to.0.email",
        "from.email",
        "subject",
        "content.1.type",
    }
    assert fields["personalizations.0.to"]["help"].startswith("http://sendgrid.com/docs/")
    assert fields["personalizations.1.to.0.email"]["message"] == "Does not contain a valid address."
    assert sb.messages() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(payload(0), "personalizations", id="no-personalizations"),
        pytest.param(payload(1, content=[]), "content", id="empty-content"),
        pytest.param(
            payload(1, content=[{"type": "text/plain", "value": ""}]), "content.0.value", id="empty-value"
        ),
        pytest.param(payload(1, **{"from": {"email": "nobody"}}), "from.email", id="bad-from"),
        pytest.param(payload(1, custom_args={"n": 3}), "custom_args.n", id="custom-arg-not-a-string"),
    ],
)
def test_invalid_requests_name_the_field(
    sendgrid_client: SendGridAPIClient, body: dict[str, Any], field: str
) -> None:
    with pytest.raises(BadRequestsError) as exc:
        sendgrid_client.send(body)
    assert [e["field"] for e in errors_of(exc)] == [field]


def test_a_body_that_is_not_json_is_400(http: httpx.Client) -> None:
    response = http.post("/v3/mail/send", content=b"{not json", headers={"Authorization": "Bearer SG.test"})
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Bad Request", "field": None, "help": None}]}


def test_1000_personalizations_pass_and_1001_are_refused(
    sb: Sandbox, sendgrid_client: SendGridAPIClient
) -> None:
    assert sendgrid_client.send(payload(1000)).status_code == 202
    assert len(sb.messages("sendgrid")) == 1000

    with pytest.raises(BadRequestsError) as exc:
        sendgrid_client.send(payload(1001))
    [error] = errors_of(exc)
    assert error["field"] == "personalizations"
    assert "1000" in error["message"]
    assert len(sb.messages("sendgrid")) == 1000


def test_more_than_1000_recipients_in_all_are_refused(
    sb: Sandbox, sendgrid_client: SendGridAPIClient
) -> None:
    body = payload(10, per=100)
    body["personalizations"][0]["bcc"] = [{"email": "audit@example.org"}]
    with pytest.raises(BadRequestsError) as exc:
        sendgrid_client.send(body)
    [error] = errors_of(exc)
    assert error["field"] == "personalizations"
    assert "1001" in error["message"]
    assert sb.messages() == []


def test_an_address_twice_in_one_personalization_is_refused(sendgrid_client: SendGridAPIClient) -> None:
    body = payload(1)
    body["personalizations"][0]["bcc"] = [{"email": "P0-0@example.org"}]
    with pytest.raises(BadRequestsError) as exc:
        sendgrid_client.send(body)
    assert errors_of(exc)[0]["field"] == "personalizations.0.bcc.0.email"


def test_scheduling_past_72_hours_or_with_an_unknown_batch_id_is_refused_and_batches_cancel(
    sb: Sandbox, sendgrid_client: SendGridAPIClient
) -> None:
    with pytest.raises(BadRequestsError) as too_far:
        sendgrid_client.send(payload(1, send_at=int(time.time()) + 73 * 3600))
    assert "72 hours" in too_far.value.body.decode()
    with pytest.raises(BadRequestsError):
        sendgrid_client.send({**payload(1, send_at=int(time.time()) + 60), "batch_id": "made-up"})
    batch_id = json.loads(sendgrid_client.client.mail.batch.post().body)["batch_id"]
    sendgrid_client.send({**payload(1, send_at=int(time.time()) + 60), "batch_id": batch_id})
    assert sb.messages("sendgrid")[0]["batch_id"] == batch_id
    sendgrid_client.client.user.scheduled_sends.post(request_body={"batch_id": batch_id, "status": "cancel"})
    listed = json.loads(sendgrid_client.client.user.scheduled_sends.get().body)
    assert listed == [{"batch_id": batch_id, "status": "cancel"}]
