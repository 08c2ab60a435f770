"""The console in Chromium, as an operator uses it on debate night: sign in, approve a paused sandbox run
and watch its counts rise live, read its results, look up a suppressed address; with the keyboard alone
where it matters, and axe-core's accessibility checks on every page.

The run is a real `clarion run` process on the session's Prefect server, sending to an in-process sandbox;
the console is the tracking service with /console mounted, on the same ledger.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clarion.base.consent import Reason
from clarion.base.serving import BackgroundServer
from clarion.base.settings import ClarionSettings
from clarion.console import build_console, issue_token, mount
from clarion.ledger import Ledger, Suppression
from clarion.sandbox import Sandbox
from clarion.tracking import build_app
from tests.console.browser import accessibility_problems, require
from tests.flows.conftest import CAMPAIGN, write_campaign

pytestmark = require()

APPROVED = (
    CAMPAIGN.replace("name: flow-test", "name: console-test").replace(
        "    quiet_hours: null", "    quiet_hours: null\n    pacing: {messages_per_second: 12}"
    )
    + "approval: {required: true, approvers: [ana], timeout: 5m}\n"
)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(port=0) as box:
        yield box


@pytest.fixture
def console(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The console on this test's ledger, an operator's token, and the sandbox the runs send to."""
    from tests.conftest import point_adapters_at

    point_adapters_at(sandbox, monkeypatch, timeout=5)
    ledger = Ledger.open(ClarionSettings().ledger_url())
    token = issue_token(ledger, "ana")
    app = mount(build_app(ledger), build_console(ledger))
    with BackgroundServer(app, name="console", timeout_graceful_shutdown=1) as server:
        yield {"url": f"{server.url}/console/", "token": token, "ledger": ledger}


def sign_in(page: Any, console: dict[str, Any]) -> None:
    """With the keyboard: the token field is the first stop after the skip link and the brand."""
    page.goto(console["url"])
    assert page.url.endswith("/console/sign-in")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "token"
    page.keyboard.type(console["token"])
    page.keyboard.press("Enter")
    page.wait_for_url(console["url"])


def assert_accessible(page: Any) -> None:
    problems = accessibility_problems(page)
    assert not problems, "\n".join(problems)


def test_sign_in_approve_a_paused_run_and_watch_it_send(
    page: Any, console: dict[str, Any], sandbox: Sandbox, tmp_path: Path, prefect_server: str
) -> None:
    path = write_campaign(tmp_path, 150, APPROVED)
    run_id = "console-test-night-1"
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "CLARION_APPROVAL_POLL": "0.5"}
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        run = subprocess.Popen(
            [sys.executable, "-m", "clarion", "run", str(path), "--run-id", run_id, "--json"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
            start_new_session=True,
        )
    try:
        page.goto(console["url"])
        assert_accessible(page)  # the sign-in form
        sign_in(page, console)
        ledger: Ledger = console["ledger"]
        deadline = time.monotonic() + 90
        while (record := ledger.get_run(run_id)) is None or str(record.status) != "awaiting_approval":
            assert run.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the run never reached its approval gate"
            time.sleep(0.3)
        assert not sandbox.messages(), "sent before approval"

        page.get_by_role("link", name="Approvals").click()
        section = page.locator("section.approval")
        assert "Approve run console-test-night-1?" in section.inner_text()
        assert "OK sms" in section.inner_text() and "to send" in section.inner_text()
        assert section.locator("article.message").count() == 6  # x, email, sms x 2 variants
        assert_accessible(page)

        page.evaluate("window.clarionMarker = 'same page'")
        page.get_by_role("button", name="Approve and send").click()
        page.wait_for_url(f"**/console/runs/{run_id}")
        assert "Approved run" in page.locator(".flash").inner_text()
        page.evaluate("window.clarionMarker = 'same page'")
        sms = page.locator('#run-summary tr[data-channel="sms"] td.sent')
        state = page.locator("#run-summary .state")
        seen: list[int] = []
        # about 8 s of texts at 12/s, settled 25 at a time: generous for a loaded machine
        deadline = time.monotonic() + 150
        while True:
            value = int(sms.inner_text().replace(",", ""))
            if not seen or value != seen[-1]:
                seen.append(value)
            if state.inner_text() == "completed" and seen[-1] == int(sms.inner_text().replace(",", "")):
                break
            assert time.monotonic() < deadline, f"sms counts seen: {seen}"
            time.sleep(0.1)
        texts = len([m for m in sandbox.messages() if m["provider"] == "twilio"])
        sent = sum(1 for _ in ledger.sends(run_id, "sms", "sent"))
        assert seen[-1] == sent > 10, "the page's last count is not the ledger's"
        # a text whose answer comes too late (a loaded machine) is uncertain, not sent, though the sandbox
        # has it: the page once showed 106 against 108 at the sandbox, in a CI run under load 5-9
        uncertain = sum(1 for _ in ledger.sends(run_id, "sms", "uncertain"))
        assert sent <= texts <= sent + uncertain, (
            f"{texts} texts at the sandbox, {sent} sent, {uncertain} uncertain"
        )
        assert any(0 < v < texts for v in seen), f"the counts did not rise live: {seen}"
        assert seen == sorted(seen)
        assert page.evaluate("window.clarionMarker") == "same page", "the page was reloaded"
        page.locator("#run-report .verdict").first.wait_for()
        assert_accessible(page)
    finally:
        if run.poll() is None:
            run.terminate()
        run.wait(60)


def test_look_up_a_suppressed_address_with_the_keyboard(page: Any, console: dict[str, Any]) -> None:
    console["ledger"].suppress(
        [Suppression("sms", "+14155552671", Reason.SMS_STOP, "twilio:inbound", "SM123")]
    )
    sign_in(page, console)
    assert_accessible(page)  # the runs page, empty
    page.get_by_role("link", name="Suppressions").click()
    page.get_by_label("Email address or phone number").focus()
    page.keyboard.type("(415) 555-2671")
    page.keyboard.press("Enter")
    result = page.locator("#lookup-result")
    assert "+14155552671 is suppressed for sms" in result.inner_text()
    assert "sms stop" in result.inner_text()
    assert_accessible(page)
    page.get_by_label("Email address or phone number").fill("someone@example.org")
    page.get_by_role("button", name="Look up").click()
    assert "someone@example.org is not suppressed" in page.locator("#lookup-result").inner_text()


def test_readable_on_a_phone(chromium: Any, console: dict[str, Any], tmp_path: Path) -> None:
    context = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        page.goto(console["url"])
        page.get_by_label("Sign-in token").fill(console["token"])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(console["url"])
        for name in ("Approvals", "Suppressions", "Runs"):
            with page.expect_navigation():  # evaluated mid-navigation, the document can be null
                page.get_by_role("link", name=name).click()
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{name}: the page is {overflow}px wider than the phone"
    finally:
        context.close()
