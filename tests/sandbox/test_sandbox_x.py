"""X's API v2 posts over HTTP, as tweepy calls them: problem documents, rate-limit headers, metrics."""

from __future__ import annotations

import time

import httpx
import pytest

from clarion.channels.x.emulator import PUBLIC_METRICS
from clarion.sandbox import Sandbox

RATE_HEADERS = ("x-rate-limit-limit", "x-rate-limit-remaining", "x-rate-limit-reset")


def assert_rate_headers(response: httpx.Response) -> None:
    for name in RATE_HEADERS:
        assert response.headers[name].isdigit(), name
    assert int(response.headers["x-rate-limit-reset"]) > time.time() - 1


def post(x: httpx.Client, text: str) -> httpx.Response:
    return x.post("/2/tweets", json={"text": text})


def test_a_post_is_201_with_a_snowflake_id(sb: Sandbox, x: httpx.Client) -> None:
    response = post(x, "Debate night: chip in https://l.example/x")

    assert response.status_code == 201
    data = response.json()["data"]
    assert len(data["id"]) == 19 and data["id"].isdigit()
    assert data == {
        "id": data["id"],
        "text": "Debate night: chip in https://l.example/x",
        "edit_history_tweet_ids": [data["id"]],
    }
    assert_rate_headers(response)
    [stored] = sb.messages("x")
    assert stored["to"] is None
    assert stored["provider_id"] == data["id"]
    assert stored["text"] == "Debate night: chip in https://l.example/x"


def test_ids_increase(x: httpx.Client) -> None:
    ids = [int(post(x, f"post {i}").json()["data"]["id"]) for i in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5


def test_oauth1_headers_are_accepted_and_redacted(sb: Sandbox, http: httpx.Client) -> None:
    header = 'OAuth oauth_consumer_key="ck", oauth_token="tok", oauth_signature="sig"'
    response = http.post("/2/tweets", json={"text": "signed"}, headers={"Authorization": header})
    assert response.status_code == 201
    [entry] = sb.requests("x")
    assert entry["headers"]["authorization"] == "OAuth [REDACTED]"
    assert "sig" not in str(entry["headers"])


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic eDp5"}, {"Authorization": "Bearer"}])
def test_without_a_token_is_401(sb: Sandbox, http: httpx.Client, headers: dict[str, str]) -> None:
    response = http.post("/2/tweets", json={"text": "hi"}, headers=headers)
    assert response.status_code == 401
    assert response.json() == {
        "title": "Unauthorized",
        "type": "about:blank",
        "status": 401,
        "detail": "Unauthorized",
    }
    assert_rate_headers(response)
    assert sb.messages() == []


def test_over_280_weighted_characters_is_403(sb: Sandbox, x: httpx.Client) -> None:
    assert post(x, "a" * 280).status_code == 201
    response = post(x, "界" * 141)  # CJK weighs 2: 282
    assert response.status_code == 403
    assert response.json() == {
        "detail": "You are not permitted to perform this action.",
        "type": "about:blank",
        "title": "Forbidden",
        "status": 403,
    }
    assert_rate_headers(response)
    assert len(sb.messages("x")) == 1


def test_a_duplicate_post_is_403(sb: Sandbox, x: httpx.Client) -> None:
    assert post(x, "Same words").status_code == 201
    response = post(x, "Same words")
    assert response.status_code == 403
    assert response.json()["detail"] == "You are not allowed to create a Tweet with duplicate content."
    assert len(sb.messages("x")) == 1
    sb.reset()
    assert post(x, "Same words").status_code == 201  # a reset forgets what was posted


@pytest.mark.parametrize("body", [{"text": ""}, {}, {"text": 5}])
def test_missing_or_empty_text_is_an_invalid_request(
    sb: Sandbox, x: httpx.Client, body: dict[str, object]
) -> None:
    response = x.post("/2/tweets", json=body)
    assert response.status_code == 400
    problem = response.json()
    assert problem["title"] == "Invalid Request"
    assert problem["type"] == "https://api.twitter.com/2/problems/invalid-request"
    assert problem["detail"] == "One or more parameters to your request was invalid."
    assert problem["errors"][0]["parameters"] == {"text": [""]}
    assert_rate_headers(response)
    assert sb.messages() == []


def test_lookup_reports_public_metrics_set_by_tests(sb: Sandbox, x: httpx.Client, http: httpx.Client) -> None:
    first = post(x, "first").json()["data"]["id"]
    second = post(x, "second").json()["data"]["id"]
    sb.set_metrics(first, like_count=12, impression_count=340)
    assert http.put(f"/_sandbox/metrics/{second}", json={"retweet_count": 2}).status_code == 200

    response = x.get("/2/tweets", params={"ids": f"{first},{second}", "tweet.fields": "public_metrics"})
    assert response.status_code == 200
    assert_rate_headers(response)
    data = {t["id"]: t for t in response.json()["data"]}
    assert data[first]["text"] == "first"
    assert data[first]["public_metrics"] == {
        **dict.fromkeys(PUBLIC_METRICS, 0),
        "like_count": 12,
        "impression_count": 340,
    }
    assert data[second]["public_metrics"]["retweet_count"] == 2

    single = x.get(f"/2/tweets/{first}", params={"tweet.fields": "public_metrics"}).json()
    assert single["data"]["public_metrics"]["like_count"] == 12
    plain = x.get("/2/tweets", params={"ids": first}).json()
    assert "public_metrics" not in plain["data"][0]


def test_lookup_of_unknown_ids_reports_them_as_errors(x: httpx.Client) -> None:
    known = post(x, "known").json()["data"]["id"]
    body = x.get("/2/tweets", params={"ids": f"{known},1234567890123456789"}).json()
    assert [t["id"] for t in body["data"]] == [known]
    assert body["errors"][0]["resource_id"] == "1234567890123456789"
    assert body["errors"][0]["type"] == "https://api.twitter.com/2/problems/resource-not-found"


def test_bad_metrics_are_refused(sb: Sandbox, x: httpx.Client, http: httpx.Client) -> None:
    tweet = post(x, "metrics").json()["data"]["id"]
    with pytest.raises(ValueError, match="unknown public metric"):
        sb.set_metrics(tweet, likes=3)
    with pytest.raises(ValueError, match="non-negative"):
        sb.set_metrics(tweet, like_count=-1)
    with pytest.raises(KeyError):
        sb.set_metrics("1", like_count=1)
    assert http.put("/_sandbox/metrics/1", json={"like_count": 1}).status_code == 404
    assert http.put(f"/_sandbox/metrics/{tweet}", json={"likes": 1}).status_code == 400
