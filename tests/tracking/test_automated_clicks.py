"""Scanner clicks at the door: the tracking service flags a known scanner's GET, keeps every request to a
message's links (click, unsubscribe page, beacon) one by one, and stores no client address."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from clarion.ledger.schema import link_hits
from clarion.tracking.scanners import SCANNER_AGENT, SCANNER_NETWORK, Scanners
from tests.tracking.conftest import RUN, Tracked

BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Safari/605.1.15"
)


def crawler_instances() -> list[str]:
    """Real user agents, copied from the `instances` of entries of crawler-user-agents.json (commit
    7c7f9f25, the reference the shipped patterns come from; the shipped file keeps only the patterns)."""
    return [
        "Googlebot/2.1 (+http://www.google.com/bot.html)",
        "facebookexternalhit/1.0 (+http://www.facebook.com/externalhit_uatext.php)",
        "Twitterbot/0.1",
        "Slackbot-LinkExpanding (+https://api.slack.com/robots)",
        "WhatsApp",
        "TelegramBot (like TwitterBot)",
        "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
        "LinkedInBot/1.0 (compatible; Mozilla/5.0; Jakarta Commons-HttpClient/3.1 +http://www.linkedin.com)",
        "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5",
        "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/534+ (KHTML, like Gecko) BingPreview/1.0b",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_1) AppleWebKit/600.2.5 (KHTML, like Gecko) "
        "Version/8.0.2 Safari/600.2.5 (Applebot/0.1)",
    ]


@pytest.mark.parametrize("agent", crawler_instances(), ids=lambda a: a.split("/")[0][:24])
def test_preview_bots_and_crawlers_are_recognised_by_user_agent(agent: str) -> None:
    found = Scanners.default().match(agent, None)
    assert found is not None and found.reason == SCANNER_AGENT


@pytest.mark.parametrize(
    ("agent", "name"),
    [
        ("Mozilla/5.0 (compatible; BingPreview/1.0b)", "Microsoft link preview"),
        ("Mimecast URL Protect/1.0", "Mimecast"),
        ("Proofpoint URL Defense", "Proofpoint URL Defense"),
        ("Barracuda Sentinel (EE)", "Barracuda Link Protection"),
        ("Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/131.0 Safari/537.36", "Headless browser"),
        ("python-requests/2.32.3", "HTTP library"),
    ],
)
def test_mail_scanners_are_named(agent: str, name: str) -> None:
    found = Scanners.default().match(agent, None)
    assert found is not None and found.name == name


def test_a_browser_is_a_person_and_a_vendor_network_is_a_scanner() -> None:
    scanners = Scanners.default()
    assert scanners.match(BROWSER, "203.0.113.9") is None
    assert scanners.match(BROWSER, "not an address") is None
    found = scanners.match(BROWSER, "40.107.22.10")  # Microsoft's Exchange Online Protection range
    assert found is not None and found.reason == SCANNER_NETWORK
    assert scanners.match(BROWSER, "2001:db8::1") is None


def test_the_shipped_lists_name_their_sources() -> None:
    data = resources.files("clarion.tracking").joinpath("data")
    crawlers = json.loads(data.joinpath("crawler-user-agents.json").read_text(encoding="utf-8"))
    assert crawlers["source"].startswith("https://github.com/monperrus/crawler-user-agents")
    assert "MIT" in crawlers["license"] and len(crawlers["patterns"]) > 1000
    vendors = json.loads(data.joinpath("scanners.json").read_text(encoding="utf-8"))
    for entry in vendors["agents"] + vendors["networks"]:
        assert entry["source"], entry["name"]


def hits(tracked: Tracked) -> list[dict[str, object]]:
    with tracked.ledger.engine.connect() as conn:
        return [dict(row) for row in conn.execute(link_hits.select().order_by(link_hits.c.id)).mappings()]


def test_a_scanners_get_is_recorded_flagged_and_a_persons_plain(tracked: Tracked) -> None:
    token = tracked.token("email", "a", 0)
    assert (
        tracked.client.get(f"/c/{token}", headers={"User-Agent": "Mimecast URL Protect"}).status_code == 302
    )
    assert tracked.client.get(f"/c/{token}", headers={"User-Agent": BROWSER}).status_code == 302
    rows = hits(tracked)
    assert [(r["kind"], r["automated"], r["agent"]) for r in rows] == [
        ("click", SCANNER_AGENT, "Mimecast"),
        ("click", None, None),
    ]
    assert all(r["run_id"] == RUN and r["contact_seq"] == 0 for r in rows)
    assert not any("127.0.0.1" in str(v) or "testclient" in str(v) for r in rows for v in r.values())
    # the aggregate click counts are unchanged: the report splits them
    assert tracked.ledger.engagement(RUN).total_clicks == {("email", "a"): 2}


def test_the_unsubscribe_page_view_and_the_beacon_are_kept_but_are_not_clicks(tracked: Tracked) -> None:
    token = tracked.token("email", "b", 1)
    assert tracked.client.get(f"/u/{token}").status_code == 200
    response = tracked.client.get(f"/b/{token}")
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert [r["kind"] for r in hits(tracked)] == ["unsubscribe_view", "beacon"]
    assert tracked.ledger.engagement(RUN).total_clicks == {}


def test_a_forged_beacon_gets_a_404_and_records_nothing(tracked: Tracked) -> None:
    assert tracked.client.get("/b/AAAAAAAAAAAAAAAAAAAAAAAAAAA").status_code == 404
    assert hits(tracked) == []
