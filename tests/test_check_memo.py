"""Validation checks one message per kind of message: contacts whose messages can differ only by their
tokens share one check (`Renderer.check_key`), and every contact a rule hits is still counted and named."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from clarion.base.errors import CampaignInvalid
from clarion.campaign.loader import load_campaign
from clarion.messages.links import LinkSigner
from clarion.messages.render import Renderer
from clarion.messages.validate import validate
from tests.conftest import CampaignDir

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(REPO.glob("examples/*/campaign.yaml"))

SMS_CAMPAIGN = """\
name: memo
cta:
  url: https://donate.example.org/m
tracking:
  base_url: https://go.example.org
audience:
  contacts: contacts.csv
experiment:
  holdout: 0
  variants:
    - id: a
channels:
  sms:
    provider: twilio
    from: "+15005550006"
    quiet_hours: null
    max_segments: 1
    body: "{body}"
"""


def _contacts(names: list[str]) -> str:
    rows = [f"c-{i:04d},+1415555{i:04d},{name},yes" for i, name in enumerate(names)]
    return "id,phone,first_name,sms_consent\n" + "\n".join(rows) + "\n"


def test_a_longer_token_is_checked_on_its_own(campaign_dir: CampaignDir) -> None:
    """A contact's position from 128 on takes one more byte in the token, so one more character in the
    link: a text exactly at one segment for the first contacts is over it for those. They are found."""
    body = "Hi {{ contact.first_name }} {{ link }} Reply STOP to opt out"
    names = ["Sam"] * 200
    path = campaign_dir.campaign(SMS_CAMPAIGN.format(body=body), _contacts(names))
    length = validate(load_campaign(path)).samples["sms:a"].metrics["length"]
    padded = body + " " + "x" * (160 - length - 1)  # 160 GSM-7 septets for contacts 0-127
    path = campaign_dir.campaign(SMS_CAMPAIGN.format(body=padded), _contacts(names))
    with pytest.raises(CampaignInvalid) as caught:
        validate(load_campaign(path))
    [problem] = caught.value.problems
    assert "over max_segments 1" in problem.message
    assert "c-0128 (line 130)" in problem.message  # the first contact with a two-byte position
    assert "(72 in all)" in problem.message  # 128-199: every one counted, none of 0-127


def test_every_contact_a_template_fails_for_is_counted(campaign_dir: CampaignDir) -> None:
    """The same failing value, many contacts: each counted, the first few named."""
    body = "Hi {{ contact.first_name[5] }} {{ link }} Reply STOP to opt out"
    names = ["Sam" if i % 2 == 0 else "Alexandrina" for i in range(100)]
    path = campaign_dir.campaign(SMS_CAMPAIGN.format(body=body), _contacts(names))
    with pytest.raises(CampaignInvalid) as caught:
        validate(load_campaign(path))
    [problem] = caught.value.problems
    assert "c-0000 (line 2), c-0002 (line 4), c-0004 (line 6) and 47 more (50 in all)" in problem.message


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.parent.name)
def test_contacts_with_one_key_get_one_message_but_for_the_token(path: Path) -> None:
    """What `check_key` promises: messages under one key differ only in their tokens (and recipients)."""
    loaded = load_campaign(path)
    renderer = Renderer(loaded, LinkSigner.from_settings(), "run-1")
    seen: dict[tuple[object, ...], tuple[str | None, str, str | None]] = {}
    keyed: defaultdict[str, int] = defaultdict(int)
    for contact in loaded.contacts().records(limit=400):
        for cid in loaded.campaign.channels:
            for variant in loaded.campaign.experiment.variants:
                key = renderer.check_key(cid, variant, contact)
                if key is None:
                    continue
                message = renderer.render(cid, variant, contact, address="someone@example.org")
                assert message.token
                parts = tuple(
                    None if part is None else part.replace(message.token, "TOKEN")
                    for part in (message.subject, message.text, message.html)
                )
                assert seen.setdefault(key, parts) == parts, (cid, variant.id, contact.id)
                keyed[cid] += 1
    assert keyed  # some channel of every example is checked by key
