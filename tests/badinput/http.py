"""Wrong requests for every endpoint of `clarion serve` (the tracking service and its console) and of
`clarion sandbox`, found by walking the Starlette apps' routes: methods, path parameters, query strings,
content types, bodies (empty, binary, malformed JSON and forms, deep nesting, oversized) and headers.

A wrong request gets a 4xx (a page's GET may answer 200 or redirect to sign-in), never a 5xx, never a
logged traceback, and records nothing in the ledger.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st
from starlette.routing import Mount, Route

METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND")
WRITES = ("POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class Endpoint:
    service: str
    path: str
    methods: frozenset[str]

    @property
    def id(self) -> str:
        return f"{self.service} {'|'.join(sorted(self.methods))} {self.path}"


def endpoints(app: Any, service: str, prefix: str = "") -> list[Endpoint]:
    """Every path of a Starlette app with the methods its routes take (routes sharing a path merged),
    mounted sub-apps included (static files count as one)."""
    merged: dict[str, frozenset[str]] = {}
    for endpoint in _routes(app, service, prefix):
        merged[endpoint.path] = merged.get(endpoint.path, frozenset()) | endpoint.methods
    return [Endpoint(service, path, methods) for path, methods in merged.items()]


def _routes(app: Any, service: str, prefix: str) -> list[Endpoint]:
    found = []
    for route in app.routes:
        if isinstance(route, Route):
            methods = frozenset(route.methods or {"GET"}) - {"HEAD"} | (
                {"HEAD"} if "GET" in (route.methods or {"GET"}) else set()
            )
            found.append(Endpoint(service, prefix + route.path, methods))
        elif isinstance(route, Mount):
            inner = getattr(route, "app", None)
            while getattr(inner, "routes", None) is None and getattr(inner, "app", None) is not None:
                inner = inner.app  # through middleware (the console's security headers)
            if getattr(inner, "routes", None) is not None:
                found += _routes(inner, service, prefix + route.path)
            else:
                found.append(
                    Endpoint(service, prefix + route.path + "/{path:path}", frozenset({"GET", "HEAD"}))
                )
    return found


# -- wrong requests -----------------------------------------------------------------------------------

SEGMENT = st.one_of(
    st.sampled_from(["", "..", "%2e%2e", "%00", "a%2Fb", "x" * 5000, "AAAA", "1", "-1", "latest", "%ff%fe"]),
    st.text(min_size=1, max_size=40).map(lambda s: quote(s, safe="")),
    st.binary(min_size=1, max_size=30).map(lambda b: quote(b, safe="")),
)
JSON_JUNK = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
BODY = st.one_of(
    st.just(b""),
    st.binary(max_size=300),
    JSON_JUNK.map(lambda v: json.dumps(v).encode()),
    st.sampled_from(
        [
            b"{",
            b"[" * 50_000,
            b'{"a": 1e999999}',
            b"NaN",
            b"\xff\xfe\x00{}",
            b'[{"email": "a@example.org", "event": "unsubscribe", "sg_event_id": "x"}]',
            b"From=%2B14155550100&Body=STOP&MessageSid=SM1",
            b"Body=" + b"%" * 1000,
            b"a=" + b"b" * (17 * 1024),  # over the 16 KiB limit of most webhooks
        ]
    ),
    st.integers(64 * 1024 + 1, 9 * 1024 * 1024).map(lambda n: b"x" * n),  # over every limit
)
CONTENT_TYPE = st.sampled_from(
    [
        None,
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",  # no boundary
        "multipart/form-data; boundary=zzz",
        "text/plain",
        "application/json; charset=latin-1",
        "application/x-www-form-urlencoded; charset=utf-16",
        "garbage/\x7f",
        "*/*",
    ]
)
HEADERS = st.dictionaries(
    st.sampled_from(
        [
            "X-Twilio-Signature",
            "X-Twilio-Email-Event-Webhook-Signature",
            "X-Twilio-Email-Event-Webhook-Timestamp",
            "X-Clarion-Signature",
            "X-Clarion-Timestamp",
            "x-twitter-webhooks-signature",
            "Cookie",
            "Origin",
            "Accept",
            "X-Forwarded-For",
            "Range",
            "If-None-Match",
            "Last-Event-ID",
        ]
    ),
    st.one_of(
        st.sampled_from(
            ["", "v1=", "sha256=AAAA", "-1", "99999999999999999999", "a" * 8000, "1.2.3", "bytes=5-1"]
        ),
        st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    ),
    max_size=4,
)
QUERY = st.one_of(
    st.just(""),
    st.sampled_from(
        ["?ct=", "?ct=%00", "?crc_token=", "?crc_token=" + "a" * 5000, "?limit=-1", "?limit=abc", "?a=%ff"]
    ),
    st.text(max_size=30).map(lambda s: "?" + quote(s, safe="=&")),
)


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    body: bytes
    headers: dict[str, str]

    def __repr__(self) -> str:
        shown = self.body[:120] + (b"..." if len(self.body) > 120 else b"")
        return f"{self.method} {self.url[:200]} headers={self.headers} body({len(self.body)})={shown!r}"


@st.composite
def requests(draw: st.DrawFn, endpoint: Endpoint) -> Request:
    method = draw(st.one_of(st.sampled_from(sorted(endpoint.methods)), st.sampled_from(METHODS)))
    path = re.sub(r"\{[^}]+\}", lambda m: draw(SEGMENT) or "x", endpoint.path)
    headers = dict(draw(HEADERS))
    content_type = draw(CONTENT_TYPE)
    if content_type is not None:
        headers["Content-Type"] = content_type
    body = draw(BODY) if method not in ("GET", "HEAD", "OPTIONS", "TRACE") or draw(st.booleans()) else b""
    return Request(method, path + draw(QUERY), body, headers)


@dataclass
class Outcome:
    status: int
    problems: list[str] = field(default_factory=list)
    body: str = ""


class Tracebacks(logging.Handler):
    """Collects log records that carry an exception (a traceback printed to the operator's log)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.CRITICAL:
            self.records.append(record)


def judge(endpoint: Endpoint, request: Request, status: int, logged: list[logging.LogRecord]) -> Outcome:
    outcome = Outcome(status)
    if status >= 500:
        outcome.problems.append(f"HTTP {status}")
    if request.method not in endpoint.methods and request.method != "HEAD" and not 400 <= status < 500:
        outcome.problems.append(f"HTTP {status} for a method the route does not take (a 4xx expected)")
    if (
        request.method in ("POST", "PUT", "PATCH")
        and request.body
        and status < 300
        and endpoint.service != "serve"
    ):
        pass  # the sandbox may take a well-formed request: it is a test tool with in-memory state
    for record in logged:
        outcome.problems.append(f"logged a traceback: {record.getMessage()[:300]}")
    return outcome
