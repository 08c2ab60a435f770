"""Consent: who may be sent what. Opt-out keywords, the SMS consent column, why an address is suppressed.

The suppression store itself is in the ledger (clarion/ledger/suppressions.py); this module holds the rules
that decide what goes in it, so the tracking service, the send engine and the CLI all read a reply or a
consent value the same way. Addresses are read by clarion.base.addresses.

- Addresses are suppressed per kind ("email" or "sms"): an email unsubscribe stops emails, a STOP stops
  texts, neither stops the other.
- SMS replies follow the carriers' and Twilio's standard keywords: the whole message, trimmed and
  case-insensitive, is one keyword (Twilio's default opt-out handling matches the same way); surrounding
  punctuation, emoji, accents and fullwidth forms do not hide a keyword (clarion.base.text.normalise).
"""

from __future__ import annotations

from enum import StrEnum

from clarion.base.addresses import AddressKind
from clarion.base.text import normalise

SMS_CONSENT_COLUMN = "sms_consent"

STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})
START_WORDS = frozenset({"START", "UNSTOP", "YES"})
HELP_WORDS = frozenset({"HELP", "INFO"})

_YES = frozenset({"yes", "y", "true", "1", "opted_in", "opt-in", "granted"})
_NO = frozenset({"no", "n", "false", "0", "", "opted_out", "opt-out", "revoked"})


#: What an address is suppressed for: the kind of address it is (an email unsubscribe stops emails only).
Kind = AddressKind


class Reply(StrEnum):
    STOP = "stop"
    START = "start"
    HELP = "help"


class Reason(StrEnum):
    """Why an address is suppressed (the `reason` of a suppression, and its source)."""

    MANUAL = "manual"  # clarion suppress add / import
    UNSUBSCRIBE_LINK = "unsubscribe_link"  # the link in an email, or a one-click List-Unsubscribe POST
    SENDGRID_UNSUBSCRIBE = "sendgrid_unsubscribe"
    SENDGRID_GROUP_UNSUBSCRIBE = "sendgrid_group_unsubscribe"
    SPAM_REPORT = "spam_report"
    HARD_BOUNCE = "hard_bounce"
    SMS_STOP = "sms_stop"
    DM_STOP = "dm_stop"  # STOP (or a synonym) sent to a responder by direct message
    TWILIO_21610 = "twilio_21610"  # Twilio refused: the number had replied STOP to this sender


def classify_reply(body: str) -> Reply | None:
    """What an inbound text asks for, if it is one of the standard keywords (the whole message, read by
    clarion.base.text.normalise: "Stop!!", "ＳＴＯＰ", "stop 🙏" are STOP; "please stop" is not)."""
    word = normalise(body).upper()
    if word in STOP_WORDS:
        return Reply.STOP
    if word in START_WORDS:
        return Reply.START
    if word in HELP_WORDS:
        return Reply.HELP
    return None


def consent_given(value: str) -> bool:
    """Whether an `sms_consent` cell says yes; ValueError for a value that is neither yes nor no."""
    text = value.strip().lower()
    if text in _YES:
        return True
    if text in _NO:
        return False
    raise ValueError(
        f"sms_consent {value!r} is neither yes nor no; write yes/no (also true/false, 1/0, y/n, "
        "opted_in/opted_out); an empty cell means no consent"
    )


def kind_of_channel(kind: str) -> Kind | None:
    """The suppression kind of a channel kind (social posts go to no one in particular: None)."""
    return Kind(kind) if kind in (Kind.EMAIL.value, Kind.SMS.value) else None
