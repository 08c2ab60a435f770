"""The Bluesky, Mastodon, LinkedIn and Threads emulators, through the real SDKs (atproto, Mastodon.py) and
httpx: their wire formats, auth failures, refusals of over-long text, rate-limit headers, pre-flight and
metrics as the adapters read them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest

from clarion import channels
from clarion.channels.base import Channel, ChannelKind, Message, Outbound, SendOutcome
from clarion.sandbox import Sandbox

LINK = "https://go.example.org/c/AVl1zxu6AQAA3UGVUi1Nrtu-Nw"
SOCIAL = ["bluesky", "mastodon", "linkedin", "threads"]


@pytest.fixture
def env(sb: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    for key, value in sb.environment().items():
        monkeypatch.setenv(key, value)
    for name in sb.cleared_variables():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLARION_HTTP_TIMEOUT", "5")
    yield sb


def _adapter(provider: str, **config: object) -> Channel:
    cls = channels.get(provider)
    model = cls.config_model.model_validate({"provider": provider, "body": "b", **config})
    return cls("ch", model, cls.settings_model.load("ch"))


def _post(provider: str, text: str = f"Chip in tonight {LINK}", run: str = "run-1") -> Message:
    return Message(
        channel="ch",
        provider=provider,
        kind=ChannelKind.SOCIAL,
        variant="v",
        contact_id=None,
        to=None,
        link=LINK,
        text=text,
        run=run,
    )


@pytest.mark.parametrize("provider", SOCIAL)
def test_a_revoked_account_fails_pre_flight_and_sends_nothing(env: Sandbox, provider: str) -> None:
    env.set_account(provider, revoked=True)
    adapter = _adapter(provider)

    [check] = adapter.verify(1)
    [result] = adapter.send([Outbound("post:v", _post(provider))])

    assert check.what == "credentials" and not check.ok
    assert result.outcome is SendOutcome.REJECTED and result.code in ("401", "190")
    secrets = [v for k, v in env.environment().items() if "TOKEN" in k or "PASSWORD" in k]
    assert not any(secret in check.detail + (result.error or "") for secret in secrets)
    assert env.messages(provider) == []


@pytest.mark.parametrize("provider", SOCIAL)
def test_pre_flight_names_who_posts_and_the_quota(env: Sandbox, provider: str) -> None:
    checks = {c.what: c for c in _adapter(provider).verify(3)}

    assert (checks["credentials"].ok and "@" in checks["credentials"].detail) or "page" in checks[
        "credentials"
    ].detail
    assert checks["quota"].ok and "3" in checks["quota"].detail


def test_mastodon_pre_flight_reads_the_instances_own_limit(env: Sandbox) -> None:
    env.set_account("mastodon", max_characters=40)
    adapter = _adapter("mastodon")
    short, long = _post("mastodon", "Chip in"), _post("mastodon", "x" * 41)
    long.variant = "long"

    [ok] = adapter.verify_content([short])
    [failed] = adapter.verify_content([short, long])

    assert ok.ok and "40" in ok.detail
    assert not failed.ok and "long is 41" in failed.detail and "max_characters: 40" in failed.detail


def test_mastodon_never_doubles_a_retried_status(env: Sandbox) -> None:
    adapter = _adapter("mastodon")
    item = Outbound("post:v", _post("mastodon"))

    first = adapter.send([item])[0]
    again = adapter.send([item])[0]  # the same run and post: the same Idempotency-Key
    other = adapter.send([Outbound("post:v", _post("mastodon", run="run-2"))])[0]

    assert first.provider_id == again.provider_id != other.provider_id
    assert len(env.messages("mastodon")) == 2
    keys = [r["headers"]["idempotency-key"] for r in env.requests("mastodon") if r["method"] == "POST"]
    assert keys[0] == keys[1] != keys[2]


def test_bluesky_refuses_a_301_grapheme_post_that_the_sdk_lets_through(env: Sandbox) -> None:
    adapter = _adapter("bluesky")

    [result] = adapter.send([Outbound("post:v", _post("bluesky", "é" * 301))])

    assert result.outcome is SendOutcome.REJECTED and result.code == "400"
    assert "InvalidRequest" in (result.error or "") and "300 graphemes" in (result.error or "")


def test_threads_refuses_a_sixth_link_as_meta_does(env: Sandbox) -> None:
    text = " ".join(f"https://example.org/{i}" for i in range(6))

    [result] = _adapter("threads").send([Outbound("post:v", _post("threads", text))])

    assert result.outcome is SendOutcome.REJECTED and result.code == "100"
    assert env.messages("threads") == []


@pytest.mark.parametrize(
    ("provider", "path", "names"),
    [
        (
            "bluesky",
            "/xrpc/com.atproto.repo.createRecord",
            ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "ratelimit-policy"],
        ),
        ("mastodon", "/api/v1/statuses", ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"]),
        ("threads", "/v1.0/me/threads", ["x-app-usage", "x-business-use-case-usage"]),
        ("linkedin", "/rest/posts", []),
    ],
)
def test_a_429_carries_the_platforms_own_headers(
    env: Sandbox, provider: str, path: str, names: list[str]
) -> None:
    env.set_faults(provider, {"rate_limit": {"every": 0 + 1, "burst": 1, "retry_after": 90}})
    with httpx.Client(base_url=env.url, timeout=5) as client:
        client.post(path, content=b"{}")
        answer = client.post(path, content=b"{}")

    assert answer.status_code == 429
    for name in names:
        assert name in answer.headers
    if provider == "bluesky":
        assert 85 <= int(answer.headers["ratelimit-reset"]) - time.time() <= 92
        assert answer.json() == {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}
    if provider == "mastodon":
        reset = datetime.fromisoformat(answer.headers["x-ratelimit-reset"].replace("Z", "+00:00"))
        assert 85 <= reset.timestamp() - time.time() <= 92
    if provider == "threads":
        usage = json.loads(answer.headers["x-business-use-case-usage"])
        [[entry]] = usage.values()
        assert entry["estimated_time_to_regain_access"] == 2  # minutes
        assert answer.json()["error"]["code"] == 4
    if provider == "linkedin":
        assert answer.json()["code"] == "TOO_MANY_REQUESTS"


@pytest.mark.parametrize("provider", SOCIAL)
def test_metrics_are_read_into_the_reports_names(env: Sandbox, provider: str) -> None:
    adapter = _adapter(provider)
    [sent] = adapter.send([Outbound("post:v", _post(provider))])
    own = {
        "bluesky": {"likeCount": 5, "repostCount": 2, "replyCount": 1, "quoteCount": 1, "bookmarkCount": 3},
        "mastodon": {"favourites_count": 5, "reblogs_count": 2, "replies_count": 1, "quotes_count": 1},
        "linkedin": {"impressionCount": 900, "likeCount": 5, "shareCount": 2, "commentCount": 1},
        "threads": {"views": 900, "likes": 5, "reposts": 2, "replies": 1, "quotes": 1},
    }[provider]
    with httpx.Client(base_url=env.url, timeout=5) as client:
        answer = client.put(f"/_sandbox/{provider}/metrics/{sent.provider_id}", json=own)
        assert answer.status_code == 200, answer.text

    metrics = adapter.public_metrics([str(sent.provider_id)])[str(sent.provider_id)]  # type: ignore[attr-defined]

    assert metrics["like_count"] == 5 and metrics["retweet_count"] == 2 and metrics["reply_count"] == 1
    if provider in ("linkedin", "threads"):
        assert metrics["impression_count"] == 900
    else:
        assert "impression_count" not in metrics  # neither network publishes impressions


def test_bluesky_links_are_facets_at_utf8_byte_offsets_with_a_link_card(env: Sandbox) -> None:
    text = f"日本語 {LINK} 🇺🇸"
    _adapter("bluesky", card={"title": "Chip in", "description": "Tonight"}).send(
        [Outbound("post:v", _post("bluesky", text))]
    )

    [stored] = env.messages("bluesky")
    [facet] = stored["facets"]
    start = len("日本語 ".encode())
    assert (facet["index"]["byteStart"], facet["index"]["byteEnd"]) == (start, start + len(LINK))
    assert text.encode()[start : start + len(LINK)].decode() == LINK
    assert stored["embed"]["external"] == {
        "uri": LINK,
        "title": "Chip in",
        "description": "Tonight",
        "$type": "app.bsky.embed.external#external",
    }
