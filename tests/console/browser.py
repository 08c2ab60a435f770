"""Chromium for the console's browser tests: Debian's chromium driven by Playwright, axe-core for
accessibility, and a screenshot of the page kept when a test fails.

Skipped when chromium (or Playwright, or axe-core) is missing, unless CLARION_REQUIRE_CHROMIUM is set (CI):
then a missing piece is an error. `make test` installs chromium (`make browser`) and axe-core (`make axe`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
AXE = REPO / "tests/console/node_modules/axe-core/axe.min.js"
ARTIFACTS = REPO / ".clarion/test-artifacts/console"  # screenshots of failed browser tests
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]


def missing() -> str | None:
    if CHROMIUM is None:
        return "chromium is not installed (make browser)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (make install)"
    if not AXE.is_file():
        return "axe-core is not installed (make axe)"
    return None


def require() -> Any:
    """The module's pytestmark: skip, or fail in CI, when something is missing."""
    why = missing()
    if why and os.environ.get("CLARION_REQUIRE_CHROMIUM"):
        raise RuntimeError(f"CLARION_REQUIRE_CHROMIUM is set but {why}")
    return pytest.mark.skipif(why is not None, reason=why or "")


def accessibility_problems(page: Any) -> list[str]:
    """axe-core's violations on the page as it is now (WCAG 2 A and AA: labels, contrast, names, roles)."""
    page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate(
        "async () => await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', "
        "'wcag21a', 'wcag21aa', 'best-practice']}})"
    )
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {', '.join(n['target'][0] for n in v['nodes'][:3])}"
        for v in result["violations"]
    ]


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
