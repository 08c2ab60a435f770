"""Validation that does not repeat itself: files validated under the same digest are not read again by
`clarion validate`, and any change to what validation read (contacts, templates) is seen."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
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


def _big(campaign_dir: CampaignDir, count: int) -> Path:
    """The test campaign with `count` contacts (the template's rows, numbered)."""
    header, *rows = CONTACTS.splitlines()
    lines = [header]
    for i in range(count):
        _id, email, rest = rows[i % len(rows)].split(",", 2)
        lines.append(f"c-{i:06d},{email.replace('@', f'.{i}@') if email else ''},{rest}")
    return campaign_dir.campaign(contacts="\n".join(lines) + "\n")


def test_a_check_of_a_big_contacts_file_says_how_far_it_is(campaign_dir: CampaignDir) -> None:
    path = _big(campaign_dir, 20_000)
    heard: list[tuple[int, int]] = []

    report = validate_once(load_campaign(path), lambda done, total: heard.append((done, total)))

    assert report.contacts == 20_000
    size = (path.parent / "contacts.csv").stat().st_size
    assert len(heard) >= 3 and all(total == size for _, total in heard)
    assert [done for done, _ in heard] == sorted(done for done, _ in heard)
    assert heard[-1][0] > 0.7 * size


def test_the_check_shows_a_bar_on_a_terminal_for_a_big_file_only(
    campaign_dir: CampaignDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    import clarion.cli.app as cli_app

    screen = io.StringIO()
    monkeypatch.setattr(cli_app, "err", Console(file=screen, force_terminal=True, width=100))
    small = load_campaign(campaign_dir.campaign())
    with cli_app.checking(small) as progress:
        assert progress is None  # four contacts: nothing to wait for
    big = load_campaign(_big(campaign_dir, 30_000))
    assert big.contacts_path.stat().st_size >= cli_app.BIG_CONTACTS_BYTES
    with cli_app.checking(big) as progress:
        assert progress is not None
        validate_once(big, progress)
    assert "checking" in screen.getvalue() and "contacts.csv" in screen.getvalue()


def test_an_early_helper_still_validating_is_not_waited_for(tmp_path: Path) -> None:
    """`clarion run` ending before its flow used the helper it started early (a Prefect server that is not
    there, a Ctrl-C) stops that helper at once, though it was validating a big file (seconds more)."""
    import signal
    import time

    from clarion.engine import spawn
    from tests.flows.test_openings import write_emails

    path = write_emails(tmp_path, 300_000)  # seconds of validation
    spawn.prestart(1, check=path)
    helper = spawn._spares[-1]
    time.sleep(1.5)  # imported by now, or nearly: validating
    spawn._release()  # what `clarion run` does at exit
    assert helper.returncode == -signal.SIGKILL, "clarion run waited for its unused helper to validate"
