"""Tracked links: UTM parameters, and tokens that verify and cannot be forged."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from clarion.channels.base import ChannelKind
from clarion.messages.links import TOKEN_PARAM, LinkClaims, LinkSigner, cta_url, message_link, run_key

signer = LinkSigner(b"k" * 32)
RUN = run_key("debate-20261122-ab12")


@pytest.mark.parametrize("contact", [0, 1, 127, 128, 16_383, 16_384, 2_000_000], ids=str)
def test_token_round_trip(contact: int) -> None:
    claims = LinkClaims(RUN, 2, 1, contact)
    assert signer.verify(signer.sign(claims)) == claims


def test_tokens_are_compact_and_carry_no_contact_data() -> None:
    token = signer.sign(LinkClaims(RUN, 2, 1, 9_999))
    assert len(token) <= 27
    assert token.isascii() and all(c.isalnum() or c in "-_" for c in token)


def test_social_token_has_no_contact() -> None:
    claims = LinkClaims(RUN, 0, 1)
    assert signer.verify(signer.sign(claims)) == claims


def test_token_from_another_key_is_rejected() -> None:
    token = LinkSigner(b"other-key" * 4).sign(LinkClaims(RUN, 2, 1, 5))
    assert signer.verify(token) is None


def test_every_single_bit_flip_is_rejected() -> None:
    token = signer.sign(LinkClaims(RUN, 2, 1, 5))
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    for i in range(len(raw) * 8):
        flipped = bytearray(raw)
        flipped[i // 8] ^= 1 << (i % 8)
        forged = base64.urlsafe_b64encode(bytes(flipped)).rstrip(b"=").decode()
        assert signer.verify(forged) is None


@pytest.mark.parametrize(
    "token",
    ["", ".", "abc", "abc.def", "a" * 600, "!!!.???", "AAAAAAAAAAAAAAAAAAAAAAAAAAA", "=" * 20],
    ids=["empty", "dot", "short", "garbage", "oversized", "bad-base64", "zeros", "padding"],
)
def test_malformed_tokens_are_rejected(token: str) -> None:
    assert signer.verify(token) is None


def test_payload_of_one_token_with_the_tag_of_another_is_rejected() -> None:
    def raw(token: str) -> bytes:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))

    one = raw(signer.sign(LinkClaims(RUN, 2, 1, 5)))
    two = raw(signer.sign(LinkClaims(RUN, 2, 1, 6)))
    spliced = base64.urlsafe_b64encode(one[:9] + two[9:]).rstrip(b"=").decode()
    assert signer.verify(spliced) is None


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


def test_processes_starting_together_agree_on_one_generated_key(tmp_path: Path) -> None:
    """Without CLARION_SECRET_KEY, the key generated in CLARION_HOME: a launch and its send helper (or a
    first run beside `clarion serve`) that generate it at the same moment sign with the same key."""
    import subprocess
    import sys

    home = tmp_path / "home"
    script = (
        "import sys, time\n"
        "from clarion.base.settings import ClarionSettings\n"
        "settings = ClarionSettings()\n"
        "time.sleep(max(0.0, float(sys.argv[1]) - time.time() - 0.05))\n"
        "while time.time() < float(sys.argv[1]): pass\n"
        "print(settings.signing_key().decode())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CLARION_SECRET_KEY"}
    env["CLARION_HOME"] = str(home)
    start = f"{time.time() + 3:.3f}"  # all of them imported by then, racing for the file
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, start], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(8)
    ]
    results = [proc.communicate(timeout=60) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [err.decode()[-500:] for _, err in results]
    keys = {out.decode().strip() for out, _ in results}
    assert len(keys) == 1 and len(keys.pop()) >= 32
    assert [p.name for p in home.iterdir()] == ["secret.key"]
