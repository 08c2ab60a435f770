"""The collect flow: pull the public metrics of a run's social posts into the ledger, on a schedule.

`clarion collect RUN_ID` runs it once; `--every 15m` serves it as a Prefect deployment with an interval
schedule (visible in the Prefect UI), so reach and engagement keep arriving beside clicks while a post lives.
Each pull is a snapshot (a `metrics` event per post and time); the report shows the newest.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from prefect import flow, get_run_logger

from clarion.base.errors import ClarionError
from clarion.campaign.loader import load_campaign
from clarion.channels.base import ChannelKind, ProviderError
from clarion.engine.context import make_adapter
from clarion.flows.artifacts import publish_report
from clarion.ledger import Ledger, ProviderEvent, RunNotFound, SendState
from clarion.ledger.events import METRICS


@flow(name="clarion-collect", flow_run_name="collect-{run_id}", log_prints=False)
def collect(run_id: str) -> dict[str, int]:
    """Record the current public metrics of every post the run published; returns impressions per post."""
    logger = get_run_logger()
    store = Ledger.open()
    record = store.get_run(run_id)
    if record is None:
        raise RunNotFound(run_id)
    loaded = load_campaign(record.campaign_file)
    found: dict[str, int] = {}
    now = datetime.now(UTC)
    for cid, config in loaded.campaign.channels.items():
        adapter = make_adapter(loaded, cid)
        if adapter.kind is not ChannelKind.SOCIAL or not hasattr(adapter, "public_metrics"):
            continue
        posts = {
            row.provider_id: row.variant
            for row in store.sends(run_id, cid, SendState.SENT)
            if row.provider_id
        }
        if not posts:
            continue
        try:
            metrics = adapter.public_metrics(sorted(posts))
        except ProviderError as exc:
            raise ClarionError(f"channel {cid}: {exc.message}") from None
        events = [
            ProviderEvent(
                event_key=f"{config.provider}:{post_id}:metrics:{now.isoformat()}",
                run_id=run_id,
                channel=cid,
                variant=posts[post_id],
                contact_seq=None,
                kind=METRICS,
                at=now,
                provider_id=post_id,
                detail=json.dumps(values, sort_keys=True),
            )
            for post_id, values in metrics.items()
        ]
        store.record(event_rows=events)
        for post_id, values in metrics.items():
            found[post_id] = values.get("impression_count", 0)
        logger.info("channel %s: metrics of %d post(s) recorded", cid, len(events))
    publish_report(store, run_id)
    return found
