"""Take docs/console.png: the console during the demo run (`make demo`'s `clarion run ... --console`).

    .venv/bin/python docs/console_screenshot.py [--out docs/console.png] [--wait 20]

Starts the demo run in its own CLARION_HOME (a temporary folder), reads the console's address and token
from what it prints, signs in with Debian's Chromium (Playwright), opens the run's page once messages are
going out, waits `--wait` seconds for results to come in, and takes a full-page screenshot.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs/console.png")
    parser.add_argument("--wait", type=float, default=20.0, help="seconds of results before the picture")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    home = tempfile.mkdtemp(prefix="clarion-shot-")
    env = {**os.environ, "CLARION_HOME": home}
    env.setdefault("PREFECT_HOME", str(REPO / ".clarion/prefect"))
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    demo = REPO / "examples/debate-night"
    command = [
        sys.executable, "-m", "clarion", "run", str(demo / "campaign.yaml"), "--sandbox",
        "--engage", str(demo / "engagement.yaml"), "--console", "--json",
    ]  # fmt: skip
    log = Path(home) / "run.log"
    with log.open("wb") as err:
        run = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err, cwd=REPO)
    try:
        found = None
        deadline = time.monotonic() + 300
        while found is None:
            if run.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the demo run printed no console address: {log.read_text()[-2000:]}")
            found = re.search(r"console at (\S+) \(sign in with token (\S+);", log.read_text())
            time.sleep(0.5)
        url, token = found.group(1), found.group(2)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", headless=True, args=FLAGS
            )
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(120_000)
            page.goto(url)
            page.get_by_label("Sign-in token").fill(token)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(url)
            page.locator("section.run h2 a").first.wait_for()
            page.locator("section.run h2 a").first.click()
            page.locator('#run-summary td.sent:not(:text("0"))').first.wait_for()
            time.sleep(args.wait)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
        print(f"wrote {args.out}")
    finally:
        run.terminate()
        run.wait(60)


if __name__ == "__main__":
    main()
