"""The HTML report, rendered by headless Chromium: the page shows the ledger's numbers."""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from clarion.analysis.report import build_report, render_html
from tests.report.conftest import RUN, Simulated

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]

if CHROMIUM is None and os.environ.get("CLARION_REQUIRE_CHROMIUM"):
    raise RuntimeError("CLARION_REQUIRE_CHROMIUM is set but chromium is not installed (make browser)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make browser)")


class Cells(HTMLParser):
    """Text of every <td class=...> per table row that has data-variant (or data-arm)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, str, dict[str, str]]] = []
        self._channel = ""
        self._cell: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and a.get("data-channel"):
            self._channel = a["data-channel"] or ""
        elif tag == "tr" and a.get("data-variant"):
            self.rows.append((self._channel, a["data-variant"] or "", {}))
        elif tag == "td" and a.get("class") and self.rows:
            self._cell = a["class"]

    def handle_data(self, data: str) -> None:
        if self._cell and self.rows:
            cells = self.rows[-1][2]
            cells[self._cell] = cells.get(self._cell, "") + data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = None


def dump_dom(page: Path, tmp_path: Path) -> str:
    assert CHROMIUM is not None
    result = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


def test_chromium_shows_the_numbers_of_the_run(simulated: Simulated, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(build_report(simulated.ledger, RUN)), encoding="utf-8")
    dom = dump_dom(page, tmp_path)
    parser = Cells()
    parser.feed(dom)
    shown = {(channel, variant): cells for channel, variant, cells in parser.rows}
    assert len(shown) == 6
    for (channel, variant), cells in shown.items():
        if channel == "x":
            continue
        delivered = simulated.delivered[(channel, variant)]
        clickers = simulated.clickers[(channel, variant)]
        assert cells["exposures"].strip() == f"{delivered:,}"
        assert cells["clicks"].strip() == f"{clickers:,}"
        assert cells["click-rate"].startswith(f"{clickers / delivered * 100:.1f}%")
    assert "<svg" in dom and "polyline" in dom  # the charts are in the rendered page
    assert "b beats" in dom or "winner" in dom


def test_a_screenshot_of_the_page_is_not_blank(simulated: Simulated, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(build_report(simulated.ledger, RUN)), encoding="utf-8")
    shot = tmp_path / "shot.png"
    assert CHROMIUM is not None
    subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1200,1600",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 20_000  # a page of tables and charts, not an empty white image
