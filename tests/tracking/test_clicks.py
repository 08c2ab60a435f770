"""GET /c/{token}: a genuine token is counted once per contact and channel and redirects to the CTA page."""

from __future__ import annotations

from urllib.parse import parse_qs, quote, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clarion.messages.links import LinkClaims, LinkSigner, run_key
from tests.tracking.conftest import RUN, Tracked


def test_a_click_redirects_to_the_cta_with_its_utm_parameters(tracked: Tracked) -> None:
    token = tracked.token("email", "b", 1)
    response = tracked.client.get(f"/c/{token}")
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert (location.scheme, location.netloc, location.path) == ("https", "donate.example.org", "/appeal")
    assert parse_qs(location.query) == {
        "utm_source": ["email"],
        "utm_medium": ["email"],
        "utm_campaign": ["test-appeal"],
        "utm_content": ["b"],
        "ct": [token],
    }
    assert response.headers["cache-control"] == "no-store"


def test_clicks_are_unique_per_contact_and_channel_with_repeats_counted_apart(tracked: Tracked) -> None:
    for token in [tracked.token("email", "a", 0)] * 3 + [
        tracked.token("email", "a", 1),
        tracked.token("sms", "a", 0),
    ]:
        assert tracked.client.get(f"/c/{token}").status_code == 302
    found = tracked.ledger.engagement(RUN)
    assert found.unique_clicks == {("email", "a"): 2, ("sms", "a"): 1}
    assert found.total_clicks == {("email", "a"): 4, ("sms", "a"): 1}


def test_a_social_posts_link_counts_every_click(tracked: Tracked) -> None:
    token = tracked.token("x", "b", None)
    for _ in range(3):
        assert tracked.client.get(f"/c/{token}").status_code == 302
    assert tracked.ledger.engagement(RUN).total_clicks == {("x", "b"): 3}


def test_head_redirects_without_counting_a_click(tracked: Tracked) -> None:
    """Link scanners and unfurlers ask with HEAD; they are not people."""
    response = tracked.client.head(f"/c/{tracked.token('sms', 'b', 2)}")
    assert response.status_code == 302
    assert "utm_content=b" in response.headers["location"]
    assert tracked.ledger.engagement(RUN).total_clicks == {}


def test_forged_altered_and_foreign_tokens_get_a_404_and_record_nothing(tracked: Tracked) -> None:
    genuine = tracked.token("email", "a", 0)
    altered = genuine[:-1] + ("A" if genuine[-1] != "A" else "B")
    foreign = LinkSigner(b"another key entirely, 32 bytes long!").sign(LinkClaims(run_key(RUN), 1, 0, 0))
    unknown_run = tracked.renderer.signer.sign(LinkClaims(run_key("no-such-run"), 1, 0, 0))
    out_of_range = tracked.renderer.signer.sign(LinkClaims(run_key(RUN), 9, 0, 0))
    for token in (altered, foreign, unknown_run, out_of_range, "x", "A" * 500, "%00"):
        response = tracked.client.get(f"/c/{token}")
        assert response.status_code == 404, token
        assert "location" not in response.headers
        assert "not valid" in response.text
    assert tracked.ledger.engagement(RUN).total_clicks == {}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80))
def test_no_input_redirects_anywhere_but_the_cta_or_fails_with_a_500(tracked: Tracked, path: str) -> None:
    response = tracked.client.get("/c/" + quote(path, safe=""))
    assert response.status_code in (302, 404, 405)
    if response.status_code == 302:
        assert response.headers["location"].startswith("https://donate.example.org/appeal?")


def test_a_forged_token_is_logged_without_what_the_forger_chose(
    tracked: Tracked, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="clarion.tracking"):
        assert tracked.client.get("/c/" + quote("ab\ncd\x1b[31mFORGED", safe="")).status_code == 404
    [line] = [r.getMessage() for r in caplog.records if "forged" in r.getMessage()]
    assert "\n" not in line and "\x1b" not in line and "FORGED" not in line
