"""The console over HTTP (httpx's ASGI transport): who gets in, what the others see, forms and headers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from clarion.base.consent import Reason
from clarion.base.settings import ConsoleSettings
from clarion.console.auth import COOKIE, session_id
from clarion.ledger import Ledger, Suppression
from tests.console.conftest import Operator, console_client

ADDRESS = "ada.lovelace@example.org"


def test_nothing_but_the_sign_in_form_without_signing_in(ledger: Ledger, operator: Operator) -> None:
    ledger.suppress([Suppression("email", ADDRESS, Reason.UNSUBSCRIBE_LINK, "tracking:/u")])
    for path in ("/console/", "/console/approvals", "/console/suppressions", "/console/runs/x"):
        answer = operator.client.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/console/sign-in", path
        assert "ada" not in answer.text
    assert operator.client.get("/console/live/runs").status_code == 401
    refused = operator.post("/console/suppressions", {"address": ADDRESS, "csrf": "x"})
    assert refused.status_code == 303 and ADDRESS not in refused.text
    form = operator.client.get("/console/sign-in")
    assert form.status_code == 200 and 'for="token"' in form.text
    assert operator.client.get("/console").headers["location"] == "/console/"


def test_a_token_signs_in_and_only_its_hash_is_kept(ledger: Ledger, operator: Operator) -> None:
    signed = operator.sign_in()
    assert signed.status_code == 303 and signed.headers["location"] == "/console/"
    cookie = signed.cookies[COOKIE]
    set_cookie = signed.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie and "path=/console" in set_cookie
    page = operator.client.get("/console/")
    assert page.status_code == 200 and "Sign out" in page.text and "ana" in page.text
    [user] = ledger.console_users()
    secret = operator.token.rsplit("_", 1)[1]
    assert secret not in user.token_hash and user.token_hash.startswith("scrypt$")
    assert ledger.session(session_id(cookie), datetime.now(UTC)) is not None
    assert ledger.session(cookie, datetime.now(UTC)) is None  # the cookie itself is not stored


def test_a_wrong_token_is_refused_and_repeated_tries_are_limited(operator: Operator) -> None:
    operator.token = operator.token[:-4] + "AAAA"
    first = operator.sign_in()
    assert first.status_code == 401 and "not valid" in first.text
    answers = [operator.sign_in().status_code for _ in range(11)]
    assert answers[-1] == 429
    assert operator.client.get("/console/").status_code == 303


def test_forms_need_the_sessions_token_and_this_origin(ledger: Ledger, operator: Operator) -> None:
    ledger.suppress([Suppression("email", ADDRESS, Reason.SPAM_REPORT, "sendgrid:email")])
    operator.sign_in()
    csrf = operator.csrf("/console/suppressions")
    assert operator.post("/console/suppressions", {"address": ADDRESS}).status_code == 403
    assert operator.post("/console/suppressions", {"address": ADDRESS, "csrf": "forged"}).status_code == 403
    other = operator.client.post(
        "/console/suppressions",
        data={"address": ADDRESS, "csrf": csrf},
        headers={"origin": "https://evil.example"},
    )
    assert other.status_code == 403
    cross = operator.post(
        "/console/suppressions", {"address": ADDRESS, "csrf": csrf}, **{"sec-fetch-site": "cross-site"}
    )
    assert cross.status_code == 403
    found = operator.post("/console/suppressions", {"address": "Ada.Lovelace@Example.org", "csrf": csrf})
    assert found.status_code == 200
    assert f"{ADDRESS} is suppressed" in found.text and "spam report" in found.text
    clear = operator.post("/console/suppressions", {"address": "+14155550100", "csrf": csrf})
    assert "+14155550100 is not suppressed" in clear.text
    bad = operator.post("/console/suppressions", {"address": "not an address", "csrf": csrf})
    assert "is not a" in bad.text


def test_security_headers_on_every_answer(operator: Operator) -> None:
    for path in ("/console/sign-in", "/console/", "/console/static/console.js"):
        headers = operator.client.get(path).headers
        csp = headers["content-security-policy"]
        assert "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
        assert "access-control-allow-origin" not in headers
    assert operator.client.get("/console/sign-in").headers["cache-control"] == "no-store"


def test_sessions_expire_and_sign_out_ends_them(ledger: Ledger, operator: Operator) -> None:
    cookie = operator.sign_in().cookies[COOKIE]
    assert operator.client.get("/console/").status_code == 200
    later = datetime.now(UTC) + timedelta(hours=8, minutes=1)
    assert ledger.session(session_id(cookie), later) is None  # CLARION_CONSOLE_SESSION_HOURS, default 8
    csrf = operator.csrf()
    assert operator.post("/console/sign-out", {"csrf": csrf}).status_code == 303
    assert operator.client.get("/console/").status_code == 303
    assert ledger.session(session_id(cookie), datetime.now(UTC)) is None


def test_a_new_token_ends_the_old_one_and_its_sessions(ledger: Ledger, operator: Operator) -> None:
    from clarion.console import issue_token

    operator.sign_in()
    new = issue_token(ledger, "ana", replace=True)
    assert operator.client.get("/console/").status_code == 303
    assert operator.sign_in().status_code == 401
    operator.token = new
    assert operator.sign_in().status_code == 303


def test_the_proxys_user_header_counts_only_from_a_trusted_proxy(ledger: Ledger) -> None:
    header = "X-Forwarded-User"
    trusted = ConsoleSettings(clarion_console_user_header=header, clarion_console_trusted_proxies="127.0.0.1")
    with console_client(ledger, trusted) as proxied:
        page = proxied.get("/console/", headers={header: "bea"})
        assert page.status_code == 200 and "bea" in page.text
        assert proxied.get("/console/").status_code == 303  # the proxy's session needs the proxy's header
    elsewhere = ConsoleSettings(
        clarion_console_user_header=header, clarion_console_trusted_proxies="10.0.0.0/8"
    )
    with console_client(ledger, elsewhere) as direct:
        assert direct.get("/console/", headers={header: "bea"}).status_code == 303


def test_a_header_without_trusted_proxies_is_a_clear_error(ledger: Ledger) -> None:
    import pytest

    from clarion.base.errors import ClarionError
    from clarion.console import build_console

    with pytest.raises(ClarionError, match="CLARION_CONSOLE_TRUSTED_PROXIES"):
        build_console(ledger, settings=ConsoleSettings(clarion_console_user_header="X-User"))


def test_the_live_stream_sends_the_runs_fragment(operator: Operator) -> None:
    operator.sign_in()
    with operator.client.stream("GET", "/console/live/runs") as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        seen = ""
        for chunk in events.iter_text():
            seen += chunk
            if "runs-table" in seen:
                break
    assert "event: fragment" in seen and "No runs yet" in seen


def test_unknown_origin_is_refused_at_sign_in(operator: Operator) -> None:
    csrf = operator.csrf("/console/sign-in")
    answer = operator.client.post(
        "/console/sign-in",
        data={"csrf": csrf, "token": operator.token},
        headers={"origin": "https://evil.example"},
    )
    assert answer.status_code == 403
