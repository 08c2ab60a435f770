"""From a responder file to a `LoadedResponder`, with every problem located at FILE:LINE:COL.

Loading checks what can be checked without a message: the format (pydantic, mapped back to the YAML
nodes), every pattern (RE2 accepts it within our limits), keywords (none claims a compliance word or
another rule's word), templates and lookup expressions (they compile), the tables and the contacts file
(they read). `check_examples` (validation.py) then plays each rule's examples through the matcher and the
templates, as a person writing in would.
"""

from __future__ import annotations

import contextlib
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from clarion.base import addresses
from clarion.base.errors import CampaignInvalid, Problem, display_path
from clarion.campaign.contacts import ContactsError, ContactsFile
from clarion.campaign.yamlsource import PathKey, SourceMap, load_yaml
from clarion.responders.lookups import Lookups, Table, TableError
from clarion.responders.model import ANSWER_SUFFIX, FALLBACK, DmChannel, Responder, SmsChannel
from clarion.responders.render import Replies, ReplyError
from clarion.responders.rules import Matcher, RuleError, check_pattern, matcher_for

REMIND_SUFFIX = "/remind"
RETRY_SUFFIX = "/retry"


@dataclass
class LoadedResponder:
    """A valid responder with where it came from, its compiled rules, replies, tables and contacts."""

    responder: Responder
    path: Path
    source: SourceMap
    replies: Replies
    matchers: dict[str, Matcher]  # channel id -> matcher
    asks: dict[str, Any] = field(default_factory=dict)  # rule id -> compiled answer pattern
    contacts_by_phone: dict[str, dict[str, str]] = field(default_factory=dict)
    contacts_by_x: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.responder.name

    @property
    def run_id(self) -> str:
        """The ledger's run this responder's links, clicks and conversions are recorded under."""
        return f"responder-{self.responder.name}"

    def rule(self, rule_id: str) -> Any:
        return next((r for r in self.responder.rules if r.id == rule_id), None)

    def contact(self, channel: SmsChannel | DmChannel, sender: str) -> dict[str, str]:
        book = self.contacts_by_phone if isinstance(channel, SmsChannel) else self.contacts_by_x
        return book.get(sender, {})


def load_responder(path: Path | str) -> LoadedResponder:
    """Read and check one responder file; raises CampaignInvalid listing every problem."""
    path = Path(path)
    data, source = load_yaml(path, str(path))
    if not isinstance(data, dict):
        raise CampaignInvalid(
            [source.problem((), "a responder file is a mapping (name:, channels:, rules:)")]
        )
    try:
        responder = Responder.model_validate(data)
    except ValidationError as exc:
        raise CampaignInvalid([_problem(err, data, source) for err in exc.errors()]) from None
    problems: list[Problem] = []
    tables = _tables(responder, path, source, problems)
    default_link = responder.link.url if responder.link else None
    replies = Replies(Lookups(tables), responder.name, default_link)
    matchers: dict[str, Matcher] = {}
    asks: dict[str, Any] = {}
    _compile(responder, source, replies, asks, problems)
    for cid in responder.channels:
        try:
            matchers[cid] = matcher_for(responder.rules, cid, FALLBACK if responder.fallback else None)
        except RuleError as exc:
            problems.append(source.problem(_rule_path(responder, str(exc)), str(exc)))
    loaded = LoadedResponder(responder, path, source, replies, matchers, asks)
    if responder.contacts is not None:
        _contacts(loaded, problems)
    if problems:
        raise CampaignInvalid(_unique(problems))
    return loaded


def _compile(
    responder: Responder, source: SourceMap, replies: Replies, asks: dict[str, Any], problems: list[Problem]
) -> None:
    from clarion.responders.rules import compile_pattern

    for i, rule in enumerate(responder.rules):
        at: PathKey = ("rules", i)
        if rule.pattern is not None:
            try:
                check_pattern(rule.pattern, case_sensitive=rule.case_sensitive)
            except RuleError as exc:
                problems.append(source.problem((*at, "pattern"), str(exc)))
        _add(replies, rule.id, rule, at, source, problems)
        if rule.ask is not None:
            try:
                asks[rule.id] = compile_pattern(rule.ask.pattern)
            except RuleError as exc:
                problems.append(source.problem((*at, "ask", "pattern"), str(exc)))
            _add(replies, rule.id + ANSWER_SUFFIX, rule.ask, (*at, "ask"), source, problems)
            if rule.ask.retry:
                _add_text(
                    replies, rule.id + RETRY_SUFFIX, rule.ask.retry, (*at, "ask", "retry"), source, problems
                )
            if rule.ask.remind:
                remind_at = (*at, "ask", "remind", "reply")
                _add_text(
                    replies, rule.id + REMIND_SUFFIX, rule.ask.remind.reply, remind_at, source, problems
                )
    if responder.fallback is not None:
        _add_text(replies, FALLBACK, responder.fallback.reply, ("fallback", "reply"), source, problems)
    for word in ("stop", "start", "help"):
        text = getattr(responder.compliance, word)
        _add_text(replies, f"compliance:{word}", text, ("compliance", word), source, problems)


def _add(
    replies: Replies, key: str, block: Any, at: PathKey, source: SourceMap, problems: list[Problem]
) -> None:
    try:
        replies.add(key, block, at)
    except ReplyError as exc:
        problems.append(source.problem(exc.at, str(exc)))


def _add_text(
    replies: Replies, key: str, text: str, at: PathKey, source: SourceMap, problems: list[Problem]
) -> None:
    try:
        replies.add_text(key, text, at)
    except ReplyError as exc:
        problems.append(source.problem(exc.at, str(exc)))


def _rule_path(responder: Responder, message: str) -> PathKey:
    """Where a matcher's complaint about `rule <id>: ...` points: that rule's keywords or pattern."""
    for i, rule in enumerate(responder.rules):
        if message.startswith(f"rule {rule.id}:"):
            return ("rules", i, "keywords" if rule.keywords is not None else "pattern")
    return ("rules",)


def _tables(responder: Responder, path: Path, source: SourceMap, problems: list[Problem]) -> dict[str, Table]:
    tables: dict[str, Table] = {}
    for name, spec in responder.tables.items():
        file = path.parent / spec.file
        try:
            tables[name] = Table.read(name, file, spec.key, display_path(file))
        except TableError as exc:
            if exc.problem.line == 0 and "not found" in exc.problem.message:
                message = f"table file {spec.file!r} not found (looked for {display_path(file)})"
                problems.append(source.problem(("tables", name, "file"), message))
            else:
                problems.append(exc.problem)
    return tables


def _contacts(loaded: LoadedResponder, problems: list[Problem]) -> None:
    spec = loaded.responder.contacts
    assert spec is not None
    file = loaded.path.parent / spec.file
    if not file.is_file():
        message = f"contacts file {spec.file!r} not found (looked for {display_path(file)})"
        problems.append(loaded.source.problem(("contacts", "file"), message))
        return
    try:
        for contact in ContactsFile(file, display_path(file)).records():
            raw_phone = contact.fields.get(spec.phone, "").strip()
            if raw_phone:
                with contextlib.suppress(addresses.AddressError):  # not a number anyone texts from
                    number = addresses.phone(raw_phone, strict=False)
                    loaded.contacts_by_phone.setdefault(number, contact.fields)
            x_id = contact.fields.get(spec.x, "").strip()
            if x_id:
                loaded.contacts_by_x.setdefault(x_id, contact.fields)
    except ContactsError as exc:
        problems.append(exc.problem)


def _unique(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


# -- pydantic errors, where a person would look for them ----------------------------------------------


def _yaml_path(loc: tuple[int | str, ...], data: Any) -> PathKey:
    path: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif len(path) == 2 and path[0] == "channels" and part in ("twilio", "x"):
            continue  # the discriminated-union tag pydantic adds under channels.<id>
        else:
            path.append(part)
            break
        path.append(part)
    return tuple(path)


def _allowed(path: PathKey, data: Any) -> list[str]:
    from clarion.responders import model

    models: dict[str, Any] = {
        "": model.Responder,
        "channels": None,
        "rules": model.Rule,
        "ask": model.Ask,
        "remind": model.Remind,
        "fallback": model.Fallback,
        "link": model.Link,
        "tracking": model.Tracking,
        "contacts": model.Contacts,
        "limits": model.Limits,
        "compliance": model.Compliance,
        "quiet_hours": model.QuietHours,
    }
    names = [p for p in path if isinstance(p, str)]
    if len(path) == 2 and path[0] == "channels":
        section = data.get("channels", {}).get(path[1], {}) if isinstance(data, dict) else {}
        provider = section.get("provider") if isinstance(section, dict) else None
        found = {"twilio": model.SmsChannel, "x": model.DmChannel}.get(str(provider))
    elif len(path) == 2 and path[0] == "tables":
        found = model.Table
    else:
        found = models.get(names[-1] if names else "")
    if found is None:
        return []
    fields: dict[str, Any] = getattr(found, "model_fields", {})
    return [f.alias or n for n, f in fields.items()]


def _problem(err: ErrorDetails, data: Any, source: SourceMap) -> Problem:
    at = err.get("ctx", {}).get("at")
    loc = (*err["loc"], *at) if isinstance(at, tuple) else tuple(err["loc"])
    path = _yaml_path(loc, data)
    kind = err["type"]
    message = str(err["msg"]).removeprefix("Value error, ")
    if kind == "missing":
        return source.problem(path, f"required key {path[-1]!r} is missing")
    if kind == "extra_forbidden":
        allowed = _allowed(path[:-1], data)
        close = difflib.get_close_matches(str(path[-1]), allowed, n=1, cutoff=0.6)
        hint = (
            f"; did you mean {close[0]!r}?"
            if close
            else (f"; allowed: {', '.join(allowed)}" if allowed else "")
        )
        return source.problem(path, f"unknown key {path[-1]!r}{hint}", key=True)
    if kind == "union_tag_invalid":
        got = err.get("ctx", {}).get("tag")
        return source.problem(
            (*path, "provider"), f"unknown provider {got!r}; a responder answers on twilio or x"
        )
    if kind == "union_tag_not_found":
        return source.problem(path, "says no `provider:`; add twilio (SMS) or x (direct messages)")
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return source.problem(path, "should be a mapping of keys")
    if kind == "list_type":
        return source.problem(path, "should be a list (items starting with '- ')")
    if kind == "too_short" and path == ("channels",):
        return source.problem(path, "needs at least one channel (provider twilio or x)")
    return source.problem(path, message)
