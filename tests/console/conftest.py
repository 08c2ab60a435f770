"""Fixtures for the console: a ledger with a run in several states, an operator's token, the app."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from clarion.base.serving import BackgroundServer
from clarion.base.settings import ClarionSettings, ConsoleSettings
from clarion.console import build_console, issue_token, mount
from clarion.ledger import Ledger
from clarion.tracking import build_app


@dataclass
class Operator:
    client: httpx.Client
    token: str

    def csrf(self, path: str = "/console/") -> str:
        page = self.client.get(path)
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found, page.text[:500]
        return found.group(1)

    def post(self, path: str, data: dict[str, str], **headers: str) -> httpx.Response:
        base = {"origin": str(self.client.base_url).rstrip("/"), "sec-fetch-site": "same-origin"}
        return self.client.post(path, data=data, headers={**base, **headers})

    def sign_in(self) -> httpx.Response:
        csrf = self.csrf("/console/sign-in")
        return self.post("/console/sign-in", {"csrf": csrf, "token": self.token})


@pytest.fixture
def ledger() -> Ledger:
    return Ledger.open(ClarionSettings().ledger_url())


@contextlib.contextmanager
def console_client(ledger: Ledger, settings: ConsoleSettings | None = None) -> Iterator[httpx.Client]:
    """The tracking service with the console mounted, served on 127.0.0.1, and a client of it."""
    app = mount(build_app(ledger), build_console(ledger, settings=settings))
    with (
        BackgroundServer(app, name="console") as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        yield client


@pytest.fixture
def operator(ledger: Ledger) -> Iterator[Operator]:
    token = issue_token(ledger, "ana")
    with console_client(ledger) as client:
        yield Operator(client, token)


# -- the browser ------------------------------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the test item, so the page fixture knows whether the test failed."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Chromium through Playwright's sync API, for one test module: while Playwright runs, the main thread
    has its event loop running, which makes Prefect's sync-or-async calls return coroutines and asyncio.run
    refuse to start in every later test, so it stops when the module ends."""
    from playwright.sync_api import sync_playwright

    from tests.console.browser import CHROMIUM, FLAGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page; a screenshot is kept if the test fails, under
    .clarion/test-artifacts/console/. Content-Security-Policy violations fail the test."""
    from tests.console.browser import screenshot

    context = chromium.new_context(viewport={"width": 1200, "height": 900})
    context.set_default_timeout(20_000)
    page = context.new_page()
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    yield page
    failed = getattr(request.node, "report_call", None)
    if failed is not None and failed.failed:
        print(f"screenshot: {screenshot(page, request.node.name)}")
    context.close()
    assert not refused, f"the page broke its Content-Security-Policy: {refused}"
