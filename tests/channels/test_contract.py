"""One contract for every channel adapter, against the sandbox over real HTTP with the real SDK.

Each adapter must: send and keep the provider's id; map a 4xx to `rejected` with the provider's code and
message; a 429 to `retry` with the wait the provider asked for; a 5xx to `retry`; a stalled answer to
`uncertain` (the request may have arrived); and put exactly the expected request on the wire. Its lookup of
uncertain sends (`reconcile`) must find a message the provider took before stalling, with the provider's
id, and answer `unknown` (never raise, never guess) when the provider fails, stalls or cannot be reached.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest

from clarion import channels
from clarion.channels.base import Channel, ChannelKind, Message, Outbound, SendOutcome
from clarion.channels.reconcile import Lookup, Verdict
from clarion.channels.sendgrid.adapter import SendGridConfig
from clarion.channels.twilio.adapter import TwilioConfig
from clarion.channels.x.adapter import XConfig
from clarion.sandbox import FaultConfig, Sandbox
from tests.conftest import point_adapters_at


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(port=0) as box:
        yield box


@pytest.fixture
def wire(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    return point_adapters_at(sandbox, monkeypatch, timeout=0.5)  # type: ignore[no-any-return]


@dataclass
class Case:
    provider: str
    config: Any
    good: Message
    bad: Message  # one the provider refuses with a 4xx
    bad_code: str
    path: str
    auth_scheme: str


LINK = "https://go.example.org/c/AVl1zxu6AQAA3UGVUi1Nrtu-Nw"


def _message(kind: ChannelKind, provider: str, **fields: Any) -> Message:
    base: dict[str, Any] = {
        "channel": "ch",
        "provider": provider,
        "kind": kind,
        "variant": "urgent",
        "contact_id": "c-1" if kind is not ChannelKind.SOCIAL else None,
        "to": None,
        "link": LINK,
        "text": f"Chip in now {LINK}",
        "run": "run-1",
    }
    base.update(fields)
    return Message(**base)


CASES = {
    "sendgrid": Case(
        "sendgrid",
        SendGridConfig.model_validate(
            {
                "provider": "sendgrid",
                "from": "Team <team@example.org>",
                "subject": "s",
                "body": "b",
                "categories": ["t"],
            }
        ),
        _message(
            ChannelKind.EMAIL,
            "sendgrid",
            to="ada@example.org",
            subject="Chip in",
            html=f"<a href='{LINK}'>x</a>",
        ),
        _message(ChannelKind.EMAIL, "sendgrid", to="ada@localhost", subject="Chip in", html="<p>x</p>"),
        "400",
        "/v3/mail/send",
        "Bearer",
    ),
    "twilio": Case(
        "twilio",
        TwilioConfig.model_validate({"provider": "twilio", "from": "+15005550006", "body": "b"}),
        _message(ChannelKind.SMS, "twilio", to="+14155552671"),
        _message(ChannelKind.SMS, "twilio", to="+1555"),
        "21211",
        "/2010-04-01/Accounts/AC00000000000000000000000000000000/Messages.json",
        "Basic",
    ),
    "x": Case(
        "x",
        XConfig.model_validate({"provider": "x", "body": "b"}),
        _message(ChannelKind.SOCIAL, "x"),
        _message(ChannelKind.SOCIAL, "x", text="日" * 141),
        "403",
        "/2/tweets",
        "Bearer",
    ),
}


def test_every_registered_adapter_has_a_contract_case() -> None:
    assert set(channels.providers()) == set(CASES)


def _adapter(case: Case) -> Channel:
    cls = channels.get(case.provider)
    return cls("ch", case.config, cls.settings_model.load("ch"))


def _last_request(wire: Sandbox, case: Case) -> dict[str, Any]:
    requests = [r for r in wire.requests(case.provider) if r["path"] == case.path]
    assert requests, f"no request reached {case.path}"
    return requests[-1]


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]


def test_success_keeps_the_provider_id_and_the_request_is_exact(wire: Sandbox, case: Case) -> None:
    [result] = _adapter(case).send([Outbound("r1", case.good)])
    assert result.outcome is SendOutcome.SENT, result
    [stored] = wire.messages(case.provider)
    assert result.provider_id and result.provider_id == stored["provider_id"]
    request = _last_request(wire, case)
    assert request["method"] == "POST"
    assert request["headers"]["authorization"] == f"{case.auth_scheme} [REDACTED]"
    if case.provider == "sendgrid":
        body = json.loads(request["body"])
        [p] = body["personalizations"]
        assert p["to"] == [{"email": "ada@example.org"}]
        assert p["custom_args"] == {
            "clarion_channel": "ch",
            "clarion_variant": "urgent",
            "clarion_contact": "c-1",
            "clarion_run": "run-1",
        }
        assert body["from"] == {"email": "team@example.org", "name": "Team"}
        assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
        assert body["categories"] == ["t"]
        assert stored["text"] == case.good.text and stored["html"] == case.good.html  # substitutions applied
    elif case.provider == "twilio":
        form = parse_qs(request["body"])
        assert form == {"To": ["+14155552671"], "From": ["+15005550006"], "Body": [case.good.text]}
    else:
        assert json.loads(request["body"]) == {"text": case.good.text}


def test_a_4xx_is_rejected_with_the_providers_code_and_message(wire: Sandbox, case: Case) -> None:
    [result] = _adapter(case).send([Outbound("r1", case.bad)])
    assert result.outcome is SendOutcome.REJECTED
    assert result.code == case.bad_code
    assert result.error and len(result.error) > 10
    assert wire.messages(case.provider) == []


def test_a_429_is_retryable_with_the_providers_wait(wire: Sandbox, case: Case) -> None:
    wire.set_faults(case.provider, FaultConfig(rate_limit_every=1, rate_limit_burst=5, retry_after=7, seed=1))
    adapter = _adapter(case)
    adapter.send([Outbound("r0", case.good)])  # the one that passes
    [result] = adapter.send([Outbound("r1", case.good)])
    assert result.outcome is SendOutcome.RETRY
    assert result.code == "429" or result.code == "20429"
    assert result.retry_after is not None and 5 <= result.retry_after <= 8


def test_a_5xx_is_retryable(wire: Sandbox, case: Case) -> None:
    wire.set_faults(case.provider, FaultConfig(failure_rate=1.0, seed=1))
    [result] = _adapter(case).send([Outbound("r1", case.good)])
    assert result.outcome is SendOutcome.RETRY
    assert wire.messages(case.provider) == []


def test_a_stalled_answer_is_uncertain(wire: Sandbox, case: Case) -> None:
    wire.set_faults(case.provider, FaultConfig(timeout_rate=1.0, stall_seconds=2, seed=1))
    [result] = _adapter(case).send([Outbound("r1", case.good)])
    assert result.outcome is SendOutcome.UNCERTAIN
    assert "may have" in (result.error or "")


def test_an_unreachable_provider_is_retryable(
    monkeypatch: pytest.MonkeyPatch, wire: Sandbox, case: Case
) -> None:
    for name in ("CLARION_SENDGRID_URL", "CLARION_TWILIO_URL", "CLARION_X_URL"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    [result] = _adapter(case).send([Outbound("r1", case.good)])
    assert result.outcome is SendOutcome.RETRY


def _lookup(case: Case) -> list[Lookup]:
    return [Lookup("r1", case.good, datetime.now(UTC) - timedelta(seconds=5))]


def test_reconcile_finds_what_the_provider_took_before_it_stalled(wire: Sandbox, case: Case) -> None:
    wire.set_faults(case.provider, FaultConfig(timeout_rate=1.0, stall_seconds=2, stall_accepted=1.0, seed=1))
    adapter = _adapter(case)
    [sent] = adapter.send([Outbound("r1", case.good)])
    assert sent.outcome is SendOutcome.UNCERTAIN
    wire.set_faults(case.provider, None)

    [found] = adapter.reconcile(_lookup(case))

    [stored] = wire.messages(case.provider)
    assert found.verdict is Verdict.SENT and found.provider_id == stored["provider_id"]
    assert found.recipient == "r1" and found.provider_id in found.detail
    assert adapter.reconcile([]) == []


@pytest.mark.parametrize("trouble", ["5xx", "stall", "unreachable"])
def test_reconcile_that_cannot_ask_answers_unknown_saying_why(
    monkeypatch: pytest.MonkeyPatch, wire: Sandbox, case: Case, trouble: str
) -> None:
    if trouble == "5xx":
        wire.set_faults(case.provider, FaultConfig(failure_rate=1.0, seed=1))
    elif trouble == "stall":
        wire.set_faults(case.provider, FaultConfig(timeout_rate=1.0, stall_seconds=2, seed=1))
    else:
        for name in ("CLARION_SENDGRID_URL", "CLARION_TWILIO_URL", "CLARION_X_URL"):
            monkeypatch.setenv(name, "http://127.0.0.1:9")

    [answer] = _adapter(case).reconcile(_lookup(case))

    assert answer.verdict is Verdict.UNKNOWN and answer.recipient == "r1"
    assert len(answer.detail) > 10 and "sandbox" not in answer.detail.lower()


def test_sendgrid_groups_recipients_whose_content_differs_only_by_link(wire: Sandbox) -> None:
    case = CASES["sendgrid"]
    batch = []
    for i in range(250):
        link = f"{LINK}{i}"
        message = _message(
            ChannelKind.EMAIL,
            "sendgrid",
            to=f"p{i}@example.org",
            subject="Chip in",
            link=link,
            text=f"Give: {link}",
            html=f"<a href='{link}'>Give</a>",
            contact_id=f"c-{i}",
        )
        batch.append(Outbound(f"c-{i}", message))
    results = _adapter(case).send(batch)
    assert all(r.outcome is SendOutcome.SENT for r in results)
    assert len([r for r in wire.requests("sendgrid") if r["path"] == case.path]) == 1
    stored = {m["to"]: m for m in wire.messages("sendgrid")}
    assert stored["p7@example.org"]["text"] == f"Give: {LINK}7"
    assert f"{LINK}7'" in stored["p7@example.org"]["html"]


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"X_API_KEY": "k"}, "X_API_SECRET, X_ACCESS_TOKEN_SECRET missing"),
        ({"X_API_KEY": "k", "X_API_SECRET": "s"}, "X_ACCESS_TOKEN_SECRET missing"),
        ({"X_ACCESS_TOKEN_SECRET": "t"}, "X_API_KEY, X_API_SECRET missing"),
    ],
    ids=["key-only", "no-token-secret", "token-secret-only"],
)
def test_half_given_oauth1_keys_name_what_is_missing_and_show_no_value(
    monkeypatch: pytest.MonkeyPatch, given: dict[str, str], named: str
) -> None:
    from clarion.base.errors import ClarionError

    for name in ("X_API_KEY", "X_API_SECRET", "X_ACCESS_TOKEN_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("X_ACCESS_TOKEN", "canary-access-token-value")
    for name, value in given.items():
        monkeypatch.setenv(name, f"canary-{value}-value")

    with pytest.raises(ClarionError) as info:
        channels.get("x").settings_model.load("x")

    assert f"channel 'x': OAuth 1.0a needs all four keys; {named}" in str(info.value)
    assert "canary" not in str(info.value)


# -- every provider's emulator and webhooks ----------------------------------------------------------


def test_every_registered_provider_has_an_emulator_the_sandbox_mounts(sandbox: Sandbox) -> None:
    assert set(sandbox.state.emulators) == set(channels.providers())
    environment = sandbox.environment()
    for adapter in channels.adapters():
        emulator = adapter.emulator()
        assert emulator is not None and emulator.name == adapter.provider
        # what the emulator hands the adapter is exactly what the adapter's settings read
        needed = {
            str(f.validation_alias)
            for f in adapter.settings_model.model_fields.values()
            if f.is_required() and isinstance(f.validation_alias, str)
        }
        assert needed <= set(environment), (
            f"{adapter.provider}: the sandbox gives no {needed - set(environment)}"
        )


def _webhooks() -> list[tuple[str, Any]]:
    return [(a.provider, w) for a in channels.adapters() for w in a.webhooks({})]


@pytest.mark.parametrize(("provider", "webhook"), _webhooks(), ids=[w.path for _, w in _webhooks()])
def test_every_webhook_refuses_what_it_cannot_verify_and_records_nothing(
    sandbox: Sandbox, campaign_dir: Any, provider: str, webhook: Any
) -> None:
    from clarion.base.settings import TrackingSettings
    from clarion.ledger import Ledger
    from clarion.tracking import build_app
    from tests.tracking.conftest import AppClient

    ledger = Ledger.open()
    settings = TrackingSettings(clarion_rate_limit="off", clarion_reject_limit="off")
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    unconfigured = AppClient(build_app(ledger, settings=settings, environ={}))
    configured = AppClient(build_app(ledger, settings=settings, environ=sandbox.webhook_environment()))
    try:
        assert unconfigured.post(webhook.path, content=b"a=1", headers=headers).status_code == 403
        unsigned = configured.post(webhook.path, content=b"a=1", headers=headers)
        assert unsigned.status_code in (400, 401, 403, 415), unsigned.text
        too_big = configured.post(webhook.path, content=b"a" * (webhook.max_body + 1), headers=headers)
        assert too_big.status_code == 413
    finally:
        unconfigured.close()
        configured.close()
    assert ledger.suppression_counts() == {}
