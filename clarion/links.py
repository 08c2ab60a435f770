"""Tracked links: the CTA URL with UTM parameters and a compact signed token.

The token names the run, channel, variant and (for email and SMS) the contact id, and carries a truncated
HMAC-SHA256 so that the tracking service can attribute a click without a database lookup and nobody can
forge or guess one. Contact ids travel in tokens, so they must be opaque ids, never emails or phone
numbers (validation enforces it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from channels.base import ChannelKind

TOKEN_PARAM = "ct"
_MAC_BYTES = 12  # 96 bits: forging one by chance is out of reach; keeps SMS links short
_SEP = "\x1f"
_DOMAIN = b"clarion.link.v1\x00"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class LinkClaims:
    run: str
    channel: str
    variant: str
    contact: str | None = None


class LinkSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, _DOMAIN + payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def sign(self, claims: LinkClaims) -> str:
        parts = (claims.run, claims.channel, claims.variant, claims.contact or "")
        payload = _SEP.join(parts).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def verify(self, token: str) -> LinkClaims | None:
        """The claims of a genuine token; None for anything forged, altered or malformed."""
        body, dot, mac = token.partition(".")
        if not dot or len(token) > 512:
            return None
        try:
            payload, given = _unb64(body), _unb64(mac)
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(given, self._mac(payload)):
            return None
        try:
            run, channel, variant, contact = payload.decode().split(_SEP)
        except (UnicodeDecodeError, ValueError):
            return None
        return LinkClaims(run, channel, variant, contact or None)


def cta_url(url: str, *, campaign: str, channel: str, kind: ChannelKind, variant: str, token: str) -> str:
    """The CTA URL with Clarion's UTM parameters and token; the page's own parameters are kept."""
    parts = urlsplit(url)
    ours = {
        "utm_source": channel,
        "utm_medium": kind.value,
        "utm_campaign": campaign,
        "utm_content": variant,
        TOKEN_PARAM: token,
    }
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ours]
    query.extend(ours.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def message_link(
    *,
    cta: str,
    tracking_base: str | None,
    campaign: str,
    channel: str,
    kind: ChannelKind,
    variant: str,
    token: str,
) -> str:
    """The link a message carries: through the tracking service when there is one, else the CTA itself."""
    if tracking_base:
        return f"{tracking_base}/c/{token}"
    return cta_url(cta, campaign=campaign, channel=channel, kind=kind, variant=variant, token=token)
