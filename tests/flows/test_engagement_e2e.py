"""The whole path: send through the sandbox, simulated recipients click and donate through the tracking
service (real HTTP, signed webhooks), then the report compares the variants. The better wording wins."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from clarion.analysis.report import build_report
from clarion.cli.runner import engaged
from clarion.flows.collect import collect
from clarion.flows.launch import launch
from clarion.ledger import Ledger
from clarion.sandbox import Sandbox
from tests.flows.conftest import CAMPAIGN, write_campaign

pytestmark = pytest.mark.usefixtures("prefect_server")

ENGAGEMENT = """\
seed: 3
delay_ms: {min: 0, max: 1}
channels:
  email: {delivered: 0.95, open: 0.3, click: {default: 0.05, b: 0.25}, convert: {default: 0.5}, amount: {mean: 20, sd: 5, min: 5, currency: USD}}
  sms: {delivered: 0.97, click: {default: 0.1}, convert: {default: 0.0}, amount: {mean: 10, sd: 1, min: 5, currency: USD}}
  x: {impressions: {default: 1000}, click: {default: 0.02}, convert: {default: 0.0}, amount: {mean: 10, sd: 1, min: 5, currency: USD}, likes: 0.01, reposts: 0.0, replies: 0.0, quotes: 0.0, bookmarks: 0.0}
"""


def test_clicks_events_and_conversions_reach_the_report(tmp_path: Path, providers: Sandbox) -> None:
    text = CAMPAIGN  # tracked: the campaign sets tracking.base_url
    path = write_campaign(tmp_path, 1200, text)
    engagement = tmp_path / "engagement.yaml"
    engagement.write_text(textwrap.dedent(ENGAGEMENT))
    with engaged(providers, engagement):
        launch(str(path), "e2e-run")
        stats = providers.wait_engaged(timeout=300)
        collect("e2e-run")
    assert stats["failures"] == 0, stats
    report = build_report(Ledger.open(), "e2e-run").as_dict()
    rows = {(c["channel"], r["variant"]): r for c in report["channels"] for r in c["rows"]}
    email = next(c for c in report["channels"] if c["channel"] == "email")
    assert email["exposure_basis"] == "delivered"
    for variant in ("a", "b"):
        row = rows[("email", variant)]
        assert 0.9 * row["sent"] <= row["delivered"] <= row["sent"]
    assert rows[("email", "b")]["clicks"] > 2 * rows[("email", "a")]["clicks"] > 0
    assert rows[("sms", "a")]["delivered"] > 0
    assert rows[("x", "a")]["exposures"] == 1000  # impressions, collected from the sandbox's X
    assert sum(r["conversions"] for r in rows.values()) == stats["conversions"]
    assert email["verdict"]["winner"] == "b"
