"""Long-running services: the tracking service (serve) and the provider sandbox (sandbox)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

import typer

from clarion.base.errors import ClarionError
from clarion.cli import params
from clarion.cli.app import command_group, err, out, user_errors

commands = command_group()


def _check_address(host: str, port: int) -> None:
    """Bind the address once before anything is opened or written: a port in use or a host that does not
    resolve is said plainly (exit 1), not by the server after the ledger was created (exit 3)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ClarionError(
            f"--host {host!r}: cannot be resolved ({exc}); use an address of this machine"
        ) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise ClarionError(
                f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port, or stop what uses it"
            ) from None


@commands.command("sandbox")
@user_errors
def sandbox_command(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port on 127.0.0.1.")] = 8025,
    faults: Annotated[
        Path | None,
        typer.Option(
            help="YAML or JSON file of fault settings per provider.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ] = None,
    engage: Annotated[
        Path | None,
        typer.Option(
            "--engage",
            help="Engagement settings (YAML, with tracking_url and the webhook secrets): simulated "
            "recipients click and convert through the tracking service at tracking_url.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ] = None,
) -> None:
    """Serve the provider sandbox (SendGrid, Twilio, X emulators) until Ctrl-C."""
    _check_address("127.0.0.1", port)
    from clarion.base.files import read_mapping
    from clarion.sandbox import EngagementConfig, serve
    from clarion.sandbox.routes import SandboxState

    config: dict[str, Any] | None = None
    if faults is not None:
        config = read_mapping(faults, "a YAML file of fault settings per provider (see README)")
        try:
            SandboxState(config)  # checked as the sandbox will read them
        except ValueError as exc:
            raise ClarionError(f"{faults}: {exc}") from None
    engagement = None
    if engage is not None:
        settings = read_mapping(engage, "a YAML file of engagement settings (see README)")
        try:
            engagement = EngagementConfig.load(settings)
        except ValueError as exc:
            raise ClarionError(f"{engage}: {exc}") from None
    err.print(f"provider sandbox on http://127.0.0.1:{port}/ (Ctrl-C to stop)", markup=False)
    serve(host="127.0.0.1", port=port, faults=config, engagement=engagement)


@commands.command()
@user_errors
def serve(
    host: Annotated[
        str, typer.Option(parser=params.HOST, help="Interface to listen on (0.0.0.0 behind a proxy).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8765,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request.")] = False,
    responders: Annotated[
        list[Path] | None,
        typer.Option(
            "--responders",
            help="Responder files (repeat the option for several): answer the texts and DMs people send.",
        ),
    ] = None,
    console: Annotated[
        bool, typer.Option("--console/--no-console", help="Serve the operators' console at /console.")
    ] = True,
    webhooks: Annotated[
        bool,
        typer.Option(
            "--webhooks/--no-webhooks",
            help="Deliver the campaigns' outbound events (webhooks_out) from this process.",
        ),
    ] = True,
) -> None:
    """Serve the tracking service: tracked links, SendGrid/Twilio/X webhooks and conversions, into the
    ledger; with --responders, answer people who text or DM you; and the operators' console at /console
    (sign in with `clarion console add-user NAME`'s token).

    Keys come from the environment: CLARION_SECRET_KEY (links), SENDGRID_WEBHOOK_PUBLIC_KEY,
    TWILIO_AUTH_TOKEN, X_CONSUMER_SECRET, CLARION_CONVERSION_SECRET; a webhook whose key is unset is
    refused. Replies go through the providers' APIs with their credentials (TWILIO_ACCOUNT_SID, X_*).
    Approving from the console needs PREFECT_API_URL (the server the runs wait on).
    """
    import logging
    import os

    import uvicorn
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    from clarion.console import build_console, mount
    from clarion.console.security import StashPeer
    from clarion.ledger import Ledger
    from clarion.responders.sender import make_adapter
    from clarion.responders.validation import validate_responder
    from clarion.tracking import build_app

    _check_address(host, port)
    loaded = [validate_responder(path).loaded for path in responders or []]
    for item in loaded:  # the reply credentials, checked before anyone writes in
        for cid, channel in item.responder.channels.items():
            make_adapter(cid, channel)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ledger = Ledger.open()
    tracking_app = build_app(ledger, responders=loaded)
    if console:
        mount(tracking_app, build_console(ledger))
    # uvicorn's own proxy-headers handling, inside StashPeer: the console checks the proxy itself
    trusted = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
    app = StashPeer(ProxyHeadersMiddleware(tracking_app, trusted_hosts=trusted))  # type: ignore[arg-type]
    err.print(f"tracking service on http://{host}:{port}/ (Ctrl-C to stop)", markup=False)
    for item in loaded:
        err.print(
            f"answering with responder {item.name} on {', '.join(item.responder.channels)}", markup=False
        )
    if console:
        err.print(f"console on http://{host}:{port}/console/", markup=False)
    worker = outbox_worker(ledger) if webhooks else None
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            access_log=access_log,
            proxy_headers=False,
            log_level="info",
            timeout_graceful_shutdown=5,  # live pages' streams end with the server
        )
    finally:
        if worker is not None:
            worker.stop()


def outbox_worker(ledger: Any) -> Any:
    """The outbound events' delivery, in a thread beside the service (clarion.tracking.outbound)."""
    import os

    from clarion.base.settings import TrackingSettings
    from clarion.tracking.outbound import OutboxWorker

    settings = TrackingSettings()
    worker = OutboxWorker(
        ledger,
        environ=os.environ,
        timeout=settings.clarion_webhooks_timeout,
        max_attempts=settings.clarion_webhooks_max_attempts,
    )
    worker.start()
    return worker


devstack_app = typer.Typer(help="A local production-shaped stack, for trying scale-out on one machine.")
commands.add_typer(devstack_app, name="devstack")


@devstack_app.command("up")
@user_errors
def devstack_up(
    workers: Annotated[int, typer.Option(min=1, max=32, help="Process workers in the send pool.")] = 2,
    database_url: Annotated[
        str,
        typer.Option(
            parser=params.DATABASE_URL,
            help="PostgreSQL for the ledger (the Prefect server gets a database beside it).",
        ),
    ] = "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    redis_url: Annotated[
        str, typer.Option(parser=params.REDIS_URL, help="Redis for the launches' shared coordination.")
    ] = ("redis://127.0.0.1:6379/0"),
    root: Annotated[
        Path, typer.Option(file_okay=False, help="Folder for the server's and workers' homes and logs.")
    ] = Path(".clarion/devstack"),
    sandbox: Annotated[
        bool, typer.Option("--sandbox", help="Also run the provider sandbox; every worker sends to it.")
    ] = False,
) -> None:
    """Start `prefect server` on PostgreSQL with Redis messaging, a process work pool with its send
    deployment, and WORKERS workers (each with homes of its own); print the environment to use. Ctrl-C
    stops them all."""
    import os
    import signal
    import threading

    from clarion.cli.stack import stack

    if not database_url.startswith(("postgresql", "postgres")):
        raise ClarionError(f"--database-url {database_url!r}: the send pool shares a PostgreSQL ledger")
    env = {k: v for k, v in os.environ.items() if k in ("CLARION_SECRET_KEY", "CLARION_HTTP_TIMEOUT")}
    with contextlib.ExitStack() as stack_:
        if sandbox:
            from clarion.sandbox import Sandbox

            box = stack_.enter_context(Sandbox(port=0))
            env.update(box.environment())
            err.print(f"provider sandbox at {box.url}", markup=False)
        env.setdefault("CLARION_SECRET_KEY", _secret_key())
        running = stack_.enter_context(
            stack(root, workers=workers, database_url=database_url, redis_url=redis_url, env=env)
        )
        err.print(
            f"prefect server at {running.api_url}; pool {running.pool!r} with {workers} workers", markup=False
        )
        err.print("in another shell, to send a campaign through the pool:", markup=False)
        for key in ("PREFECT_API_URL", "CLARION_DATABASE_URL", "CLARION_REDIS_URL", "CLARION_SEND_POOL"):
            out.print(f"export {key}={running.env[key]}", markup=False, highlight=False)
        out.print("export CLARION_SECRET_KEY=... (the same as the workers')", markup=False, highlight=False)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(1):
                pass
        except KeyboardInterrupt:
            pass
        err.print("stopping the workers and the server", markup=False)


def _secret_key() -> str:
    """The signing key every worker shares: CLARION_SECRET_KEY, else this home's generated one."""
    from clarion.base.settings import ClarionSettings

    return ClarionSettings().signing_key().decode()
