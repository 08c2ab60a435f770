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
from clarion.engine.outcome import RunOutcome


@contextlib.contextmanager
def sandbox_environment(port: int = 0) -> Iterator[Any]:
    """Start the provider sandbox in this process and point every adapter at it with dummy credentials."""
    from clarion.sandbox import Sandbox

    with Sandbox(port=port) as box:
        environment, cleared = box.environment(), box.cleared_variables()
        saved = {k: os.environ.get(k) for k in (*environment, *cleared)}
        os.environ.update(environment)
        for name in cleared:
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

    The sandbox's emulators sign their webhooks as the providers do (SendGrid with the sandbox's own key,
    Twilio with the dummy auth token), and the conversions are signed with a secret made up here; the
    service is given exactly those, so every request goes through the same verification as in production.
    Yields the service's URL.
    """
    import yaml

    from clarion.base.serving import BackgroundServer
    from clarion.base.settings import TrackingSettings
    from clarion.ledger import Ledger
    from clarion.tracking import build_app

    try:
        config = yaml.safe_load(engagement.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ClarionError(f"{engagement}: cannot read the engagement file ({exc})") from None
    if not isinstance(config, dict):
        raise ClarionError(f"{engagement}: expected a mapping of engagement settings")
    conversion_secret = secrets.token_urlsafe(32)
    webhook_keys = box.webhook_environment()
    settings = TrackingSettings(
        clarion_conversion_secret=conversion_secret,
        # every simulated recipient comes from this machine's address: no per-client limits here
        clarion_rate_limit="off",
        clarion_reject_limit="off",
    )
    with BackgroundServer(build_app(Ledger.open(), settings=settings, environ=webhook_keys)) as server:
        try:
            box.set_engagement(
                {
                    **config,
                    "tracking_url": server.url,
                    "conversion_secret": conversion_secret,
                    "secrets": webhook_keys,
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
        from clarion.ledger import Ledger

        self.run_id, self.interval = run_id, interval
        self.ledger = Ledger.open()
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
        from clarion.ledger.results import channel_totals, run_results

        for channel, t in channel_totals(run_results(self.ledger, self.run_id)).items():
            detail = f"sent {t.sent:,}  failed {t.failed:,}  uncertain {t.uncertain:,}"
            if channel not in self._tasks:
                self._tasks[channel] = self.progress.add_task(channel, total=t.due, detail=detail)
            self.progress.update(self._tasks[channel], total=t.due, completed=t.done, detail=detail)


def run_campaign(
    campaign_path: str,
    run_id: str,
    *,
    resend_uncertain: bool,
    console: Console | None,
    quiet_prefect: bool = True,
    approved_by: str | None = None,
    retry_failed: bool = False,
) -> RunOutcome:
    """Run the launch flow in this process (Prefect's ephemeral server unless PREFECT_API_URL is set)."""
    if quiet_prefect:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from clarion.flows.launch import launch

    def go() -> RunOutcome:
        outcome: RunOutcome = launch(
            campaign_path, run_id, resend_uncertain, approved_by=approved_by, retry_failed=retry_failed
        )
        return outcome

    try:
        if console is None:
            result = go()
        else:
            with LedgerProgress(run_id, console):
                result = go()
    except ClarionError:
        raise
    return result
