"""Addresses, read one way everywhere: validation, planning, suppression, the tracking service, imports.

- An email address is checked and normalised by email-validator (the domain lower-cased, the local part as
  written); it is *matched* lower-cased whole (`email_key`): providers treat the local part
  case-insensitively in practice, and an opt-out must match however the address was typed.
- A phone number is parsed by phonenumbers into E.164, reading numbers without a country code in the
  channel's region. A contact's number must be a valid number (`strict`); a number to suppress or to
  match an import need only be a possible one, so a STOP from a number our metadata does not know is
  still honoured.
- The ledger never keeps an address beside a send: frequency caps count sends by `address_key`, an HMAC of
  the normalised address under the project's signing key.

Every function raises `AddressError`, which is both a ValueError (for validators) and a ClarionError (for
the command line), with a message naming the address and how to write it.
"""

from __future__ import annotations

import functools
import hmac
import re
from collections.abc import Callable, Iterable
from enum import StrEnum

from email_validator import EmailNotValidError, validate_email

from clarion.base.errors import ClarionError


class AddressKind(StrEnum):
    """What an address reaches (and what it is suppressed for)."""

    EMAIL = "email"
    SMS = "sms"


class AddressError(ClarionError, ValueError):
    """An address that cannot be read; the message says why and what a good one looks like."""


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
#: A plain ASCII address: dot-atom local part, LDH domain labels, an alphabetic top-level label.
_PLAIN = re.compile(
    rf"(?P<local>{_ATEXT}(?:\.{_ATEXT})*)@"
    r"(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
)


def email(raw: str) -> str:
    """The normalised form of one email address (email-validator's), or AddressError with its reason.

    A plain ASCII address (most of any audience) is checked by email-validator's rules for its shape,
    which leave the local part as it is, and its domain is checked by email-validator once per distinct
    domain (`_domain`): the same answer, without running the IDNA checks once per contact. Anything else
    goes through email-validator whole."""
    text = raw.strip()
    plain = _PLAIN.fullmatch(text)
    if plain is not None and len(plain["local"]) <= 64 and len(text) <= 254:
        domain = _domain(plain["domain"])
        if domain is not None:
            return f"{plain['local']}@{domain}"
    try:
        return str(validate_email(text, check_deliverability=False).normalized)
    except EmailNotValidError as exc:
        raise AddressError(f"{raw!r} is not a valid email address: {exc}") from None


@functools.lru_cache(maxsize=4096)
def _domain(domain: str) -> str | None:
    """email-validator's normal form of a domain, or None when it refuses it (the caller then asks it about
    the whole address, for its reason)."""
    try:
        return str(validate_email(f"x@{domain}", check_deliverability=False).domain)
    except EmailNotValidError:
        return None


def email_key(raw: str) -> str:
    """How emails are matched and suppressed: the address lower-cased whole (not validated)."""
    return raw.strip().lower()


def phone(raw: str, region: str = "US", *, strict: bool = True) -> str:
    """`raw` in E.164; `strict` asks for a valid number, otherwise a possible one is enough."""
    import phonenumbers  # here: a command that never reads a phone number does not load its tables

    text = raw.strip()
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise AddressError(f"{raw!r} is not a phone number (use E.164, e.g. +15551234567)") from None
    ok = phonenumbers.is_valid_number(number) if strict else phonenumbers.is_possible_number(number)
    if not ok:
        what = "valid" if strict else "possible"
        raise AddressError(f"{raw!r} is not a {what} phone number (use E.164, e.g. +14155552671)")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class PhoneShaped:
    """Whether a text is a valid phone number in one of `regions`: what a contact id must not be.

    Contact ids go to providers as metadata, so one that is a phone number leaks it; but many CRMs' ids are
    numbers too (NGP VAN's, Shopify's), and "seven or more digits" took them for phone numbers and refused
    the whole audience. phonenumbers decides; as parsing costs about 20 us, a bare run of digits is parsed
    only when its length is one a number of these regions can have written without a '+' (nationally, with
    the national prefix, or with the country code: 10 or 11 digits in the US, where a 9-digit VAN id is
    not parsed at all) or when it starts with 0 (a national prefix, or 00 dialling out)."""

    def __init__(self, regions: Iterable[str]) -> None:
        self.regions = tuple(dict.fromkeys(regions)) or ("US",)

    @functools.cached_property
    def _bare(self) -> frozenset[int]:
        """The lengths a number of these regions can have as a bare run of digits."""
        import phonenumbers  # here: ids that look like no phone number never load its tables

        lengths: set[int] = set()
        for region in self.regions:
            meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
            if meta is None or meta.general_desc is None:
                continue
            prefixes = {"", meta.national_prefix or "", str(meta.country_code)}
            lengths |= {n + len(p) for n in meta.general_desc.possible_length for p in prefixes}
        return frozenset(lengths)

    def __call__(self, text: str) -> bool:
        if not _PHONE_SHAPE.match(text):
            return False
        if text.isdigit() and len(text) not in self._bare and not text.startswith("0"):
            return False
        for region in self.regions:
            try:
                phone(text, region)  # a valid number there, as a channel would read it
            except AddressError:
                continue
            return True
        return False


#: What a phone number can look like written out: digits, maybe a leading +, spaces, dots, dashes, brackets.
_PHONE_SHAPE = re.compile(r"\+?[\d\s().-]{7,}\Z")


def suppression_form(kind: AddressKind | str, raw: str, region: str = "US") -> str:
    """The form an address typed by a person (or sent by a provider) is suppressed and matched under."""
    if AddressKind(kind) is AddressKind.EMAIL:
        return email_key(email(raw))
    return phone(raw, region, strict=False)


def stored_form(kind: AddressKind | str, address: str) -> str:
    """The suppression form of an address a channel adapter already normalised (no parsing again)."""
    if kind == AddressKind.EMAIL:  # compared, not converted: this runs for every planned send
        return email_key(address)
    if kind == AddressKind.SMS:
        return address.strip()
    raise ValueError(f"{kind!r} is not an address kind (email, sms)")


def kind_of(raw: str) -> AddressKind:
    """An address's kind when the user did not say: an @ makes it an email address."""
    return AddressKind.EMAIL if "@" in raw else AddressKind.SMS


def address_key(secret: bytes, kind: AddressKind | str, address: str) -> str:
    """The key a send is counted under for frequency caps: no address in the ledger's sends."""
    return hmac.digest(secret, _key_message(kind, address), "sha256").hex()[:32]


def address_keys(secret: bytes) -> Callable[[AddressKind | str, str], str]:
    """`address_key(secret, ...)` for many addresses (planning keys every contact): the key is set up once
    per kind and each HMAC resumes from a copy of it, about two thirds of a one-shot HMAC's work. The same
    keys."""
    started: dict[str, hmac.HMAC] = {}

    def key(kind: AddressKind | str, address: str) -> str:
        kind = str(kind)
        try:
            mac = started[kind].copy()
        except KeyError:
            mac = started.setdefault(kind, hmac.new(secret, _key_message(kind, ""), "sha256")).copy()
        mac.update(address.encode())
        return mac.hexdigest()[:32]

    return key


def _key_message(kind: AddressKind | str, address: str) -> bytes:
    return f"clarion.address.v1\x00{kind}\x00{address}".encode()


__all__ = [
    "AddressError",
    "AddressKind",
    "PhoneShaped",
    "address_key",
    "address_keys",
    "email",
    "email_key",
    "kind_of",
    "phone",
    "stored_form",
    "suppression_form",
]
