"""Consent: who may be sent what. Opt-out keywords, the SMS consent column, address keys, frequency caps.

The suppression store itself is in the ledger (clarion/ledger/consent.py); this module holds the rules
that decide what goes in it and what is checked against it, so the tracking service, the send engine and
the CLI all read an address, a reply or a consent value the same way.

- Addresses are suppressed per channel kind ("email" or "sms"), normalised: an email address lower-cased
  whole (providers treat the local part case-insensitively in practice, and an opt-out must match however
  the address was typed), a phone number in E.164.
- SMS replies follow the carriers' and Twilio's standard keywords: the whole message, trimmed and
  case-insensitive, is one keyword (Twilio's default opt-out handling matches the same way).
- Frequency caps count sends by an address key, an HMAC of the normalised address under the project's
  signing key: the ledger can count a person's messages across campaigns without storing their address
  beside every send.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from enum import StrEnum

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from clarion.base.errors import ClarionError

SMS_CONSENT_COLUMN = "sms_consent"

STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})
START_WORDS = frozenset({"START", "UNSTOP", "YES"})
HELP_WORDS = frozenset({"HELP", "INFO"})

_YES = frozenset({"yes", "y", "true", "1", "opted_in", "opt-in", "granted"})
_NO = frozenset({"no", "n", "false", "0", "", "opted_out", "opt-out", "revoked"})
_OPT_OUT_HINT = re.compile(r"\bSTOP\b", re.IGNORECASE)


class Kind(StrEnum):
    """What an address is suppressed for."""

    EMAIL = "email"
    SMS = "sms"


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
    TWILIO_21610 = "twilio_21610"  # Twilio refused: the number had replied STOP to this sender


def classify_reply(body: str) -> Reply | None:
    """What an inbound text asks for, if it is one of the standard keywords (the whole message)."""
    word = body.strip().strip(".!").upper()
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


def tells_how_to_opt_out(text: str) -> bool:
    """Whether a text tells its reader how to stop getting texts ("Reply STOP to opt out")."""
    return _OPT_OUT_HINT.search(text) is not None


def normalise(kind: Kind | str, raw: str, region: str = "US") -> str:
    """The form an address is suppressed under; ClarionError naming what is wrong with it."""
    kind = Kind(kind)
    text = raw.strip()
    if kind is Kind.EMAIL:
        try:
            checked = validate_email(text, check_deliverability=False)
        except EmailNotValidError as exc:
            raise ClarionError(f"{raw!r} is not a valid email address: {exc}") from None
        return checked.normalized.lower()
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise ClarionError(f"{raw!r} is not a phone number: {exc}") from None
    if not phonenumbers.is_possible_number(number):
        raise ClarionError(f"{raw!r} is not a possible phone number (e.g. +15551234567)")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def kind_of(raw: str) -> Kind:
    """An address's kind when the user did not say: an @ makes it an email address."""
    return Kind.EMAIL if "@" in raw else Kind.SMS


def address_key(secret: bytes, kind: Kind | str, address: str) -> str:
    """The key a send is counted under for frequency caps: no address in the ledger's sends."""
    digest = hmac.new(secret, f"clarion.address.v1\x00{kind}\x00{address}".encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


def suppression_form(kind: Kind | str, address: str) -> str:
    """A channel adapter's normalised address in the form suppressions are kept in."""
    return address.strip().lower() if Kind(kind) is Kind.EMAIL else address.strip()


def kind_of_channel(kind: str) -> Kind | None:
    """The suppression kind of a channel kind (social posts go to no one in particular: None)."""
    return Kind(kind) if kind in (Kind.EMAIL.value, Kind.SMS.value) else None
