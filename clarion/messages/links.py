"""Tracked links: the CTA URL with UTM parameters and a compact signed token.

A token names the run (by a 5-byte key derived from its id), the channel and variant (by their position in
the run's campaign, frozen in the ledger when the run is planned) and, for email and SMS, the contact (by
its position in the audience): no email address, phone number or contact id ever travels in a link. An
HMAC-SHA256 tag truncated to 80 bits lets the tracking service verify a token without a lookup and makes
forging or guessing one hopeless. The whole token is 27 characters for an audience under 16,384 contacts,
which matters in a 160-character SMS.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from clarion.base.settings import ClarionSettings
from clarion.channels.base import ChannelKind

TOKEN_PARAM = "ct"
KEEP_REFCODE_AS = "refcode2"  # where an ActBlue CTA's own refcode goes when the token takes `refcode`
RUN_KEY_BYTES = 5
_MAC_BYTES = 10
_CONTACT, _POST = 1, 2  # token kinds, the first byte
_DOMAIN = b"clarion.link.v1\x00"
MAX_TOKEN = 64
MAX_CONTACT = 1 << 35  # contact positions verify reads: a varint of at most 5 bytes


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def run_key(run_id: str) -> bytes:
    """The short key a token names its run by."""
    return hashlib.sha256(run_id.encode()).digest()[:RUN_KEY_BYTES]


def _varint(n: int) -> bytes:
    """`n` as a LEB128 varint: seven bits a byte, least significant first, the high bit set on all but the
    last. Audiences of up to about two million take three bytes at most, written out at once."""
    if n < 0x80:
        return bytes((n,))
    if n < 0x4000:
        return bytes((n & 0x7F | 0x80, n >> 7))
    if n < 0x200000:
        return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14))
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def contact_bytes(contact: int) -> int:
    """How many bytes a contact's position takes in a token (the token's length depends on nothing else):
    `len(_varint(contact))`, from the number's bit length."""
    return max(1, (contact.bit_length() + 6) // 7)


def _read_varint(data: bytes) -> tuple[int, int]:
    value = shift = 0
    for i, byte in enumerate(data[:5]):
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i + 1
        shift += 7
    raise ValueError("bad varint")


@dataclass(frozen=True)
class LinkClaims:
    """What a token says: run key, channel and variant positions, and the contact's position (or None)."""

    run: bytes
    channel: int
    variant: int
    contact: int | None = None


def _check(claims: LinkClaims) -> None:
    if (
        len(claims.run) != RUN_KEY_BYTES
        or not 0 <= claims.channel <= 0xFF
        or not 0 <= claims.variant <= 0xFF
        or (claims.contact is not None and not 0 <= claims.contact < MAX_CONTACT)
    ):
        raise ValueError(f"claims out of a token's range: {claims}")


class LinkSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def from_settings(cls, settings: ClarionSettings | None = None) -> LinkSigner:
        """The signer of this installation: CLARION_SECRET_KEY, else the key generated in CLARION_HOME."""
        return cls((settings or ClarionSettings()).signing_key())

    def _mac(self, payload: bytes) -> bytes:
        return hmac.digest(self._key, _DOMAIN + payload, "sha256")[:_MAC_BYTES]

    def sign(self, claims: LinkClaims) -> str:
        """The token for `claims`; ValueError for claims no token can carry (verify would misread them)."""
        _check(claims)
        kind = _POST if claims.contact is None else _CONTACT
        payload = bytes([kind]) + claims.run + bytes([claims.channel, claims.variant])
        if claims.contact is not None:
            payload += _varint(claims.contact)
        return _b64(payload + self._mac(payload))

    def contact_tokens(self, run: bytes, channel: int, variant: int) -> Callable[[int], str]:
        """`sign(LinkClaims(run, channel, variant, contact))` as a function of the contact, for a send's many
        contacts: what their claims share is checked and hashed once, and each token's HMAC resumes from a
        copy of it (`hmac.HMAC.copy`), about two thirds of a one-shot HMAC's work. The same tokens, the
        same errors."""
        _check(LinkClaims(run, channel, variant))
        prefix = bytes([_CONTACT]) + run + bytes([channel, variant])
        shared = hmac.new(self._key, _DOMAIN + prefix, "sha256")

        def token(contact: int) -> str:
            if not 0 <= contact < MAX_CONTACT:
                raise ValueError(
                    f"claims out of a token's range: {LinkClaims(run, channel, variant, contact)}"
                )
            position = _varint(contact)
            mac = shared.copy()
            mac.update(position)
            return _b64(prefix + position + mac.digest()[:_MAC_BYTES])

        return token

    def verify(self, token: str) -> LinkClaims | None:
        """The claims of a genuine token; None for anything forged, altered or malformed."""
        if not token or len(token) > MAX_TOKEN:
            return None
        try:
            raw = _unb64(token)
        except (binascii.Error, ValueError):
            return None
        if _b64(raw) != token:  # one token, one spelling: unused padding bits must be zero
            return None
        payload, tag = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if len(payload) < 1 + RUN_KEY_BYTES + 2 or not hmac.compare_digest(tag, self._mac(payload)):
            return None
        kind, run = payload[0], payload[1 : 1 + RUN_KEY_BYTES]
        channel, variant = payload[1 + RUN_KEY_BYTES], payload[2 + RUN_KEY_BYTES]
        rest = payload[3 + RUN_KEY_BYTES :]
        if kind == _POST and not rest:
            return LinkClaims(run, channel, variant)
        if kind == _CONTACT and rest:
            try:
                contact, used = _read_varint(rest)
            except ValueError:
                return None
            if used == len(rest):
                return LinkClaims(run, channel, variant, contact)
        return None


def cta_url(
    url: str,
    *,
    campaign: str,
    channel: str,
    kind: ChannelKind,
    variant: str,
    token: str,
    keep_refcode_as: str = KEEP_REFCODE_AS,
) -> str:
    """The CTA URL with Clarion's UTM parameters and token; the page's own parameters are kept.

    A donation platform's page also gets the token where the platform hands it back in its webhook
    (`platform_param`): ActBlue's `refcode` (the organiser's own refcode moves to `keep_refcode_as`,
    `refcode2` by default), Action Network's `source`, a Stripe Payment Link's `client_reference_id`."""
    parts = urlsplit(url)
    ours = {
        "utm_source": channel,
        "utm_medium": kind.value,
        "utm_campaign": campaign,
        "utm_content": variant,
        TOKEN_PARAM: token,
    }
    theirs = parse_qsl(parts.query, keep_blank_values=True)
    platform = platform_param(url)
    if platform is not None:
        ours[platform] = token
        if platform == "refcode" and keep_refcode_as and keep_refcode_as not in dict(theirs):
            theirs = [(keep_refcode_as if k == "refcode" else k, v) for k, v in theirs]
    query = [(k, v) for k, v in theirs if k not in ours]
    query.extend(ours.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


#: Donation pages whose webhooks hand back one URL parameter: the host (or a parent domain) -> parameter.
PLATFORM_PARAMS = {
    "actblue.com": "refcode",
    "actionnetwork.org": "source",
    "buy.stripe.com": "client_reference_id",
}


def platform_param(url: str) -> str | None:
    """The parameter a donation platform's webhook reports back for this page, if it is one's page."""
    host = (urlsplit(url).hostname or "").lower()
    for domain, param in PLATFORM_PARAMS.items():
        if host == domain or host.endswith("." + domain):
            return param
    return None


def click_link(tracking_base: str, token: str) -> str:
    """A message's link through the tracking service, which records the click and redirects to the CTA."""
    return f"{tracking_base}/c/{token}"


def unsubscribe_link(tracking_base: str, token: str) -> str:
    """An email's unsubscribe URL: the tracking service's page for the token (RFC 8058 one-click too)."""
    return f"{tracking_base}/u/{token}"


def message_link(
    *,
    cta: str,
    tracking_base: str | None,
    campaign: str,
    channel: str,
    kind: ChannelKind,
    variant: str,
    token: str,
    keep_refcode_as: str = KEEP_REFCODE_AS,
) -> str:
    """The link a message carries: through the tracking service when there is one, else the CTA itself."""
    if tracking_base:
        return click_link(tracking_base, token)
    return cta_url(
        cta,
        campaign=campaign,
        channel=channel,
        kind=kind,
        variant=variant,
        token=token,
        keep_refcode_as=keep_refcode_as,
    )
