"""Email addresses: the plain-ASCII fast path gives email-validator's answer, address by address."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from clarion.base.addresses import AddressError, AddressKind, address_key, address_keys, email

LOCAL = st.text(alphabet=st.sampled_from(list("abcXYZ019.!#$%&'*+/=?^_`{|}~-\"@ é")), min_size=0, max_size=70)
LABEL = st.text(alphabet=st.sampled_from(list("abcXYZ019-_é")), min_size=0, max_size=66)
DOMAIN = st.one_of(
    st.lists(LABEL, min_size=1, max_size=4).map(".".join),
    st.sampled_from(
        [
            "example.org",
            "localhost",
            "b.test",
            "x.local",
            "xn--bcher-kva.example",
            "123.com",
            "a.c0m",
            "EXAMPLE.ORG",
            "a" * 63 + ".com",
            "a" * 64 + ".com",
            "x.invalid",
            "x.onion",
            "a.b.arpa",
        ]
    ),
)


def _reference(raw: str) -> str | None:
    try:
        return str(validate_email(raw.strip(), check_deliverability=False).normalized)
    except EmailNotValidError:
        return None


def _ours(raw: str) -> str | None:
    try:
        return email(raw)
    except AddressError:
        return None


@settings(max_examples=1500, deadline=None)
@given(local=LOCAL, domain=DOMAIN)
def test_every_address_gets_email_validators_answer(local: str, domain: str) -> None:
    raw = f"{local}@{domain}"
    assert _ours(raw) == _reference(raw)


@pytest.mark.parametrize(
    "raw", ["a" * 64 + "@example.org", "a" * 65 + "@example.org", "x@" + ".".join(["a" * 60] * 4) + ".org"]
)
def test_lengths_are_email_validators(raw: str) -> None:
    assert _ours(raw) == _reference(raw)


@settings(max_examples=300, deadline=None)
@given(
    secret=st.binary(min_size=1, max_size=80),
    pairs=st.lists(
        st.tuples(st.sampled_from([*AddressKind, "email", "sms"]), st.text(max_size=40)), max_size=8
    ),
)
def test_planning_keys_every_address_as_the_one_shot_key_does(
    secret: bytes, pairs: list[tuple[AddressKind | str, str]]
) -> None:
    """Frequency caps count sends under these keys across runs and processes: the resumed HMAC planning
    uses must give exactly the one-shot key, whatever the kind, address and order."""
    keys = address_keys(secret)
    for kind, address in pairs:
        assert keys(kind, address) == address_key(secret, kind, address)
