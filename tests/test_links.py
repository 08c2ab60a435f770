"""Tracked links: UTM parameters, and tokens that verify and cannot be forged."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from channels.base import ChannelKind
from clarion.links import TOKEN_PARAM, LinkClaims, LinkSigner, cta_url, message_link

signer = LinkSigner(b"k" * 32)


def test_token_round_trip() -> None:
    claims = LinkClaims("run-1", "sms", "urgent", "c-001")
    assert signer.verify(signer.sign(claims)) == claims


def test_social_token_has_no_contact() -> None:
    claims = LinkClaims("run-1", "x", "urgent")
    assert signer.verify(signer.sign(claims)) == claims


def test_token_from_another_key_is_rejected() -> None:
    token = LinkSigner(b"other-key" * 4).sign(LinkClaims("run-1", "sms", "urgent", "c-001"))
    assert signer.verify(token) is None


@pytest.mark.parametrize(
    "token",
    ["", ".", "abc", "abc.def", "a" * 600, "!!!.???", "cnVuLTE.", ".AAAA"],
    ids=["empty", "dot", "no-mac", "garbage", "oversized", "bad-base64", "empty-mac", "empty-body"],
)
def test_malformed_tokens_are_rejected(token: str) -> None:
    assert signer.verify(token) is None


def test_altered_payload_is_rejected() -> None:
    token = signer.sign(LinkClaims("run-1", "sms", "urgent", "c-001"))
    forged = signer.sign(LinkClaims("run-1", "sms", "urgent", "c-002"))
    mixed = forged.split(".")[0] + "." + token.split(".")[1]
    assert signer.verify(mixed) is None


def test_cta_url_keeps_page_params_and_sets_utm() -> None:
    url = cta_url(
        "https://donate.example.org/debate?ref=tv&utm_source=old#give",
        campaign="debate",
        channel="sms",
        kind=ChannelKind.SMS,
        variant="urgent",
        token="TOKEN",
    )
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert (parts.scheme, parts.netloc, parts.path, parts.fragment) == (
        "https",
        "donate.example.org",
        "/debate",
        "give",
    )
    assert query == {
        "ref": ["tv"],
        "utm_source": ["sms"],
        "utm_medium": ["sms"],
        "utm_campaign": ["debate"],
        "utm_content": ["urgent"],
        TOKEN_PARAM: ["TOKEN"],
    }


def test_message_link_goes_through_tracking_when_configured() -> None:
    common = {"cta": "https://a.org/p", "campaign": "c", "channel": "email", "kind": ChannelKind.EMAIL}
    assert message_link(tracking_base="https://go.example.org", variant="v", token="T", **common) == (
        "https://go.example.org/c/T"
    )
    assert message_link(tracking_base=None, variant="v", token="T", **common).startswith("https://a.org/p?")
