"""Share links for ambassadors: what opens in their composer, and the checks on kit files."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from clarion.base.errors import CampaignInvalid
from clarion.campaign.kits import kit_run_id, load_kits
from clarion.campaign.loader import load_campaign
from clarion.channels.x.adapter import XChannel
from clarion.messages.share import linkedin_share_url
from tests.conftest import CampaignDir

x_share_url = XChannel.compose_url

LINK = "https://go.example.org/c/AVl1zxu6AAAAp_PD6bWYOsgKFg"


def test_x_share_link_opens_the_composer_with_the_text_and_the_ambassadors_link() -> None:
    url = x_share_url("Debate's over & we're #1? Chip in: ", LINK)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "x.com", "/intent/post")
    assert parse_qs(parts.query) == {"text": ["Debate's over & we're #1? Chip in:"], "url": [LINK]}
    assert " " not in url and "#" not in url  # everything encoded: the hashtag stays in the text


def test_x_share_text_is_measured_as_x_measures_it_with_the_link() -> None:
    # a link counts 23 whatever its length; CJK characters weigh 2: 128 of them + space + link = 280
    assert x_share_url("漢" * 128, LINK)
    with pytest.raises(ValueError, match="281 weighted characters with its link, over X's 280"):
        x_share_url("漢" * 128 + "a", LINK)


def test_linkedin_share_link_carries_only_the_link() -> None:
    parts = urlsplit(linkedin_share_url(LINK))
    assert parts.netloc == "www.linkedin.com" and parts.path == "/sharing/share-offsite/"
    assert parse_qs(parts.query) == {"url": [LINK]}


def test_kit_runs_are_named_after_their_parent() -> None:
    assert kit_run_id("debate-night-20261123t0300", "relay") == "debate-night-20261123t0300-kit-relay"


def test_a_campaign_cannot_be_its_own_kit(campaign_dir: CampaignDir) -> None:
    path = campaign_dir.campaign(
        campaign_dir.campaign().read_text() + "share_kits:\n  - {name: relay, campaign: campaign.yaml}\n"
    )
    with pytest.raises(
        CampaignInvalid, match=r"share_kits\[0\]\.campaign: a share kit is a campaign file of its own"
    ):
        load_kits(load_campaign(path))


def test_two_kits_need_two_names(campaign_dir: CampaignDir) -> None:
    campaign_dir.write("relay.yaml", "name: relay\n")
    path = campaign_dir.campaign(
        campaign_dir.campaign().read_text()
        + "share_kits:\n  - {name: relay, campaign: relay.yaml}\n  - {name: relay, campaign: relay.yaml}\n"
    )
    with pytest.raises(CampaignInvalid, match=r"share_kits\[1\]\.name: share kit 'relay' is named twice"):
        load_campaign(path)


def test_the_approval_preview_names_the_share_kits(campaign_dir: CampaignDir, tmp_path: Path) -> None:
    from clarion.engine.context import RunContext
    from clarion.engine.plan import plan_run
    from clarion.engine.preflight import approval_request, preview_markdown
    from clarion.engine.schedule import utcnow
    from clarion.ledger import Ledger

    campaign_dir.write("ambassadors.csv", "id,email,first_name\namb-1,ana@relay.example.org,Ana\n")
    campaign_dir.write(
        "relay.yaml",
        """\
        name: relay
        cta: {url: "https://donate.example.org/appeal"}
        audience: {contacts: ambassadors.csv}
        channels:
          email:
            provider: sendgrid
            from: "Team <team@example.org>"
            subject: Relay it
            body: "<a href='{{ share_x(\\"Join us\\") }}'>Post</a> <a href='{{ share_linkedin() }}'>Share</a>"
        """,
    )
    path = campaign_dir.campaign(
        campaign_dir.campaign().read_text()
        + "share_kits:\n  - {name: relay, campaign: relay.yaml, after: 10m}\n"
    )
    store = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    store.migrate()
    plan_run(store, load_campaign(path), "preview-run")
    markdown = preview_markdown(
        approval_request(RunContext(store, load_campaign(path), "preview-run"), [], utcnow())
    )
    assert (
        "## Share kits\n\n- **relay** (relay.yaml), at T+10m: ambassadors get share links to post" in markdown
    )
