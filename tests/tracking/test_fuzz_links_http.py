"""GET and HEAD /c/{token} with whatever a link, a scanner or a forger puts in the path: a 302 to the run's
CTA page for a genuine token of the run, a 404 for anything else, never a 500.

test_clicks.py already sends percent-encoded arbitrary text with GET; this adds raw path segments (stray and
invalid percent escapes, dot segments, query and fragment separators), HEAD, genuine tokens altered by one
character, and tokens genuinely signed with the service's key for claims the run does not have.
"""

from __future__ import annotations

import string

import httpx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from clarion.messages.links import MAX_CONTACT, RUN_KEY_BYTES, LinkClaims, run_key
from tests.tracking.conftest import RUN, Tracked

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
CTA = "https://donate.example.org/appeal?"
TOKEN_ALPHABET = string.ascii_letters + string.digits + "-_"
CHANNELS, VARIANTS = ("x", "email", "sms"), ("a", "b")  # the fixture campaign's, in file order

methods = st.sampled_from(["GET", "HEAD"])
#: Stray and invalid percent escapes (an overlong NUL, a UTF-16 surrogate, past U+10FFFF), dot segments,
#: separators, and token-shaped runs of one letter.
ODD_PIECES = [
    *("%", "%f", "%zz", "%ff", "%c3%28", "%00", "%C0%80", "%0a", "%ED%A0%80", "%F4%90%80%80"),
    *("%2F", "%2e%2e", "..", "=", "%3D", "%20", "+", "?", "#", "/", ";"),
]
raw_segments = st.text(alphabet=TOKEN_ALPHABET + ".~!$&'()*+,;=:@%/?#[]\\ ", max_size=60) | st.lists(
    st.sampled_from([*ODD_PIECES, "A" * 27, "A" * 65]), max_size=6
).map("".join)
tokens = st.tuples(st.sampled_from(CHANNELS), st.sampled_from(VARIANTS), st.none() | st.integers(0, 3))


def clicks(tracked: Tracked) -> int:
    return sum(tracked.ledger.engagement(RUN).total_clicks.values())


def request(tracked: Tracked, method: str, path: str) -> httpx.Response:
    """The response, checked: 302 to the CTA page or 404 without a Location, nothing else."""
    response = tracked.client.request(method, path)
    assert response.status_code in (302, 404), (method, path, response.status_code, response.text)
    if response.status_code == 302:
        assert response.headers["location"].startswith(CTA)
    else:
        assert "location" not in response.headers
    return response


@FUZZ
@given(method=methods, segment=raw_segments)
@example(method="HEAD", segment="%ff%fe")
@example(method="GET", segment="..")
@example(method="GET", segment="")
def test_raw_path_segments_get_a_404_and_record_nothing(tracked: Tracked, method: str, segment: str) -> None:
    assert request(tracked, method, "/c/" + segment).status_code == 404
    assert clicks(tracked) == 0


@FUZZ
@given(
    method=methods,
    token=tokens,
    separator=st.sampled_from(["?", "#", "/", "%2F", ";", "%3F", "%00"]),
    junk=st.text(alphabet=TOKEN_ALPHABET + "%=&/?#", max_size=20),
)
def test_only_a_query_or_fragment_after_a_genuine_token_keeps_the_redirect(
    tracked: Tracked, method: str, token: tuple[str, str, int | None], separator: str, junk: str
) -> None:
    genuine = tracked.token(*token)
    response = request(tracked, method, f"/c/{genuine}{separator}{junk}")
    assert response.status_code == (302 if separator in "?#" else 404)


@FUZZ
@given(
    method=methods,
    token=tokens,
    how=st.sampled_from(["substitute", "truncate", "extend", "insert", "delete"]),
    at=st.integers(0, 26),
    char=st.sampled_from(TOKEN_ALPHABET),
)
def test_a_genuine_token_altered_by_one_character_gets_a_404(
    tracked: Tracked, method: str, token: tuple[str, str, int | None], how: str, at: int, char: str
) -> None:
    genuine = tracked.token(*token)
    at %= len(genuine)
    if how == "substitute":
        altered = genuine[:at] + (char if char != genuine[at] else "~") + genuine[at + 1 :]
    elif how == "truncate":
        altered = genuine[:at] or "A"
    elif how == "extend":
        altered = genuine + char
    elif how == "insert":
        altered = genuine[:at] + char + genuine[at:]
    else:
        altered = genuine[:at] + genuine[at + 1 :]
    assert request(tracked, method, f"/c/{altered}").status_code == 404
    assert clicks(tracked) == 0


@FUZZ
@given(
    method=methods,
    ours=st.booleans(),
    other_run=st.binary(min_size=RUN_KEY_BYTES, max_size=RUN_KEY_BYTES),
    channel=st.integers(0, 0xFF),
    variant=st.integers(0, 0xFF),
    contact=st.none() | st.integers(0, MAX_CONTACT - 1),
)
@example(method="GET", ours=True, other_run=b"\0" * 5, channel=2, variant=1, contact=MAX_CONTACT - 1)
@example(method="GET", ours=True, other_run=b"\0" * 5, channel=3, variant=0, contact=None)
def test_signed_claims_redirect_only_when_they_name_the_runs_channel_and_variant(
    tracked: Tracked,
    method: str,
    ours: bool,
    other_run: bytes,
    channel: int,
    variant: int,
    contact: int | None,
) -> None:
    run = run_key(RUN) if ours else other_run
    token = tracked.renderer.signer.sign(LinkClaims(run, channel, variant, contact))
    genuine = run == run_key(RUN) and channel < len(CHANNELS) and variant < len(VARIANTS)
    before = clicks(tracked)
    response = request(tracked, method, f"/c/{token}")
    assert response.status_code == (302 if genuine else 404)
    assert clicks(tracked) - before == (1 if genuine and method == "GET" else 0)
    if genuine:
        assert f"utm_source={CHANNELS[channel]}" in response.headers["location"]
        assert f"utm_content={VARIANTS[variant]}" in response.headers["location"]
