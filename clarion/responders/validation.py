"""Whole-responder validation: every rule's examples played through the matcher and the templates.

A rule's examples must be answered by that rule on every channel it applies to (an earlier rule, a
keyword or a compliance word that takes them is reported: first match wins, so a rule can be shadowed),
and every reply must fit the channel: SMS within `max_segments` (GSM-7 or UCS-2) and Twilio's 1,600
characters, a direct message within `max_length`. Keyword rules are rendered with their first keyword,
follow-up answers with the question's examples, and the fallback, reminders and retries once each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from clarion.base.errors import CampaignInvalid, Problem
from clarion.channels.twilio.rules import sms_length
from clarion.messages.links import LinkClaims, LinkSigner, run_key
from clarion.responders.links import personal_link
from clarion.responders.loader import REMIND_SUFFIX, RETRY_SUFFIX, LoadedResponder, load_responder
from clarion.responders.model import ANSWER_SUFFIX, FALLBACK, DmChannel, SmsChannel
from clarion.responders.render import Answer, ReplyError

TWILIO_MAX_BODY = 1600
#: Conversation number used for sample links: longer than any real one for years of traffic.
SAMPLE_CONVERSATION = 1 << 28


@dataclass
class ResponderReport:
    loaded: LoadedResponder
    examples: int = 0
    rendered: int = 0
    tables: dict[str, int] = field(default_factory=dict)


def validate_responder(path: Path | str) -> ResponderReport:
    """Load and check a responder file; CampaignInvalid lists every problem, located."""
    loaded = load_responder(path)
    report = ResponderReport(loaded)
    problems: list[Problem] = []
    signer = LinkSigner(b"validation-only-key-not-for-links-0000")
    for cid, channel in loaded.responder.channels.items():
        matcher = loaded.matchers[cid]

        def link(destination: str, cid: str = cid) -> str:
            claims = LinkClaims(run_key(loaded.run_id), 0, 0, SAMPLE_CONVERSATION)
            token = signer.sign(claims)
            return personal_link(loaded, cid, "sample", destination, token)

        for i, rule in enumerate(loaded.responder.rules):
            if rule.channels is not None and cid not in rule.channels:
                continue
            at: tuple[str | int, ...] = ("rules", i)
            samples = list(rule.examples) or [rule.keywords[0]] if rule.keywords else list(rule.examples)
            for j, text in enumerate(samples):
                report.examples += 1
                found = matcher.match(text)
                where: tuple[str | int, ...] = (*at, "examples", j) if rule.examples else (*at, "keywords", 0)
                if found is None or found.rule != rule.id:
                    who = "nothing" if found is None else _who(found.rule, found.kind)
                    message = f"channel {cid}: example {text!r} is answered by {who}, not by this rule"
                    problems.append(loaded.source.problem(where, message))
                    continue
                _render(loaded, rule.id, dict(found.groups), link, channel, where, report, problems)
            if rule.ask is not None:
                compiled = loaded.asks.get(rule.id)
                for j, text in enumerate(rule.ask.examples):
                    where = (*at, "ask", "examples", j)
                    m = compiled.search(text) if compiled is not None else None
                    if m is None:
                        problems.append(
                            loaded.source.problem(where, f"example {text!r} does not fit the pattern")
                        )
                        continue
                    groups = {k: v for k, v in m.groupdict().items() if v is not None}
                    _render(loaded, rule.id + ANSWER_SUFFIX, groups, link, channel, where, report, problems)
                for suffix, part in ((RETRY_SUFFIX, "retry"), (REMIND_SUFFIX, "remind")):
                    if rule.id + suffix in loaded.replies:
                        where = (*at, "ask", part)
                        _render(loaded, rule.id + suffix, {}, link, channel, where, report, problems)
        if loaded.responder.fallback is not None:
            _render(loaded, FALLBACK, {}, link, channel, ("fallback", "reply"), report, problems)
        if isinstance(channel, DmChannel):
            for word in ("stop", "start", "help"):
                _render(
                    loaded, f"compliance:{word}", {}, link, channel, ("compliance", word), report, problems
                )
    if problems:
        raise CampaignInvalid(list(dict.fromkeys(problems)))
    return report


def _who(rule: str, kind: str) -> str:
    if kind == "compliance":
        return f"the compliance keyword {rule.upper()} (always first)"
    if kind == "fallback":
        return "the fallback"
    return f"rule {rule!r} ({kind}, earlier: first match wins)"


def _render(
    loaded: LoadedResponder,
    key: str,
    groups: dict[str, str],
    link: object,
    channel: SmsChannel | DmChannel,
    where: tuple[str | int, ...],
    report: ResponderReport,
    problems: list[Problem],
) -> None:
    try:
        answer = loaded.replies.answer(key, groups, {}, link)  # type: ignore[arg-type]
    except ReplyError as exc:
        problems.append(loaded.source.problem(exc.at, str(exc)))
        return
    report.rendered += 1
    for message in content_problems(answer, channel, key):
        problems.append(loaded.source.problem(where, message))


def content_problems(answer: Answer, channel: SmsChannel | DmChannel, key: str) -> list[str]:
    """What breaks the channel's rules in a rendered reply (an empty not-found reply is the fallback's)."""
    text = answer.text
    if not text:
        return [] if not answer.found else [f"{key}: the reply is empty"]
    if isinstance(channel, SmsChannel):
        length = sms_length(text)
        found = []
        if length.segments > channel.max_segments:
            found.append(
                f"{key}: the reply is {length.segments} segments ({length.encoding}, {length.units} units), "
                f"over max_segments {channel.max_segments}; shorten it or raise max_segments: "
                f"{text[:60]!r}..."
            )
        if len(text) > TWILIO_MAX_BODY:
            found.append(f"{key}: the reply is {len(text)} characters, over Twilio's {TWILIO_MAX_BODY}")
        return found
    if len(text) > channel.max_length:
        return [
            f"{key}: the reply is {len(text)} characters, over the channel's max_length {channel.max_length}"
        ]
    return []
