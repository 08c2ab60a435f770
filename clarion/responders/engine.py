"""Answering people: one inbound message -> one recorded decision -> at most one reply, queued.

The order for each verified message (the tracking service has already applied the compliance keywords:
STOP suppressed the sender, START lifted it, HELP was answered on SMS):

1. which responder: the one whose channel serves the provider and the number or account written to;
2. loop protection before anything is recorded: a sender we cannot read (Twilio's From of an
   alphanumeric sender id or a short code), one of our own numbers, our own account or app;
3. the ledger's `receive`, in one transaction: a message id seen before is a duplicate (a redelivered
   webhook, a replay) and decides nothing; otherwise `decide` below runs on the conversation's state;
4. the reply is queued (unique per inbound message) and handed to the sender (sender.py).

`decide`: a compliance keyword gets its confirmation on X (Twilio confirms STOP and START itself; HELP is
the tracking service's TwiML); a suppressed sender gets nothing else; a message equal to our last reply is
an echo (another auto-responder) and is not answered; an open question is tried first, then keywords and
patterns; the fallback goes at most `fallbacks_in_a_row` times in a row; and past `replies_per_hour`
replies to one sender in an hour, the decision is recorded and nothing is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clarion.base import addresses
from clarion.base.consent import Reply
from clarion.base.text import normalise
from clarion.campaign.contacts import Contact
from clarion.channels.webhooks import Inbound
from clarion.engine.schedule import SendWindow
from clarion.ledger import Ledger
from clarion.ledger.conversations import ConversationState, Decision, InboundMessage, Outgoing
from clarion.messages.links import LinkClaims, LinkSigner, run_key
from clarion.responders.links import KINDS, personal_link
from clarion.responders.loader import RETRY_SUFFIX, LoadedResponder
from clarion.responders.model import ANSWER_SUFFIX, FALLBACK, DmChannel, SmsChannel
from clarion.responders.render import Answer, ReplyError
from clarion.responders.rules import Match, groups_of

log = logging.getLogger("clarion.responders")


@dataclass(frozen=True)
class Route:
    """Where an inbound message goes: a responder and one of its channels."""

    loaded: LoadedResponder
    channel_id: str
    channel: SmsChannel | DmChannel


@dataclass(frozen=True)
class Queued:
    """A reply to hand to the sender."""

    reply_id: int
    route: Route
    recipient: str
    text: str
    sender_number: str | None  # the number the person wrote to (SMS), to answer from it
    token: str | None


class Responders:
    """The responders `clarion serve --responders` answers with; thread-safe (state is in the ledger)."""

    def __init__(
        self, loaded: list[LoadedResponder], ledger: Ledger, signer: LinkSigner, secret: bytes
    ) -> None:
        self.loaded = loaded
        self.ledger = ledger
        self.signer = signer
        self._secret = secret
        self._indices: dict[str, tuple[dict[str, int], dict[str, int]]] = {}
        self.on_queued: Callable[[Queued], None] = lambda queued: None
        self.counts: dict[str, int] = {}

    def start(self) -> None:
        """Record each responder's run (its links' identity) and learn its channel and rule positions."""
        for loaded in self.loaded:
            keys = [k for k in _reply_keys(loaded) if loaded.replies.uses_link(k)]
            channels = {cid: KINDS[c.provider].value for cid, c in loaded.responder.channels.items()}
            cta = loaded.responder.link.url if loaded.responder.link else ""
            options = self.ledger.ensure_responder_run(
                loaded.run_id,
                name=loaded.name,
                file=str(loaded.path.resolve()),
                channels=channels,
                rules=keys,
                cta=cta,
            )
            channel_index = {c: i for i, c in enumerate(options["channels"])}
            rule_index = {r: i for i, r in enumerate(options["variants"])}
            if any(i > 0xFF for i in rule_index.values()):
                raise ValueError(f"responder {loaded.name}: more than 256 rules carry a personal link")
            self._indices[loaded.name] = (channel_index, rule_index)

    # -- routing -------------------------------------------------------------------------------------

    def route(self, message: Inbound) -> Route | None:
        for loaded in self.loaded:
            found = loaded.responder.channel_by_provider(message.provider)
            if found is None:
                continue
            cid, channel = found
            if isinstance(channel, SmsChannel) and channel.numbers and message.to not in channel.numbers:
                continue
            if isinstance(channel, DmChannel) and message.to != channel.account_id:
                continue
            return Route(loaded, cid, channel)
        return None

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def receive(self, message: Inbound, compliance: Reply | None = None) -> Queued | None:
        """Record one verified inbound message and decide its reply; returns the reply to send, if any."""
        route = self.route(message)
        if route is None:
            self._count("unrouted")
            return None
        why = self._refuse(message, route)
        if why is not None:
            self._count(why)
            log.info("%s message %s not answered: %s", message.provider, message.message_id[:40], why)
            return None
        assert message.sender is not None
        limits = route.loaded.responder.limits
        now = datetime.now(UTC)
        key = addresses.address_key(self._secret, message.kind, message.sender)
        inbound = InboundMessage(
            route.loaded.name,
            route.channel_id,
            key,
            message.provider,
            message.message_id[:64],
            message.text[: limits.max_chars],
            now,
            message.kind,
            message.sender,
        )
        tokens: dict[str, str] = {}

        def decide(state: ConversationState) -> Decision:
            return self._decide(route, message, compliance, state.suppressed, state, now, tokens)

        received = self.ledger.receive(inbound, decide)
        if received.duplicate:
            self._count("duplicate")
            log.info(
                "%s message %s already received: not answered again", message.provider, inbound.provider_id
            )
            return None
        decision = received.decision
        assert decision is not None
        self._count(decision.reason or decision.kind)
        if received.reply_id is None or decision.reply is None:
            return None
        queued = Queued(
            received.reply_id,
            route,
            message.sender,
            decision.reply.text,
            message.to,
            tokens.get(decision.reply.rule),
        )
        self.on_queued(queued)
        return queued

    def _refuse(self, message: Inbound, route: Route) -> str | None:
        """Why a message is never answered (loop protection before anything is recorded), or None."""
        if not message.message_id:
            return "no_message_id"
        if message.sender is None:
            return "automated_sender"  # an alphanumeric sender id or a short code: machines, not people
        if isinstance(route.channel, SmsChannel) and message.sender in route.channel.numbers:
            return "own_number"
        if isinstance(route.channel, DmChannel):
            if message.sender == route.channel.account_id:
                return "own_account"
            if message.app is not None and message.app in route.channel.app_ids:
                return "own_app"
        return None

    # -- deciding --------------------------------------------------------------------------------------

    def _decide(
        self,
        route: Route,
        message: Inbound,
        compliance: Reply | None,
        suppressed: bool,
        state: ConversationState,
        now: datetime,
        tokens: dict[str, str],
    ) -> Decision:
        loaded, responder = route.loaded, route.loaded.responder
        closed = {
            "pending_rule": None,
            "pending_until": None,
            "pending_misses": 0,
            "remind_at": None,
            "reply_to": None,
        }
        if compliance is not None:
            reply = None
            if (
                isinstance(route.channel, DmChannel)
                and state.replies_last_hour < responder.limits.replies_per_hour
            ):
                reply = self._render(route, f"compliance:{compliance.value}", {}, message, state, tokens)
            return Decision(compliance.value, "compliance", reply=reply, conversation=closed)
        if suppressed:
            return Decision(None, "ignored", "ignored", "suppressed", conversation=closed)
        if state.last_reply is not None and normalise(message.text) == normalise(state.last_reply):
            return Decision(None, "ignored", "ignored", "echo")
        match, updates = self._match(route, message, state, now)
        if match is None:
            return Decision(None, "ignored", "ignored", "no_rule", conversation=updates)
        if match.kind == "fallback" and state.fallbacks >= responder.limits.fallbacks_in_a_row:
            return Decision(match.rule, "fallback", "ignored", "fallback_limit", conversation=updates)
        updates["fallbacks"] = state.fallbacks + 1 if match.kind == "fallback" else 0
        if state.replies_last_hour >= responder.limits.replies_per_hour:
            return Decision(match.rule, match.kind, "ignored", "hourly_cap", conversation=updates)
        reply = self._render(route, match.rule, dict(match.groups), message, state, tokens)
        if reply is None and match.kind != "fallback" and responder.fallback is not None:
            reply = self._render(route, FALLBACK, {}, message, state, tokens)  # nothing found: the fallback
        rule = loaded.rule(match.rule.removesuffix(ANSWER_SUFFIX))
        if rule is not None and rule.ask is not None and match.kind in ("keyword", "pattern"):
            updates.update(self._open_question(route, rule, message, now))
        return Decision(match.rule, match.kind, reply=reply, conversation=updates)

    def _match(
        self, route: Route, message: Inbound, state: ConversationState, now: datetime
    ) -> tuple[Match | None, dict[str, Any]]:
        """The open question first (its answer, a retry, or giving up), then the rules."""
        loaded = route.loaded
        match = loaded.matchers[route.channel_id].match(message.text)
        pending = state.pending_rule
        if pending is None or state.pending_until is None or state.pending_until <= now:
            return match, ({"pending_rule": None, "remind_at": None, "reply_to": None} if pending else {})
        closed = {
            "pending_rule": None,
            "pending_until": None,
            "pending_misses": 0,
            "remind_at": None,
            "reply_to": None,
        }
        compiled = loaded.asks.get(pending)
        from clarion.base.text import pattern_text

        found = compiled.search(pattern_text(message.text)) if compiled is not None else None
        if found is not None:
            return Match(pending + ANSWER_SUFFIX, "answer", groups_of(found)), closed
        if match is not None and match.kind != "fallback":
            return match, closed  # another rule answers: the question is dropped
        retry = pending + RETRY_SUFFIX
        if state.pending_misses == 0 and retry in loaded.replies:
            return Match(retry, "retry"), {"pending_misses": 1}
        return match, closed

    def _open_question(self, route: Route, rule: Any, message: Inbound, now: datetime) -> dict[str, Any]:
        ask = rule.ask
        values: dict[str, Any] = {
            "pending_rule": rule.id,
            "pending_until": now + ask.within,
            "pending_misses": 0,
            "remind_at": None,
            "reply_to": None,
        }
        if ask.remind is not None and ask.remind.after < ask.within:
            values["remind_at"] = now + ask.remind.after
            values["reply_to"] = message.sender  # kept only until the reminder goes or the question closes
            values["zone"] = self.zone_of(route, message.sender or "")
        return values

    def zone_of(self, route: Route, sender: str) -> str | None:
        if not isinstance(route.channel, SmsChannel):
            return None
        fields = route.loaded.contact(route.channel, sender)
        return SendWindow(route.channel).zone_of(Contact(0, 0, 0, dict(fields)), sender).key

    def _render(
        self,
        route: Route,
        key: str,
        groups: dict[str, str],
        message: Inbound,
        state: ConversationState,
        tokens: dict[str, str],
    ) -> Outgoing | None:
        contact = route.loaded.contact(route.channel, message.sender or "")

        def link(destination: str) -> str:
            token = self.token(route, key, state.id)
            tokens[key] = token
            return personal_link(route.loaded, route.channel_id, key, destination, token)

        try:
            answer: Answer = route.loaded.replies.answer(key, groups, contact, link)
        except ReplyError as exc:
            log.error(
                "responder %s: %s (at %s); no reply", route.loaded.name, exc, ".".join(map(str, exc.at))
            )
            return None
        if not answer.text:
            return None
        kind = "compliance" if key.startswith("compliance:") else "reply"
        return Outgoing(key, kind, answer.text, message.sender or "", answer.destination)

    def token(self, route: Route, key: str, conversation: int) -> str:
        channels, rules = self._indices[route.loaded.name]
        claims = LinkClaims(
            run_key(route.loaded.run_id), channels[route.channel_id], rules[key], conversation
        )
        return self.signer.sign(claims)


def _reply_keys(loaded: LoadedResponder) -> list[str]:
    """Every reply's key, in file order (rules, their answers, retries and reminders, the fallback)."""
    return loaded.replies.keys()
