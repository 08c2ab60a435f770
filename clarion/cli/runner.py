"""`clarion run` behind the CLI: the optional in-process sandbox, progress bars fed by the ledger, the flow.

Progress is read from the ledger (what was really sent), not from the flow, so the bars are right whatever
runs the tasks.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from clarion.base.errors import ClarionError

SANDBOX_CREDENTIALS = {
    "SENDGRID_API_KEY": "SG.sandbox-key",
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_AUTH_TOKEN": "sandbox-token",
    "X_ACCESS_TOKEN": "sandbox-x-token",
}
SANDBOX_URLS = ("CLARION_SENDGRID_URL", "CLARION_TWILIO_URL", "CLARION_X_URL")


@contextlib.contextmanager
def sandbox_environment(port: int = 0) -> Iterator[Any]:
    """Start the provider sandbox in this process and point every adapter at it with dummy credentials."""
    from clarion.sandbox import Sandbox

    saved = {
        k: os.environ.get(k) for k in (*SANDBOX_CREDENTIALS, *SANDBOX_URLS, "TWILIO_EDGE", "TWILIO_REGION")
    }
    with Sandbox(port=port) as box:
        os.environ.update(SANDBOX_CREDENTIALS)
        for name in SANDBOX_URLS:
            os.environ[name] = box.url
        for name in ("TWILIO_EDGE", "TWILIO_REGION", "X_API_KEY", "X_API_SECRET", "X_ACCESS_TOKEN_SECRET"):
            os.environ.pop(name, None)
        try:
            yield box
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@contextlib.contextmanager
def engaged(box: Any, engagement: Path) -> Iterator[str]:
    """The tracking service in this process, and the sandbox's simulated recipients using it.

    The sandbox signs its SendGrid events with its own key, its Twilio callbacks with the dummy auth token
    and its conversions with a secret made up here; the service is given exactly those, so every request
    goes through the same verification as in production. Yields the service's URL.
    """
    import yaml

    from clarion.base.serving import BackgroundServer
    from clarion.base.settings import TrackingSettings
    from clarion.flows.launch import ledger
    from clarion.tracking import build_app

    try:
        config = yaml.safe_load(engagement.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ClarionError(f"{engagement}: cannot read the engagement file ({exc})") from None
    if not isinstance(config, dict):
        raise ClarionError(f"{engagement}: expected a mapping of engagement settings")
    conversion_secret = secrets.token_urlsafe(32)
    settings = TrackingSettings(
        sendgrid_webhook_public_key=box.sendgrid_public_key,
        twilio_auth_token=SANDBOX_CREDENTIALS["TWILIO_AUTH_TOKEN"],
        clarion_conversion_secret=conversion_secret,
        # every simulated recipient comes from this machine's address: no per-client limits here
        clarion_rate_limit="off",
        clarion_reject_limit="off",
    )
    with BackgroundServer(build_app(ledger(), settings=settings)) as server:
        try:
            box.set_engagement(
                {
                    **config,
                    "tracking_url": server.url,
                    "conversion_secret": conversion_secret,
                    "twilio_auth_token": SANDBOX_CREDENTIALS["TWILIO_AUTH_TOKEN"],
                }
            )
        except ValueError as exc:
            raise ClarionError(f"{engagement}: {exc}") from None
        try:
            yield server.url
        finally:
            box.set_engagement(None)


class LedgerProgress:
    """Progress bars per channel, refreshed from the ledger in a background thread."""

    def __init__(self, run_id: str, console: Console, interval: float = 0.3) -> None:
        self.run_id, self.interval = run_id, interval
        self.progress = Progress(
            TextColumn("{task.description:>10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="clarion-progress", daemon=True)
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> LedgerProgress:
        self.progress.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(Exception):  # never hide the run's own outcome behind a display problem
            self.refresh()
        self.progress.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):  # a not-yet-planned run or a busy database: try again
                self.refresh()

    def refresh(self) -> None:
        from clarion.flows.launch import ledger
        from clarion.ledger.results import run_results

        totals: dict[str, dict[str, int]] = {}
        for r in run_results(ledger(), self.run_id):
            t = totals.setdefault(
                r.channel, {"planned": 0, "done": 0, "sent": 0, "failed": 0, "uncertain": 0}
            )
            t["planned"] += r.planned - r.skipped
            t["done"] += r.sent + r.failed + r.uncertain
            t["sent"] += r.sent
            t["failed"] += r.failed
            t["uncertain"] += r.uncertain
        for channel, t in totals.items():
            detail = f"sent {t['sent']:,}  failed {t['failed']:,}  uncertain {t['uncertain']:,}"
            if channel not in self._tasks:
                self._tasks[channel] = self.progress.add_task(channel, total=t["planned"], detail=detail)
            self.progress.update(self._tasks[channel], total=t["planned"], completed=t["done"], detail=detail)


def run_campaign(
    campaign_path: str,
    run_id: str,
    *,
    resend_uncertain: bool,
    console: Console | None,
    quiet_prefect: bool = True,
    approved_by: str | None = None,
) -> dict[str, Any]:
    """Run the launch flow in this process (Prefect's ephemeral server unless PREFECT_API_URL is set)."""
    if quiet_prefect:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from clarion.flows.launch import launch

    try:
        if console is None:
            result: dict[str, Any] = launch(campaign_path, run_id, resend_uncertain, approved_by=approved_by)
        else:
            with LedgerProgress(run_id, console):
                result = launch(campaign_path, run_id, resend_uncertain, approved_by=approved_by)
    except ClarionError:
        raise
    return result
