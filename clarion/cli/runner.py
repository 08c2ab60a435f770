"""`clarion run` behind the CLI: the optional in-process sandbox, progress bars fed by the ledger, the flow.

Progress is read from the ledger (what was really sent), not from the flow, so the bars are right whatever
runs the tasks.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from clarion.base.errors import ClarionError
from clarion.base.runtime import startup_left_out
from clarion.engine.outcome import RunOutcome

SETTLE_MARGIN = 10.0  # seconds past the provider timeout (CLARION_HTTP_TIMEOUT) a request may take


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


@dataclass
class LocalService:
    """The tracking service (and console) a sandbox run serves in this process."""

    url: str
    console_token: str | None = None


@contextlib.contextmanager
def local_service(box: Any, engagement: Path | None, *, console: bool = False) -> Iterator[LocalService]:
    """The tracking service in this process; with `engagement`, the sandbox's simulated recipients use it,
    and with `console`, the operators' console is served at its /console with a one-off sign-in token
    (kept in memory only: it ends with this process).

    The sandbox's emulators sign their webhooks as the providers do (SendGrid with the sandbox's own key,
    Twilio with the dummy auth token), and the conversions are signed with a secret made up here; the
    service is given exactly those, so every request goes through the same verification as in production.
    """

    from clarion.base.serving import BackgroundServer
    from clarion.base.settings import TrackingSettings
    from clarion.ledger import Ledger
    from clarion.tracking import build_app

    config: dict[str, Any] = {}
    if engagement is not None:
        from clarion.base.files import read_mapping

        config = read_mapping(engagement, "a YAML file of engagement settings (see README)")
    conversion_secret = secrets.token_urlsafe(32)
    webhook_keys = box.webhook_environment()
    settings = TrackingSettings(
        clarion_conversion_secret=conversion_secret,
        # every simulated recipient comes from this machine's address: no per-client limits here
        clarion_rate_limit="off",
        clarion_reject_limit="off",
    )
    ledger = Ledger.open()
    app = build_app(ledger, settings=settings, environ=webhook_keys)
    token = None
    if console:
        from clarion.console import build_console, mount

        token = f"demo-{secrets.token_urlsafe(24)}"
        mount(app, build_console(ledger, extra_tokens={token: "demo"}))
    with BackgroundServer(app, timeout_graceful_shutdown=1) as server:
        if engagement is not None:
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
            yield LocalService(server.url, token)
        finally:
            if engagement is not None:
                box.set_engagement(None)


@contextlib.contextmanager
def engaged(box: Any, engagement: Path) -> Iterator[str]:
    """The tracking service in this process and the sandbox's simulated recipients using it; yields its
    URL (`local_service` with an engagement file and no console)."""
    with local_service(box, engagement) as service:
        yield service.url


class _Display(Progress):
    """Bars per channel, and under them one line per thing the run waits for."""

    def __init__(self, *columns: Any, **options: Any) -> None:
        self.notes: list[str] = []  # before Progress.__init__, which renders once
        super().__init__(*columns, **options)

    def get_renderables(self) -> Iterator[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        if self.notes:
            yield Text("\n".join(self.notes))


class LedgerProgress:
    """Progress bars per channel, refreshed from the ledger in a background thread, with what the run
    waits for: texts deferred to their recipients' local hours (until when, in UTC and local time), steps
    not yet due, an approval nobody gave yet (engine/waiting.py)."""

    EXPLAIN_EVERY = 2.0  # seconds between looks at what the run waits for (a few more queries)

    def __init__(self, run_id: str, console: Console, interval: float = 0.3) -> None:
        from clarion.engine.waiting import Explainer
        from clarion.ledger import Ledger

        self.run_id, self.interval = run_id, interval
        self.ledger = Ledger.open()
        self.explainer = Explainer(self.ledger)
        self.progress = _Display(
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
        self._waits: Any = None
        self._explained = 0.0

    def __enter__(self) -> LedgerProgress:
        self.progress.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop refreshing and leave the last state on screen (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(Exception):  # never hide the run's own outcome behind a display problem
            self.refresh(explain=True)
        self.progress.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):  # a not-yet-planned run or a busy database: try again
                self.refresh()

    def refresh(self, explain: bool = False) -> None:
        from clarion.ledger.results import channel_totals, run_results

        totals = channel_totals(run_results(self.ledger, self.run_id))
        now = time.monotonic()
        if explain or now - self._explained >= self.EXPLAIN_EVERY:
            self._explained = now
            self._waits = self.explainer.explain(self.run_id)
        waits = self._waits
        for channel, t in totals.items():
            detail = f"sent {t.sent:,}  failed {t.failed:,}  uncertain {t.uncertain:,}"
            if waits is not None and waits.deferred.get(channel):
                detail += f"  {waits.channel_text(channel, limit=1)}"
            if channel not in self._tasks:
                self._tasks[channel] = self.progress.add_task(channel, total=t.due, detail=detail)
            self.progress.update(self._tasks[channel], total=t.due, completed=t.done, detail=detail)
        if waits is not None:
            self.progress.notes = [line for line in waits.lines() if not _is_deferral(line, totals)]


def _is_deferral(line: str, channels: Any) -> bool:
    """Deferrals already show beside their channel's bar."""
    return any(line.startswith(f"{channel}: deferred") for channel in channels)


def run_campaign(
    campaign_path: str,
    run_id: str,
    *,
    resend_uncertain: bool,
    console: Console | None,
    quiet_prefect: bool = True,
    approved_by: str | None = None,
    retry_failed: bool = False,
    child_runs: tuple[str, ...] = (),
) -> RunOutcome:
    """Run the launch flow in this process (Prefect's ephemeral server unless PREFECT_API_URL is set).

    SIGINT and SIGTERM stop it cleanly (clarion/cli/interrupt.py): raises `Interrupted` once what was in
    flight settled and the run is marked `interrupted`; a lost Prefect server raises it too."""
    if quiet_prefect:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from clarion.channels.base import ProviderSettings
    from clarion.cli.interrupt import (
        FlowThread,
        Interrupted,
        Stopper,
        lost_server_message,
        mark_interrupted,
        prefect_unreachable,
    )
    from clarion.flows.heartbeat import prompt_heartbeats
    from clarion.flows.launch import coordination_for, launch

    coordination = coordination_for(run_id)  # a send pool's is shared with its shards through Redis

    def run_launch() -> RunOutcome:
        with prompt_heartbeats(launch) as launching:  # the run ends when its last line ran, not up to 1 s on
            return launching(
                campaign_path,
                run_id,
                resend_uncertain,
                approved_by=approved_by,
                retry_failed=retry_failed,
                coordination=coordination,
            )

    flow = FlowThread(run_launch)
    try:
        settle = ProviderSettings().timeout + SETTLE_MARGIN
    except ValueError:  # a bad CLARION_HTTP_TIMEOUT is reported by the adapters, with its name
        settle = 20.0 + SETTLE_MARGIN
    display = LedgerProgress(run_id, console) if console is not None else None
    with Stopper(coordination) as stopper, startup_left_out():
        if display is not None:
            display.__enter__()
        try:
            flow.start()
            ended = flow.wait(stopper, settle)
        finally:
            if display is not None:
                display.stop()
    runs = [run_id, *child_runs]
    if stopper.signum is not None:
        why = f"{stopper.name} received"
        if not ended or flow.error is not None:
            mark_interrupted(runs, why)
        elif isinstance(flow.result, RunOutcome) and flow.result.completed:
            return flow.result  # everything was sent before the signal mattered
        raise Interrupted(run_id, why, stopper.exit_code, abandoned=not ended)
    if flow.error is not None:
        if prefect_unreachable(flow.error):
            why = lost_server_message(flow.error)
            mark_interrupted(runs, why)
            raise Interrupted(run_id, why, 1) from None
        raise flow.error
    result: RunOutcome = flow.result
    return result
