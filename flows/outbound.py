"""The `clarion-webhooks` flow: one round of outbound events (fill the outbox from the ledger, deliver
what is due), for a Prefect deployment on an interval (`clarion webhooks deliver --prefect --every 30`).

The outbox is durable and idempotent (clarion.tracking.outbound), so a flow run that crashes loses
nothing and two flow runs at once deliver nothing twice to an endpoint that de-duplicates on the event id.
"""

from __future__ import annotations

import os

import httpx
from prefect import flow, get_run_logger

from clarion.base.settings import TrackingSettings
from clarion.ledger import Ledger
from clarion.tracking.outbound import deliver, fill


@flow(name="clarion-webhooks", flow_run_name="webhooks-out", log_prints=False)
def webhooks_out() -> dict[str, int]:
    """Queue the new events of the newest runs and post the due ones; returns the round's counts."""
    logger = get_run_logger()
    settings = TrackingSettings()
    ledger = Ledger.open()
    queued = fill(ledger)
    with httpx.Client(timeout=settings.clarion_webhooks_timeout) as client:
        done = deliver(
            ledger, client, environ=os.environ, max_attempts=settings.clarion_webhooks_max_attempts
        )
    counts = {"queued": queued, "delivered": done.delivered, "failed": done.failed, "dead": done.dead}
    logger.info("outbound events: %s", counts)
    return counts
