"""Tracked-link tokens: whatever a link carries, verify answers claims or None, never an exception; and
every token sign() issues verifies back to exactly the claims it was signed with."""

from __future__ import annotations

import base64
import string

from hypothesis import example, given, settings
from hypothesis import strategies as st

from clarion.messages.links import (
    MAX_CONTACT,
    RUN_KEY_BYTES,
    LinkClaims,
    LinkSigner,
    contact_bytes,
    run_key,
)

FUZZ = settings(max_examples=400, deadline=None)
signer = LinkSigner(b"k" * 32)
TOKEN_ALPHABET = string.ascii_letters + string.digits + "-_"

in_range_claims = st.builds(
    LinkClaims,
    run=st.binary(min_size=RUN_KEY_BYTES, max_size=RUN_KEY_BYTES),
    channel=st.integers(0, 0xFF),
    variant=st.integers(0, 0xFF),
    contact=st.none() | st.integers(0, MAX_CONTACT - 1),
)
any_claims = st.builds(
    LinkClaims,
    run=st.binary(max_size=8),
    channel=st.integers(-(2**40), 2**40),
    variant=st.integers(-(2**40), 2**40),
    contact=st.none() | st.integers(-(2**70), 2**70),
)


@st.composite
def altered_tokens(draw: st.DrawFn) -> tuple[str, str]:
    """A genuine token and a copy with one character changed, cut short, or extended."""
    token = signer.sign(draw(in_range_claims))
    how = draw(st.sampled_from(["substitute", "truncate", "extend", "insert", "delete"]))
    at = draw(st.integers(0, len(token) - 1))
    if how == "substitute":
        new = draw(st.sampled_from(TOKEN_ALPHABET) | st.characters()).replace(token[at], "")
        altered = token[:at] + (new or "~") + token[at + 1 :]
    elif how == "truncate":
        altered = token[:at]
    elif how == "extend":
        altered = token + draw(st.text(alphabet=TOKEN_ALPHABET, min_size=1, max_size=8) | st.text(min_size=1))
    elif how == "insert":
        altered = (
            token[:at] + draw(st.sampled_from([*TOKEN_ALPHABET, "=", ".", "+", "/", " ", "\n"])) + token[at:]
        )
    else:
        altered = token[:at] + token[at + 1 :]
    return token, altered


@FUZZ
@given(token=st.text(max_size=80) | st.text(alphabet=TOKEN_ALPHABET + "=+/.", max_size=80))
@example(token="é" * 27)  # non-ASCII: the base64 decoder raises ValueError, not binascii.Error
@example(token="A" * 27 + "=")
def test_arbitrary_text_is_rejected_without_raising(token: str) -> None:
    assert signer.verify(token) is None


@FUZZ
@given(raw=st.binary(max_size=60), urlsafe=st.booleans(), padded=st.booleans())
def test_arbitrary_base64_is_rejected_without_raising(raw: bytes, urlsafe: bool, padded: bool) -> None:
    encoded = (base64.urlsafe_b64encode if urlsafe else base64.standard_b64encode)(raw).decode()
    assert signer.verify(encoded if padded else encoded.rstrip("=")) is None


@FUZZ
@given(pair=altered_tokens())
def test_a_changed_truncated_or_extended_token_is_rejected(pair: tuple[str, str]) -> None:
    genuine, altered = pair
    assert altered != genuine
    assert signer.verify(altered) is None


@FUZZ
@given(claims=in_range_claims)
@example(claims=LinkClaims(run_key("debate-20261122-ab12"), 0xFF, 0xFF, MAX_CONTACT - 1))
def test_every_signed_token_round_trips_to_its_claims(claims: LinkClaims) -> None:
    token = signer.sign(claims)
    assert len(token) <= 32
    assert set(token) <= set(TOKEN_ALPHABET)
    assert signer.verify(token) == claims


def _raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


@FUZZ
@given(contact=st.integers(0, MAX_CONTACT - 1))
@example(contact=0x7F)
@example(contact=0x80)
@example(contact=0x3FFF)
@example(contact=0x4000)
@example(contact=0x1FFFFF)
@example(contact=0x200000)
def test_contact_bytes_is_what_a_contacts_position_adds_to_their_token(contact: int) -> None:
    """Validation checks one message per token length (`Renderer.check_key`): the length it expects must be
    the one the contact's token has."""
    run, tokens = run_key("r"), signer.contact_tokens(run_key("r"), 1, 2)
    assert tokens(contact) == signer.sign(LinkClaims(run, 1, 2, contact))
    assert signer.verify(tokens(contact)) == LinkClaims(run, 1, 2, contact)
    assert contact_bytes(contact) == len(_raw(tokens(contact))) - len(_raw(tokens(0))) + 1


@FUZZ
@given(claims=any_claims)
@example(claims=LinkClaims(b"r" * RUN_KEY_BYTES, 0, 0, -1))  # looped forever in _varint
@example(claims=LinkClaims(b"r" * RUN_KEY_BYTES, 0, 0, MAX_CONTACT))  # signed, then failed to verify
@example(claims=LinkClaims(b"r" * (RUN_KEY_BYTES - 1), 0, 0, 200))  # verified as other claims
def test_sign_refuses_claims_a_token_cannot_carry_and_round_trips_the_rest(claims: LinkClaims) -> None:
    try:
        token = signer.sign(claims)
    except ValueError:
        assert (
            len(claims.run) != RUN_KEY_BYTES
            or not 0 <= claims.channel <= 0xFF
            or not 0 <= claims.variant <= 0xFF
            or (claims.contact is not None and not 0 <= claims.contact < MAX_CONTACT)
        )
    else:
        assert signer.verify(token) == claims


@FUZZ
@given(claims=in_range_claims, key=st.binary(min_size=32, max_size=32).filter(lambda k: k != b"k" * 32))
def test_a_token_signed_with_another_key_is_rejected(claims: LinkClaims, key: bytes) -> None:
    # keys of one length: HMAC pads a short key with zero bytes, so b"k" * 32 + b"\0" is the same key
    assert signer.verify(LinkSigner(key).sign(claims)) is None


@FUZZ
@given(
    claims=any_claims.filter(lambda c: c.contact is not None)
    | in_range_claims.filter(lambda c: c.contact is not None),
    key=st.binary(max_size=200),
)
@example(claims=LinkClaims(b"r" * RUN_KEY_BYTES, 0, 0, MAX_CONTACT), key=b"k" * 32)
@example(claims=LinkClaims(b"r" * RUN_KEY_BYTES, 255, 255, 0), key=b"k" * 65)  # a key over SHA-256's block
def test_contact_tokens_are_the_tokens_sign_makes(claims: LinkClaims, key: bytes) -> None:
    """A send's tokens (`contact_tokens`, HMAC resumed from a copy) are sign()'s, byte for byte, and refused
    for the same claims."""
    one = LinkSigner(key)
    assert claims.contact is not None
    try:
        expected: str | None = one.sign(claims)
    except ValueError:
        expected = None
    try:
        got: str | None = one.contact_tokens(claims.run, claims.channel, claims.variant)(claims.contact)
    except ValueError:
        got = None
    assert got == expected
