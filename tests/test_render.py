"""Rendering: what a contact receives, escaped and sandboxed, with errors located in the templates."""

from __future__ import annotations

import pytest

from clarion.base.errors import CampaignInvalid
from clarion.campaign.loader import load_campaign
from clarion.messages.validate import preview, validate_campaign
from tests.conftest import CAMPAIGN, EMAIL_BODY, UNTRACKED, CampaignDir


def _by(messages: list, channel: str, variant: str = "a"):  # type: ignore[no-untyped-def]
    return next(m for m in messages if m.channel == channel and m.variant == variant)


def test_preview_renders_every_channel_and_variant(campaign_dir: CampaignDir) -> None:
    messages = preview(load_campaign(campaign_dir.campaign(UNTRACKED)))
    assert sorted((m.channel, m.variant) for m in messages) == [
        ("email", "a"),
        ("email", "b"),
        ("sms", "a"),
        ("sms", "b"),
        ("x", "a"),
        ("x", "b"),
    ]
    sms = _by(messages, "sms")
    assert sms.text.startswith("Ada, Chip in now. https://donate.example.org/appeal?")
    assert sms.to == "+14155552671"
    assert sms.metrics["encoding"] == "GSM-7"
    email = _by(messages, "email", "b")
    assert email.subject == "Join 12,000 supporters."
    assert email.to == "ada@example.org"
    assert "utm_medium=email" in email.link
    x = _by(messages, "x")
    assert x.contact_id is None and "utm_medium=social" in x.link


def test_html_is_autoescaped_text_is_not(campaign_dir: CampaignDir) -> None:
    contacts = "id,email,phone,first_name\nc-1,a@example.org,+14155552671,<b>Al & Co</b>\n"
    messages = preview(load_campaign(campaign_dir.campaign(contacts=contacts)))
    email = _by(messages, "email")
    assert "&lt;b&gt;Al &amp; Co&lt;/b&gt;" in (email.html or "")
    assert "<b>Al" not in (email.html or "")
    assert _by(messages, "sms").text.startswith("<b>Al & Co</b>,")


def test_text_part_is_derived_from_html(campaign_dir: CampaignDir) -> None:
    email = _by(preview(load_campaign(campaign_dir.campaign(UNTRACKED))), "email")
    assert "Ada, Chip in now." in email.text
    assert "<p>" not in email.text
    assert "donate.example.org/appeal" in email.text


@pytest.mark.parametrize(
    "expression",
    [
        "{{ contact.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ campaign.__init__.__globals__ }}",
        "{{ variant.update({'id': 'x'}) }}",
    ],
    ids=["class", "subclasses", "globals", "mutation"],
)
def test_templates_cannot_reach_python_internals(campaign_dir: CampaignDir, expression: str) -> None:
    text = CAMPAIGN.replace("Reply STOP to opt out", f"{expression} Reply STOP to opt out")
    with pytest.raises(CampaignInvalid) as info:
        validate_campaign(campaign_dir.campaign(text))
    assert any("channels.sms.body" in p.field for p in info.value.problems)


def test_undefined_contact_field_names_template_line_and_column(campaign_dir: CampaignDir) -> None:
    campaign_dir.write(
        "mail.html.j2",
        "<p>Hello {{ contact.first_name }},</p>\n<p>Your ZIP: {{ contact.zip }}</p>\n<a href='{{ link }}'>x</a>\n",
    )
    text = CAMPAIGN.replace(
        f'    body: "{EMAIL_BODY}"',
        "    template: mail.html.j2",
    )
    with pytest.raises(CampaignInvalid) as info:
        validate_campaign(campaign_dir.campaign(text))
    [problem] = info.value.problems
    assert problem.file.endswith("mail.html.j2")
    assert problem.line == 2
    assert "no column 'zip'" in problem.message
    # c-003 has no email address, so only the three reachable contacts were rendered
    assert "c-001 (line 2), c-002 (line 3), c-004 (line 5)" in problem.message


def test_template_files_cannot_escape_the_campaign_folder(campaign_dir: CampaignDir) -> None:
    text = CAMPAIGN.replace(
        f'    body: "{EMAIL_BODY}"',
        "    template: ../../../../etc/passwd",
    )
    with pytest.raises(CampaignInvalid) as info:
        validate_campaign(campaign_dir.campaign(text))
    assert "not found" in str(info.value)


def test_bundled_templates_are_found(campaign_dir: CampaignDir) -> None:
    text = CAMPAIGN.replace(
        f'    body: "{EMAIL_BODY}"',
        "    template: templates/email/appeal.html.j2\n    text_template: templates/email/appeal.txt.j2",
    )
    email = _by(preview(load_campaign(campaign_dir.campaign(text))), "email")
    assert "Chip in now." in (email.html or "")
    assert email.text.startswith("Ada,")


def test_preview_for_a_chosen_contact(campaign_dir: CampaignDir) -> None:
    messages = preview(load_campaign(campaign_dir.campaign()), "c-003")
    assert _by(messages, "sms").text.startswith("Chloé,")
    assert _by(messages, "email").to is None  # no email address: not reachable by email


def test_holdout_contacts_addresses_are_checked_too(campaign_dir: CampaignDir) -> None:
    rows = "".join(f"c-{i:03d},,+1555,Name{i},America/New_York,cfo,yes\n" for i in range(40))
    contacts = "id,email,phone,first_name,timezone,persona,sms_consent\n" + rows
    text = CAMPAIGN.replace("  holdout: 0\n", "  holdout: 0.5\n")
    with pytest.raises(CampaignInvalid) as info:
        validate_campaign(campaign_dir.campaign(text, contacts=contacts))
    [problem] = info.value.problems
    assert "(40 in all)" in problem.message  # about half of them are in the holdout
