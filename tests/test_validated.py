"""Validation that does not repeat itself: files validated under the same digest are not read again by
`clarion validate`, and any change to what validation read (contacts, templates) is seen."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from clarion.campaign.contacts import ContactsFile
from clarion.campaign.loader import load_campaign
from clarion.cli.main import app
from clarion.messages.validated import recall, validate_once, validation_digest
from tests.conftest import CONTACTS, CampaignDir


def _reads(monkeypatch) -> list[Path]:  # type: ignore[no-untyped-def]
    """Every time a contacts file is read, its path (the real reader, counted)."""
    seen: list[Path] = []
    original = ContactsFile.records

    def counted(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(self.path)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ContactsFile, "records", counted)
    return seen


def test_a_validated_campaign_is_not_read_again(campaign_dir: CampaignDir, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path = campaign_dir.campaign()
    reads = _reads(monkeypatch)
    first = CliRunner().invoke(app, ["validate", str(path)])
    assert first.exit_code == 0, first.output
    assert len(reads) == 1
    second = CliRunner().invoke(app, ["validate", str(path)])
    assert second.exit_code == 0
    assert len(reads) == 1  # answered from the record
    assert second.stdout == first.stdout  # the same counts


def test_a_change_to_the_contacts_or_a_template_is_validated_again(campaign_dir: CampaignDir) -> None:
    path = campaign_dir.campaign()
    loaded = load_campaign(path)
    before = validation_digest(loaded)
    validate_once(loaded)
    assert recall(loaded) is not None
    campaign_dir.write("contacts.csv", CONTACTS + "c-005,eve@example.org,,Eve,America/Chicago,cfo,no\n")
    changed = validation_digest(load_campaign(path))
    assert changed != before and recall(load_campaign(path)) is None
    assert validate_once(load_campaign(path)).contacts == 5
    campaign_dir.write("footer.html.j2", "<p>included by a template</p>")
    assert validation_digest(load_campaign(path)) != changed


def test_an_invalid_campaign_is_never_remembered(campaign_dir: CampaignDir) -> None:
    path = campaign_dir.campaign(contacts=CONTACTS.replace("ada@example.org", "not-an-address"))
    for _ in range(2):
        result = CliRunner().invoke(app, ["validate", str(path)])
        assert result.exit_code == 1 and "not-an-address" in result.output
    assert recall(load_campaign(path)) is None
