"""Per-client limits: a client following links faster than a person could, or sending forged requests, is
answered 429 without being read; other clients are not affected."""

from __future__ import annotations

from tests.conftest import CampaignDir
from tests.tracking.conftest import RUN, tracking_service


def test_a_client_over_the_link_rate_gets_429_with_retry_after(campaign_dir: CampaignDir) -> None:
    with tracking_service(campaign_dir, clarion_rate_limit="5/minute", clarion_reject_limit="off") as tracked:
        token = tracked.token("email", "a", 0)
        statuses = [tracked.client.get(f"/c/{token}").status_code for _ in range(7)]
        other = tracked.client.get(f"/c/{token}", headers={"X-Forwarded-For": "198.51.100.7"})
        found = tracked.ledger.engagement(RUN)

    assert statuses == [302] * 5 + [429] * 2
    assert found.total_clicks == {("email", "a"): 5}  # the refused requests recorded nothing
    assert other.status_code == 429  # without proxy_headers, a forwarded-for header changes nothing


def test_a_client_that_keeps_forging_is_refused_before_its_requests_are_read(
    campaign_dir: CampaignDir,
) -> None:
    with tracking_service(campaign_dir, clarion_rate_limit="off", clarion_reject_limit="3/minute") as tracked:
        forged = [tracked.client.get(f"/c/forged-token-{i}").status_code for i in range(3)]
        genuine = tracked.client.get(f"/c/{tracked.token('email', 'a', 0)}")
        webhook = tracked.post_sendgrid([{"event": "unsubscribe", "email": "ada@example.org"}])

    assert forged == [404, 404, 404]
    assert genuine.status_code == webhook.status_code == 429
    assert genuine.headers["retry-after"] == "60"
    assert tracked.ledger.suppressed("email") == set()
