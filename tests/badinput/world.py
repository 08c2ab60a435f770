"""The state every case runs against, shared by the tests and the benchmark: a working folder with a
valid campaign, a ledger holding a planned run and a suppression (so that "nothing written" means
something), and the two HTTP services as `clarion serve` and `clarion sandbox` build them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.badinput import http
from tests.badinput.cli import Files
from tests.conftest import CampaignDir

RUN = "test-appeal-20261122t190000-ab12"
#: Variables that would let a case reach a real provider or a Prefect server.
CLEARED = ("PREFECT_API_URL", "SENDGRID_API_KEY", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "X_ACCESS_TOKEN")


@dataclass
class World:
    files: Files
    base: dict[str, str]  # a valid value per kind, for the parameters not under test
    watched: list[Path]  # CLARION_HOME, the working folder, the case files


def prepare(work: Path, files: Files) -> World:
    """Fill `work` (the current folder) and the ledger of CLARION_HOME; the environment is the caller's."""
    from clarion.base.consent import Kind, Reason
    from clarion.campaign.loader import load_campaign
    from clarion.engine.plan import plan_run
    from clarion.ledger import Ledger, Suppression

    campaign = CampaignDir(work / "campaign").campaign()
    ledger = Ledger.open()
    plan_run(ledger, load_campaign(campaign), RUN)  # base run ids name it: the bad value is the only fault
    ledger.suppress([Suppression(Kind.EMAIL.value, "gone@example.org", Reason.MANUAL.value, "test")])
    ledger.close()
    base = {
        "campaign": str(campaign),
        "identifier": RUN,
        "name": "ana",
        "text": "hello",
        "address": "ada@example.org",
        "region": "US",
        "currency": "USD",
        "duration": "60s",
        "json": "{}",
        "host": "127.0.0.1",
    }
    return World(files, base, [Path(os.environ["CLARION_HOME"]), work, files.root])


@contextmanager
def services(campaign_dir: CampaignDir) -> Iterator[dict[str, Any]]:
    """`clarion serve`'s app as the command builds it (tracking service + console) with every webhook
    key set, so that requests reach the signature checks, on a ledger holding a planned run; and the
    provider sandbox's app. Both called in-process (httpx's ASGI transport), lifespans run."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from clarion.base.settings import ClarionSettings, TrackingSettings
    from clarion.campaign.loader import load_campaign
    from clarion.console import build_console, mount
    from clarion.engine.plan import plan_run
    from clarion.ledger import Ledger
    from clarion.messages.links import LinkSigner
    from clarion.sandbox.routes import SandboxState
    from clarion.tracking import build_app
    from tests.tracking.conftest import CONVERSION_SECRET, TWILIO_TOKEN, AppClient, public_key_text

    ledger = Ledger(ClarionSettings().ledger_url())
    ledger.migrate()
    plan_run(ledger, load_campaign(campaign_dir.campaign()), RUN)
    keys = {
        "SENDGRID_WEBHOOK_PUBLIC_KEY": public_key_text(ec.generate_private_key(ec.SECP256R1())),
        "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
        "X_CONSUMER_SECRET": "x-consumer-secret-for-tests-000000",
    }
    settings = TrackingSettings(
        clarion_conversion_secret=CONVERSION_SECRET, clarion_rate_limit="off", clarion_reject_limit="off"
    )
    app = build_app(ledger, signer=LinkSigner.from_settings(), settings=settings, environ=keys)
    clients = {
        "serve": AppClient(mount(app, build_console(ledger))),
        "sandbox": AppClient(SandboxState().app),
    }
    try:
        yield clients
    finally:
        for client in clients.values():
            client.close()
        ledger.close()


def endpoints() -> list[http.Endpoint]:
    """Every endpoint of `clarion serve` (tracking service + console) and of `clarion sandbox`."""
    from clarion.console import build_console, mount
    from clarion.ledger import Ledger
    from clarion.sandbox.routes import SandboxState
    from clarion.tracking import build_app

    ledger = Ledger("sqlite://")
    serve = mount(build_app(ledger, environ={}), build_console(ledger))
    return http.endpoints(serve, "serve") + http.endpoints(SandboxState().app, "sandbox")


def send(client: Any, request: http.Request, endpoint: http.Endpoint, home: Path) -> http.Outcome:
    """One request, judged: its status, the tracebacks logged meanwhile, what it wrote."""
    import logging

    from tests.badinput.state import snapshot

    catcher = http.Tracebacks()
    logging.getLogger().addHandler(catcher)
    before = snapshot(home)
    try:
        response = client.request(
            request.method, request.url, content=request.body, headers=request.headers, timeout=30
        )
    finally:
        logging.getLogger().removeHandler(catcher)
    outcome = http.judge(endpoint, request, response.status_code, catcher.records)
    changes = before.changes(snapshot(home))
    if changes:
        outcome.problems.append("wrote: " + "; ".join(changes))
    outcome.body = response.text[:500]
    return outcome
