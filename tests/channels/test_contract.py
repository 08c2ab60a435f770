"""One contract for every channel adapter, against the sandbox over real HTTP with the real SDK.

Each adapter must: send and keep the provider's id; map a 4xx to `rejected` with the provider's code and
message; a 429 to `retry` with the wait the provider asked for; a 5xx to `retry`; a stalled answer to
`uncertain` (the request may have arrived); and put exactly the expected request on the wire. Its lookup of
uncertain sends (`reconcile`) must find a message the provider took before stalling, with the provider's
id, and answer `unknown` (never raise, never guess) when the provider fails, stalls or cannot be reached.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest

from clarion import channels
from clarion.channels.base import Channel, ChannelKind, Message, Outbound, SendOutcome, SendResult
from clarion.channels.bluesky.adapter import BlueskyConfig
from clarion.channels.linkedin.adapter import LinkedInConfig
from clarion.channels.mastodon.adapter import MastodonConfig
from clarion.channels.reconcile import Lookup, Verdict
from clarion.channels.sendgrid.adapter import SendGridConfig
from clarion.channels.threads.adapter import ThreadsConfig
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
    # 1.5 s: under the stalls' 2 s, above what a loaded machine takes to answer (0.5 s timed out in CI)
    return point_adapters_at(sandbox, monkeypatch, timeout=1.5)  # type: ignore[no-any-return]


@dataclass
class Case:
    provider: str
    config: Any
    good: Message
    bad: Message  # one the provider refuses with a 4xx
    bad_code: str
    path: str
    auth_scheme: str
    wait: tuple[float, float] | None = (5, 8)  # the 429's wait as the provider's headers say (None: none)


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
    "bluesky": Case(
        "bluesky",
        BlueskyConfig.model_validate({"provider": "bluesky", "body": "b"}),
        _message(ChannelKind.SOCIAL, "bluesky"),
        _message(ChannelKind.SOCIAL, "bluesky", text="🇺🇸" * 301),  # 301 graphemes, 2,408 bytes
        "400",
        "/xrpc/com.atproto.repo.createRecord",
        "Bearer",
    ),
    "mastodon": Case(
        "mastodon",
        MastodonConfig.model_validate({"provider": "mastodon", "body": "b", "max_characters": 5000}),
        _message(ChannelKind.SOCIAL, "mastodon"),
        _message(ChannelKind.SOCIAL, "mastodon", text="a" * 501),
        "422",
        "/api/v1/statuses",
        "Bearer",
        # Mastodon.py corrects the reset by the server's Date header (whole seconds): up to 1 s more, plus
        # the answer's own time on a loaded machine
        (5, 10),
    ),
    "linkedin": Case(
        "linkedin",
        LinkedInConfig.model_validate({"provider": "linkedin", "body": "b"}),
        _message(ChannelKind.SOCIAL, "linkedin"),
        _message(ChannelKind.SOCIAL, "linkedin", text="😀" * 1501),  # 3,002 UTF-16 units
        "422",
        "/rest/posts",
        "Bearer",
        None,  # LinkedIn documents daily throttles and no rate-limit headers
    ),
    "threads": Case(
        "threads",
        ThreadsConfig.model_validate({"provider": "threads", "body": "b"}),
        _message(ChannelKind.SOCIAL, "threads"),
        _message(ChannelKind.SOCIAL, "threads", text="😀" * 126),  # 504: an emoji counts its 4 bytes
        "100",
        "/v1.0/me/threads_publish",
        "Bearer",
        (60, 60),  # Meta says minutes: estimated_time_to_regain_access
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
    elif case.provider == "x":
        assert json.loads(request["body"]) == {"text": case.good.text}
    elif case.provider == "bluesky":
        body = json.loads(request["body"])
        record = body["record"]
        assert body["collection"] == "app.bsky.feed.post" and record["text"] == case.good.text
        [facet] = record["facets"]  # the link, at its UTF-8 byte offsets
        start = len(case.good.text.encode()) - len(LINK.encode())
        assert facet["index"] == {
            "byteStart": start,
            "byteEnd": start + len(LINK),
            "$type": facet["index"]["$type"],
        }
        assert facet["features"][0]["uri"] == LINK
        assert record["embed"]["external"]["uri"] == LINK
    elif case.provider == "mastodon":
        form = parse_qs(request["body"])
        assert form["status"] == [case.good.text] and form["visibility"] == ["public"]
        assert len(request["headers"]["idempotency-key"]) == 40
    elif case.provider == "linkedin":
        body = json.loads(request["body"])
        assert body["author"] == "urn:li:organization:2414183"
        assert body["commentary"] == case.good.text.replace("_", "\\_")  # little text escaped
        assert body["content"]["article"]["source"] == LINK
        assert request["headers"]["linkedin-version"].isdigit()
        assert request["headers"]["x-restli-protocol-version"] == "2.0.0"
    else:
        [container] = [r for r in wire.requests("threads") if r["path"] == "/v1.0/me/threads"]
        assert parse_qs(container["body"])["text"] == [case.good.text]
        assert "access_token" not in container["query"] + container["body"]  # the token stays in a header


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
    if case.wait is None:
        assert result.retry_after is None
    else:
        assert result.retry_after is not None and case.wait[0] <= result.retry_after <= case.wait[1]


def test_a_5xx_is_retryable(wire: Sandbox, case: Case) -> None:
    wire.set_faults(case.provider, FaultConfig(failure_rate=1.0, seed=1))
    [result] = _adapter(case).send([Outbound("r1", case.good)])
    assert result.outcome is SendOutcome.RETRY
    assert wire.messages(case.provider) == []


def _stall_the_write(case: Case, stall_accepted: float = 0.0) -> FaultConfig:
    """Every request stalls; for Threads, whose post is two calls (a container, then its publication),
    the first passes and the second stalls (seed 10 draws 0.57, then 0.43): a stalled container is only
    retried, since nothing is visible before publication."""
    if case.provider == "threads":
        return FaultConfig(timeout_rate=0.5, stall_seconds=2, stall_accepted=stall_accepted, seed=10)
    return FaultConfig(timeout_rate=1.0, stall_seconds=2, stall_accepted=stall_accepted, seed=1)


def test_a_stalled_answer_is_uncertain(wire: Sandbox, case: Case) -> None:
    adapter = _adapter(case)
    adapter.warm()  # Bluesky signs in here: a stalled sign-in is safely retried, not uncertain
    wire.set_faults(case.provider, _stall_the_write(case))
    [result] = adapter.send([Outbound("r1", case.good)])
    assert result.outcome is SendOutcome.UNCERTAIN
    assert "may have" in (result.error or "")


def test_an_unreachable_provider_is_retryable(
    monkeypatch: pytest.MonkeyPatch, wire: Sandbox, case: Case
) -> None:
    _unreachable(monkeypatch)
    [result] = _adapter(case).send([Outbound("r1", case.good)])
    assert result.outcome is SendOutcome.RETRY


def _unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every adapter pointed at a port where nothing listens."""
    for adapter in channels.adapters():
        emulator = adapter.emulator()
        if emulator is not None and emulator.url_variable:
            monkeypatch.setenv(emulator.url_variable, "http://127.0.0.1:9")


def _lookup(case: Case) -> list[Lookup]:
    return [Lookup("r1", case.good, datetime.now(UTC) - timedelta(seconds=5))]


def test_reconcile_finds_what_the_provider_took_before_it_stalled(wire: Sandbox, case: Case) -> None:
    adapter = _adapter(case)
    adapter.warm()
    wire.set_faults(case.provider, _stall_the_write(case, stall_accepted=1.0))
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
        _unreachable(monkeypatch)

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
    assert all(r.outcome is SendOutcome.SENT for r in results), {(r.outcome, r.error) for r in results}
    assert len([r for r in wire.requests("sendgrid") if r["path"] == case.path]) == 1
    stored = {m["to"]: m for m in wire.messages("sendgrid")}
    assert stored["p7@example.org"]["text"] == f"Give: {LINK}7"
    assert f"{LINK}7'" in stored["p7@example.org"]["html"]


def test_sendgrid_sends_utf8_json_that_says_so_and_names_arrive_exactly(wire: Sandbox) -> None:
    """The body is UTF-8 (not ASCII escapes) and its Content-Type says so; a name outside ASCII, and one
    with characters JSON escapes, reach the recipient as written."""
    case = CASES["sendgrid"]
    names = {"p0@example.org": "Zoë Ñúñez 李", "p1@example.org": 'Ana "Nana" \\ O\'Neil'}
    batch = [
        Outbound(
            f"c-{i}",
            _message(
                ChannelKind.EMAIL,
                "sendgrid",
                to=to,
                subject=f"Thank you, {name}",
                text=f"Hi {name}: {LINK}",
                html=f"<p>Hi {name}</p>",
                contact_id=f"c-{i}",
            ),
        )
        for i, (to, name) in enumerate(names.items())
    ]
    assert all(r.outcome is SendOutcome.SENT for r in _adapter(case).send(batch))
    requests = [r for r in wire.requests("sendgrid") if r["path"] == case.path]
    assert {r["headers"]["content-type"] for r in requests} == {"application/json; charset=utf-8"}
    assert any("Zoë Ñúñez 李" in r["body"] for r in requests)  # as UTF-8, not \\u escapes
    stored = {m["to"]: m for m in wire.messages("sendgrid")}
    for to, name in names.items():
        assert stored[to]["subject"] == f"Thank you, {name}"
        assert stored[to]["text"] == f"Hi {name}: {LINK}"


def test_sendgrid_requests_never_put_recipients_in_the_sdks_debug_log(
    wire: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """The SDK's HTTP client formats every request body into a DEBUG line whatever the level: with that
    logger turned up to DEBUG, the line says the body's size, never an address."""
    case = CASES["sendgrid"]
    message = _message(
        ChannelKind.EMAIL, "sendgrid", to="ada.lovelace@example.org", subject="Hi", html="<p>Hi</p>"
    )
    with caplog.at_level(logging.DEBUG, logger="python_http_client"):
        [result] = _adapter(case).send([Outbound("c-1", message)])
    assert result.outcome is SendOutcome.SENT
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("python_http_client")]
    [payload] = [line for line in lines if line.startswith("PAYLOAD")]
    size = len(_last_request(wire, case)["body"].encode())
    assert payload == f"PAYLOAD: <{size:,} bytes>"
    assert not any("ada.lovelace" in line for line in lines)


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


def test_a_text_goes_through_the_proxy_the_environment_names(
    wire: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The environment's proxy settings hold for texts (Twilio's client reads them once, not per text): a
    proxy named in HTTP_PROXY is used (here one that refuses connections: the text is not taken, and may
    be retried), and NO_PROXY lets the provider's host be reached directly. Each send is a new thread's, as
    a send thread reads the environment when it first texts."""

    def text() -> SendResult:
        with ThreadPoolExecutor(1) as thread:
            [result] = thread.submit(
                _adapter(CASES["twilio"]).send, [Outbound("r1", CASES["twilio"].good)]
            ).result()
        return result

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    refused = text()
    assert refused.outcome is SendOutcome.RETRY, refused
    assert not wire.messages("twilio")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    sent = text()
    assert sent.outcome is SendOutcome.SENT, sent
    assert len(wire.messages("twilio")) == 1
