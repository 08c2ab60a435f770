"""The collect flow: a run's posts' public metrics, read from X (the sandbox) into the ledger."""

from __future__ import annotations

from pathlib import Path

import pytest

from clarion.flows.collect import collect
from clarion.flows.launch import launch
from clarion.ledger import Ledger
from clarion.sandbox import Sandbox
from tests.flows.conftest import write_campaign

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_the_newest_metrics_of_each_post_are_recorded_per_variant(tmp_path: Path, providers: Sandbox) -> None:
    path = write_campaign(tmp_path, 40)
    launch(str(path), "collect-test")
    posts = {m["text"].split(" http")[0]: m["provider_id"] for m in providers.messages("x")}
    assert len(posts) == 2
    providers.set_metrics(posts["Chip in now."], impression_count=1200, like_count=30)
    providers.set_metrics(posts["Join the supporters."], impression_count=900, like_count=12)
    assert sorted(collect("collect-test").values()) == [900, 1200]

    providers.set_metrics(posts["Chip in now."], impression_count=1500, like_count=31)
    collect("collect-test")
    metrics = Ledger.open().post_metrics("collect-test")
    assert metrics[("x", "a")]["impression_count"] == 1500
    assert metrics[("x", "a")]["like_count"] == 31
    assert metrics[("x", "b")]["impression_count"] == 900


def test_the_comparison_is_published_as_prefect_artifacts(
    tmp_path: Path, providers: Sandbox, prefect_server: str
) -> None:
    import httpx

    from clarion.flows.artifacts import artifact_key

    path = write_campaign(tmp_path, 30)
    launch(str(path), "artifact-test")
    # The REST API's latest-by-key route (this Prefect server's filter route refuses its own client's nulls).
    found = {}
    for key in (artifact_key("report", "artifact-test"), artifact_key("verdicts", "artifact-test")):
        response = httpx.get(f"{prefect_server}/artifacts/{key}/latest", timeout=30)
        response.raise_for_status()
        found[key] = response.json()
    assert found["report-artifact-test"]["type"] == "table"
    assert "email" in found["report-artifact-test"]["data"]
    assert found["verdicts-artifact-test"]["type"] == "markdown"
    assert "## email" in found["verdicts-artifact-test"]["data"]


def test_each_steps_progress_is_published_and_ends_at_all_batches_sent(
    tmp_path: Path, providers: Sandbox, prefect_server: str
) -> None:
    """The progress artifact of the launch's step (updated at most every PROGRESS_EVERY seconds while it
    sends) says 100 once every batch is done."""
    import httpx

    from clarion.flows.artifacts import artifact_key

    path = write_campaign(tmp_path, 120)
    assert launch(str(path), "progress-test").completed
    key = artifact_key("progress-launch", "progress-test")
    response = httpx.get(f"{prefect_server}/artifacts/{key}/latest", timeout=30)
    response.raise_for_status()
    found = response.json()
    assert found["type"] == "progress"
    assert float(found["data"]) == 100.0
