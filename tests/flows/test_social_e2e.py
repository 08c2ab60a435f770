"""A launch that posts to Bluesky, Mastodon, LinkedIn and Threads beside email, SMS and X: every network
gets one post per variant at the launch, `collect` brings each network's metrics into the ledger and the
report, and a post left uncertain is settled by reconcile."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from clarion.flows.collect import collect
from clarion.flows.launch import launch
from clarion.ledger import Ledger, SendState
from clarion.sandbox import FaultConfig, Sandbox
from tests.flows.conftest import CAMPAIGN, write_campaign

pytestmark = pytest.mark.usefixtures("prefect_server")

NETWORKS = ("bluesky", "mastodon", "linkedin", "threads")
SOCIAL = "".join(
    f'  {network}:\n    provider: {network}\n    body: "{{{{ variant.headline }}}} {{{{ link }}}}"\n'
    for network in NETWORKS
)
#: What each network's metrics control takes, and what the report reads back under X's names.
SET = {
    "bluesky": ({"likeCount": 7, "repostCount": 3, "replyCount": 2}, {"like_count": 7, "retweet_count": 3}),
    "mastodon": ({"favourites_count": 7, "reblogs_count": 3}, {"like_count": 7, "retweet_count": 3}),
    "linkedin": ({"impressionCount": 800, "likeCount": 7}, {"impression_count": 800, "like_count": 7}),
    "threads": ({"views": 800, "likes": 7, "reposts": 3}, {"impression_count": 800, "retweet_count": 3}),
}


def test_every_network_posts_each_variant_and_its_metrics_reach_the_report(
    tmp_path: Path, providers: Sandbox
) -> None:
    path = write_campaign(tmp_path, 30, CAMPAIGN + SOCIAL)

    launch(str(path), "social-e2e")

    ledger = Ledger.open()
    for network in NETWORKS:
        posts = providers.messages(network)
        assert sorted(m["text"].split(" http")[0] for m in posts) == ["Chip in now.", "Join the supporters."]
        sent = ledger.sends("social-e2e", network, SendState.SENT)
        assert sorted(row.provider_id for row in sent) == sorted(m["provider_id"] for m in posts)
        own = SET[network][0]
        first = next(m for m in posts if m["text"].startswith("Chip in now."))
        with httpx.Client(base_url=providers.url, timeout=10) as client:
            client.put(f"/_sandbox/{network}/metrics/{first['provider_id']}", json=own).raise_for_status()

    collect("social-e2e")

    metrics = ledger.post_metrics("social-e2e")
    for network in NETWORKS:
        for name, value in SET[network][1].items():
            assert metrics[(network, "a")][name] == value, (network, name)

    from clarion.analysis.report.build import build_report

    report = build_report(ledger, "social-e2e")
    channels = {c.channel: c for c in report.channels}
    assert channels["linkedin"].rows[0].impressions == 800  # LinkedIn and Threads publish impressions
    assert channels["bluesky"].rows[0].impressions is None
    assert "publishes no impressions" in channels["mastodon"].verdict.text


#: Requests each network's adapter makes before its first post: Bluesky signs in (createSession, then
#: getProfile), Threads makes a media container; Mastodon and LinkedIn post at once.
BEFORE_THE_POST = {"bluesky": 2, "mastodon": 0, "linkedin": 0, "threads": 1}


def _stall_after(passes: int) -> FaultConfig:
    """Faults under which the first `passes` requests are answered and the next one stalls, after the
    provider took it: the seed is the first whose draws fall that way (timeout_rate 0.5)."""
    import random

    def falls_so(seed: int) -> bool:
        rng = random.Random(seed)
        draws = [rng.random() for _ in range(passes + 1)]
        return all(d >= 0.5 for d in draws[:passes]) and draws[passes] < 0.5

    seed = next(s for s in range(10_000) if falls_so(s))
    return FaultConfig(timeout_rate=0.5, stall_seconds=3, stall_accepted=1.0, seed=seed)


@pytest.mark.parametrize("network", NETWORKS)
def test_a_post_taken_before_a_stall_is_settled_as_sent_by_reconcile(
    tmp_path: Path, providers: Sandbox, network: str
) -> None:
    from datetime import timedelta

    from clarion.campaign.loader import load_campaign
    from clarion.engine.reconcile import reconcile_run

    channels = (
        f'  {network}:\n    provider: {network}\n    body: "{{{{ variant.headline }}}} {{{{ link }}}}"\n'
    )
    path = write_campaign(tmp_path, 10, CAMPAIGN + channels)
    providers.set_faults(network, _stall_after(BEFORE_THE_POST[network]))
    run_id = f"social-stall-{network}"
    launch(str(path), run_id)
    providers.set_faults(network, None)
    ledger = Ledger.open()
    assert list(ledger.sends(run_id, network, SendState.UNCERTAIN)), "the first post stalled"

    reconcile_run(ledger, run_id, loaded=load_campaign(path), grace=timedelta(0))

    assert not list(ledger.sends(run_id, network, SendState.UNCERTAIN))
    settled = {row.provider_id for row in ledger.sends(run_id, network, SendState.SENT)}
    stored = {m["provider_id"] for m in providers.messages(network)}
    assert settled == stored and len(stored) >= 1
