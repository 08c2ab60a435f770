"""`clarion responders test`: which rule answers one message, and the reply, without sending or recording.

The personal link is shown as it would be for a first conversation (a real reply's link names the
sender's own conversation); lookups run as they would in the service.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clarion.base import addresses
from clarion.base.errors import ClarionError
from clarion.messages.links import LinkClaims, LinkSigner, run_key
from clarion.responders.links import personal_link
from clarion.responders.loader import load_responder
from clarion.responders.model import FALLBACK, SmsChannel
from clarion.responders.render import ReplyError
from clarion.responders.validation import content_problems

ALIASES = {"sms": "twilio", "dm": "x", "x": "x", "twilio": "twilio"}


def preview(file: Path | str, channel: str, sender: str, text: str) -> dict[str, Any]:
    loaded = load_responder(file)
    responder = loaded.responder
    if channel in responder.channels:
        cid, config = channel, responder.channels[channel]
    else:
        found = responder.channel_by_provider(ALIASES.get(channel, channel))
        if found is None:
            known = ", ".join(responder.channels)
            raise ClarionError(f"--channel {channel!r}: the responder has no such channel (it has: {known})")
        cid, config = found
    if isinstance(config, SmsChannel):
        try:
            sender = addresses.phone(sender, config.default_region, strict=False)
        except addresses.AddressError as exc:
            raise ClarionError(f"--from: {exc}") from None
    elif not sender.isdigit():
        raise ClarionError(f"--from {sender!r}: an X sender is a numeric user id, e.g. 3001969357")
    match = loaded.matchers[cid].match(text)
    result: dict[str, Any] = {
        "channel": cid,
        "rule": None,
        "kind": None,
        "groups": {},
        "reply": None,
        "note": "",
    }
    if match is None:
        result["note"] = "no rule matches and the responder has no fallback"
        return result
    result.update(rule=match.rule, kind=match.kind, groups=dict(match.groups))
    if match.kind == "compliance":
        key = f"compliance:{match.rule}"
        if isinstance(config, SmsChannel):
            result["note"] = (
                "a compliance keyword: on SMS, Twilio confirms STOP and START; HELP is CLARION_SMS_HELP_REPLY"
            )
            return result
    else:
        key = match.rule
    signer = LinkSigner(b"preview-only-key-links-do-not-verify-000")

    def link(destination: str) -> str:
        token = signer.sign(LinkClaims(run_key(loaded.run_id), 0, 0, 1))
        return personal_link(loaded, cid, key, destination, token)

    contact = loaded.contact(config, sender)
    try:
        answer = loaded.replies.answer(key, dict(match.groups), contact, link)
        if not answer.text and match.kind != "fallback" and FALLBACK in loaded.replies:
            result["note"] = "a lookup found nothing and the rule has no not_found: the fallback answers"
            answer = loaded.replies.answer(FALLBACK, {}, contact, link)
    except ReplyError as exc:
        raise ClarionError(f"{loaded.source.problem(exc.at, str(exc))}") from None
    result["reply"] = answer.text or None
    result["destination"] = answer.destination
    result["known_contact"] = bool(contact)
    if isinstance(config, SmsChannel):
        from clarion.channels.twilio.rules import sms_length

        length = sms_length(answer.text)
        result["size"] = f"{length.segments} segment(s), {length.encoding}, {length.units} units"
    else:
        result["size"] = f"{len(answer.text)} characters"
    result["problems"] = content_problems(answer, config, key)
    return result
