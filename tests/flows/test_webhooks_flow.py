"""The `clarion-webhooks` Prefect flow: one round of outbound events, as a deployment runs it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from clarion.flows.outbound import webhooks_out
from clarion.ledger import Click
from tests.conftest import CampaignDir
from tests.tracking.test_outbound_cli import RUN, SECRET, Receiver, planned, receiver  # noqa: F401

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_the_flow_queues_and_delivers_a_round(
    campaign_dir: CampaignDir,
    receiver: tuple[Receiver, str],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found, url = receiver
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    ledger = planned(campaign_dir, url)
    ledger.record(click_rows=[Click(RUN, "sms", "b", 2, datetime.now(UTC))])
    assert webhooks_out() == {"queued": 1, "delivered": 1, "failed": 0, "dead": 0}
    assert webhooks_out() == {"queued": 0, "delivered": 0, "failed": 0, "dead": 0}
    assert [(e["type"], e["channel"], e["contact"]) for e in found.events] == [("clicked", "sms", "c-003")]
