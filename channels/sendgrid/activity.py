"""SendGrid's Email Activity API in the sandbox: `GET /v3/messages?query=...&limit=...`.

The query language, as SendGrid documents it: `field="value"` (also `!=`), `field LIKE 'prefix%'`,
`last_event_time BETWEEN TIMESTAMP "..." AND TIMESTAMP "..."` (and `>`, `<`, `>=`, `<=` with TIMESTAMP),
`field IN ("a", "b")`, `unique_args['name']="value"`, joined with AND, OR, NOT and parentheses; keywords
in any case; strings in double or single quotes. A field SendGrid does not know is refused with its 400
("invalid syntax: 'x' is not a known field"). Each recipient of an accepted message is one row, newest
first; `msg_id` is the request's X-Message-Id followed by a per-recipient suffix, as SendGrid's is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

#: Fields SendGrid's query language knows; those the sandbox does not keep never match.
FIELDS = frozenset(
    {
        "msg_id",
        "from_email",
        "subject",
        "to_email",
        "status",
        "template_id",
        "asm_group_id",
        "marketing_campaign_id",
        "marketing_campaign_name",
        "api_key_id",
        "events",
        "categories",
        "unique_args",
        "outbound_ip",
        "outbound_ip_type",
        "originating_ip",
        "teammate",
        "last_event_time",
        "clicks",
        "opens",
    }
)
MAX_LIMIT = 1000
_TOKEN = re.compile(
    r"""\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<op>>=|<=|!=|=|>|<|\(|\)|,)"""
    r"""|(?P<field>unique_args\[(?:"[^"]*"|'[^']*')\])|(?P<word>[A-Za-z_][A-Za-z0-9_]*))"""
)
Row = Mapping[str, Any]
Test = Callable[[Row], bool]


class BadQuery(ValueError):
    """SendGrid's 400: the message is SendGrid's own wording."""


@dataclass
class _Tokens:
    items: list[tuple[str, str]]
    at: int = 0

    def peek(self) -> tuple[str, str]:
        return self.items[self.at] if self.at < len(self.items) else ("end", "")

    def take(self) -> tuple[str, str]:
        token = self.peek()
        self.at += 1
        return token

    def word(self, *words: str) -> bool:
        kind, value = self.peek()
        if kind == "word" and value.upper() in words:
            self.at += 1
            return True
        return False

    def expect(self, kind: str, value: str | None = None) -> str:
        got_kind, got = self.take()
        if got_kind != kind or (value is not None and got.upper() != value):
            raise BadQuery(f"invalid syntax: expected {value or kind} near {got or 'the end'!r}")
        return got


def _tokens(query: str) -> _Tokens:
    items, at = [], 0
    while at < len(query.rstrip()):
        match = _TOKEN.match(query, at)
        if match is None or match.end() == at:
            raise BadQuery(f"invalid syntax: unexpected {query[at : at + 20].strip()!r}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "str":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        items.append((kind, value))
        at = match.end()
    return _Tokens(items)


def parse(query: str) -> Test:
    """A predicate over activity rows; BadQuery for what SendGrid would refuse."""
    tokens = _tokens(query)
    test = _or(tokens)
    if tokens.peek()[0] != "end":
        raise BadQuery(f"invalid syntax: unexpected {tokens.peek()[1]!r}")
    return test


def _or(t: _Tokens) -> Test:
    tests = [_and(t)]
    while t.word("OR"):
        tests.append(_and(t))
    return tests[0] if len(tests) == 1 else lambda row: any(test(row) for test in tests)


def _and(t: _Tokens) -> Test:
    tests = [_unary(t)]
    while t.word("AND"):
        tests.append(_unary(t))
    return tests[0] if len(tests) == 1 else lambda row: all(test(row) for test in tests)


def _unary(t: _Tokens) -> Test:
    if t.word("NOT"):
        inner = _unary(t)
        return lambda row: not inner(row)
    if t.peek() == ("op", "("):
        t.take()
        inner = _or(t)
        t.expect("op", ")")
        return inner
    return _condition(t)


def _timestamp(t: _Tokens) -> datetime:
    t.expect("word", "TIMESTAMP")
    raw = t.expect("str")
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        raise BadQuery(f"invalid syntax: {raw!r} is not a timestamp") from None


def _condition(t: _Tokens) -> Test:
    kind, name = t.take()
    if kind not in ("word", "field"):
        raise BadQuery(f"invalid syntax: expected a field near {name or 'the end'!r}")
    key: str | None = None
    if kind == "field":
        name, key = "unique_args", name[len("unique_args[") + 1 : -2]
    elif name not in FIELDS:
        raise BadQuery(f"invalid syntax: '{name}' is not a known field")

    def value(row: Row) -> Any:
        found = row.get(name)
        return (found or {}).get(key) if key is not None else found

    if t.word("BETWEEN"):
        low = _timestamp(t)
        t.expect("word", "AND")
        high = _timestamp(t)
        return lambda row: isinstance(value(row), datetime) and low <= value(row) <= high
    if t.word("LIKE"):
        pattern = re.compile("^" + ".*".join(map(re.escape, t.expect("str").split("%"))) + "$", re.S)
        return lambda row: value(row) is not None and pattern.match(str(value(row))) is not None
    if t.word("IN"):
        t.expect("op", "(")
        options = {t.expect("str")}
        while t.peek() == ("op", ","):
            t.take()
            options.add(t.expect("str"))
        t.expect("op", ")")
        return lambda row: value(row) is not None and str(value(row)) in options
    op = t.expect("op")
    if op in (">", "<", ">=", "<="):
        when = _timestamp(t)
        compare = {">": datetime.__gt__, "<": datetime.__lt__, ">=": datetime.__ge__, "<=": datetime.__le__}
        return lambda row: isinstance(value(row), datetime) and compare[op](value(row), when)
    if op not in ("=", "!="):
        raise BadQuery(f"invalid syntax: unexpected {op!r}")
    wanted = t.expect("str")
    if op == "=":
        return lambda row: value(row) is not None and str(value(row)) == wanted
    return lambda row: value(row) is None or str(value(row)) != wanted


def row(record: Mapping[str, Any]) -> dict[str, Any]:
    """The activity row of one stored SendGrid message (one recipient)."""
    return {
        "msg_id": f"{record['provider_id']}.filterdrecv-sandbox-{record['id']}.0",
        "from_email": record.get("from"),
        "subject": record.get("subject"),
        "to_email": record.get("to"),
        "status": "processed",
        "last_event_time": datetime.fromisoformat(str(record["received_at"])).astimezone(UTC),
        "unique_args": dict(record.get("custom_args") or {}),
        "categories": list(record.get("categories") or []),
        "opens_count": 0,
        "clicks_count": 0,
    }


def answer(rows: Sequence[Mapping[str, Any]], query: str | None, limit: str | None) -> dict[str, Any]:
    """The body of a 200 to `GET /v3/messages` over activity `rows` (oldest first, as stored); BadQuery
    for SendGrid's 400."""
    size = 10 if limit is None else limit
    if not str(size).isdigit() or not 1 <= int(size) <= MAX_LIMIT:
        raise BadQuery(f"limit must be greater than 0 and less than or equal to {MAX_LIMIT}")
    test = parse(query) if query else None
    picked = []
    for found in reversed(rows):  # newest first
        if test is None or test(found):
            picked.append(found)
            if len(picked) == int(size):
                break
    shown = ("from_email", "msg_id", "subject", "to_email", "status", "opens_count", "clicks_count")
    return {
        "messages": [
            {
                **{k: row[k] for k in shown},
                "last_event_time": row["last_event_time"].strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            for row in picked
        ]
    }


class Activity:
    """The activity rows of an emulator's stored messages, built once per message (records never change)."""

    def __init__(self) -> None:
        self._rows: list[dict[str, Any]] = []
        self._seen = 0  # stored messages already turned into rows

    def rows(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Rows for `records` (every stored SendGrid message, oldest first; a reset starts again)."""
        if len(records) < self._seen:
            self._rows, self._seen = [], 0
        self._rows.extend(row(record) for record in records[self._seen :])
        self._seen = len(records)
        return self._rows
