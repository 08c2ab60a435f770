"""What each command-line value may be, checked while the command line is parsed (before anything runs).

Every text option and argument of `clarion` names its kind here, through typer's `parser=`: a wrong value
is answered `Invalid value for '--run-id': ...` (exit 2) with the rule it breaks, and nothing starts.
The bad-input harness (tests/badinput/) reads `Kind.kind` to know which wrong values to try, and fails on
a text parameter that declares no kind: a new command cannot skip this.

Kinds: identifier (run ids, event names, pool names: clarion/base/identifiers.py), name (a person or
operator), text (free text kept with a record), address, region, currency, duration, json (an object),
host, and URLs of a database or Redis.
"""

from __future__ import annotations

import ipaddress
import json
import re
import unicodedata
from collections.abc import Callable
from typing import Any

import typer

from clarion.base.identifiers import check_identifier

MAX_TEXT = 2000
MAX_NAME = 100
HOSTNAME = re.compile(r"(?=.{1,253}\Z)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


class Kind:
    """A parser for typer that checks one kind of value and raises BadParameter saying what it must be."""

    def __init__(self, kind: str, check: Callable[[str], Any]) -> None:
        self.kind = kind
        self.check = check
        self.__name__ = kind  # typer names the parser in its messages

    def __call__(self, value: str) -> Any:
        if not isinstance(value, str):  # a default already parsed
            return value
        try:
            return self.check(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None

    def __repr__(self) -> str:
        return f"Kind({self.kind!r})"


def _shown(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:57] + "...")


def _printable(value: str, what: str, limit: int) -> str:
    if not value.strip():
        raise ValueError(f"{what} is empty")
    if len(value) > limit:
        raise ValueError(f"{what} is {len(value):,} characters long; at most {limit:,}")
    bad = [c for c in value if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") and c not in "\t"]
    if bad:
        raise ValueError(
            f"{what} {_shown(value)} holds control or unassigned characters ({bad[0]!a}); remove them"
        )
    return value


def identifier(what: str, *, allow_latest: bool = False) -> Kind:
    """An identifier (run id, event name, pool name); `latest` too where the command resolves it."""

    def check(value: str) -> str:
        if allow_latest and value == "latest":
            return value
        return check_identifier(value, what)

    return Kind("identifier", check)


def _name(value: str) -> str:
    _printable(value, "the name", MAX_NAME)
    if value != value.strip():
        raise ValueError(f"the name {_shown(value)} starts or ends with a space; remove it")
    return value


def _env_name(value: str) -> str:
    _printable(value, "the variable name", MAX_NAME)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ValueError(f"{_shown(value)} is not an environment variable name; e.g. CRM_WEBHOOK_SECRET")
    return value


def _outbox_state(value: str) -> str:
    if value not in ("pending", "delivered", "dead"):
        raise ValueError(f"{_shown(value)} is not a state; give pending, delivered or dead")
    return value


def _text(value: str) -> str:
    return _printable(value, "the text", MAX_TEXT)


def _address(value: str) -> str:
    return _printable(value, "the address", 320).strip()


def _region(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{2}", value):
        raise ValueError(f"{_shown(value)} is not a region: two letters (ISO 3166), e.g. US or GB")
    return value.upper()


def _currency(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{3}", value):
        raise ValueError(f"{_shown(value)} is not a currency: three letters (ISO 4217), e.g. USD or EUR")
    return value.upper()


def _duration(value: str) -> str:
    from clarion.base.timing import parse_duration

    _printable(value, "the duration", 40)
    parse_duration(value)  # ValueError says the form (60s, 2m, 3h, 1d)
    return value


def _json_object(value: str) -> str:
    _printable(value, "the JSON", 512 * 1024)
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg} at character {exc.pos}") from None
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None
    if not isinstance(data, dict):
        raise ValueError('a JSON object is expected, e.g. \'{"debate": "first"}\'')
    return value


def _host(value: str) -> str:
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if not HOSTNAME.fullmatch(value):
        raise ValueError(f"{_shown(value)} is not an IP address or host name (e.g. 127.0.0.1 or 0.0.0.0)")
    return value


def _url(schemes: tuple[str, ...], example: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        from urllib.parse import urlsplit

        _printable(value, "the URL", 2000)
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018  (a port out of range raises here)
        except ValueError as exc:
            raise ValueError(f"{_shown(value)} is not a URL ({exc}); e.g. {example}") from None
        scheme = parts.scheme.split("+", 1)[0]
        if scheme not in schemes or not (parts.netloc or parts.path):
            raise ValueError(f"{_shown(value)} is not a {' or '.join(schemes)} URL; e.g. {example}")
        return value

    return check


RUN_ID = identifier("run id (see `clarion runs`)", allow_latest=True)


def _run_or_file(value: str) -> str:
    from pathlib import Path

    if value.endswith((".yaml", ".yml")) and "\x00" not in value:
        if not Path(value).is_file():
            raise ValueError(f"{_shown(value)}: no such responder file")
        return value
    return RUN_ID.check(value)  # type: ignore[no-any-return]


RUN_OR_FILE = Kind("identifier", _run_or_file)
NEW_RUN_ID = identifier("run id")
EVENT = identifier("event name (e.g. debate.ended)")
POOL = identifier("work pool name")
CHANNEL = identifier("channel id (or sms / dm)")
CONTACT = Kind("name", _name)  # contact ids are the CSV's own, checked against it
NAME = Kind("name", _name)
TEXT = Kind("text", _text)
ADDRESS = Kind("address", _address)
REGION = Kind("region", _region)
CURRENCY = Kind("currency", _currency)
DURATION = Kind("duration", _duration)
JSON_OBJECT = Kind("json", _json_object)
HOST = Kind("host", _host)
DATABASE_URL = Kind("url", _url(("postgresql", "postgres"), "postgresql+psycopg://user@host:5432/db"))
HTTP_URL = Kind("url", _url(("http", "https"), "https://crm.example.org/hooks/clarion"))
ENV_NAME = Kind("name", _env_name)
OUTBOX_STATE = Kind("name", _outbox_state)
REDIS_URL = Kind("url", _url(("redis", "rediss", "unix"), "redis://127.0.0.1:6379/0"))
