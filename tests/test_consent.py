"""Consent at planning: suppressed addresses, contacts without SMS consent and contacts at their frequency cap
are skipped with the reason, never planned to be sent; and `clarion suppress` manages the store."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from clarion.base.addresses import address_key
from clarion.base.addresses import suppression_form as normalise
from clarion.base.consent import Kind, classify_reply, consent_given
from clarion.base.errors import ClarionError
from clarion.base.settings import ClarionSettings
from clarion.campaign.loader import load_campaign
from clarion.cli.main import app
from clarion.engine.plan import plan_run
from clarion.ledger import Ledger, SendState, Suppression
from tests.conftest import CAMPAIGN, CampaignDir


def _ledger() -> Ledger:
    ledger = Ledger(ClarionSettings().ledger_url())
    ledger.migrate()
    return ledger


def _reasons(ledger: Ledger, run_id: str) -> dict[tuple[str, str], str | None]:
    """(channel, contact) -> skip reason (None: planned to be sent)."""
    return {
        (row.channel, row.recipient): (row.reason if row.state is SendState.SKIPPED else None)
        for row in ledger.sends(run_id)
        if row.contact_id is not None
    }


def test_suppressed_and_unconsented_contacts_are_skipped_with_the_reason(campaign_dir: CampaignDir) -> None:
    path = campaign_dir.campaign()  # c-004 (Dana) has no phone and no SMS consent
    contacts = campaign_dir.root / "contacts.csv"
    contacts.write_text(
        contacts.read_text().replace(
            "+12025550123,Ben,America/New_York,it-director,yes",
            "+12025550123,Ben,America/New_York,it-director,no",
        )
    )
    ledger = _ledger()
    ledger.suppress(
        [
            Suppression(Kind.EMAIL, "ada@example.org", "unsubscribe_link", "test"),
            Suppression(Kind.SMS, "+12125550142", "sms_stop", "test"),  # Chloé
        ]
    )

    plan_run(ledger, load_campaign(path), "consent-1")

    reasons = _reasons(ledger, "consent-1")
    assert reasons[("email", "c-001")] == "suppressed"
    assert reasons[("sms", "c-001")] is None  # an email opt-out says nothing about texts
    assert reasons[("email", "c-002")] is None
    assert reasons[("sms", "c-002")] == "no_consent"
    assert reasons[("sms", "c-003")] == "suppressed"
    assert reasons[("email", "c-004")] is None
    assert reasons[("sms", "c-004")] == "no_address"


def test_an_email_opt_out_matches_however_the_address_is_written(campaign_dir: CampaignDir) -> None:
    path = campaign_dir.campaign()
    contacts = campaign_dir.root / "contacts.csv"
    contacts.write_text(contacts.read_text().replace("ada@example.org", "Ada@Example.ORG"))
    ledger = _ledger()
    ledger.suppress([Suppression(Kind.EMAIL, normalise(Kind.EMAIL, "ADA@example.org"), "manual", "test")])

    plan_run(ledger, load_campaign(path), "consent-case")

    assert _reasons(ledger, "consent-case")[("email", "c-001")] == "suppressed"


def test_a_lifted_suppression_sends_again(campaign_dir: CampaignDir) -> None:
    path = campaign_dir.campaign()
    ledger = _ledger()
    ledger.suppress([Suppression(Kind.SMS, "+14155552671", "sms_stop", "test")])
    assert ledger.lift(Kind.SMS, "+14155552671")

    plan_run(ledger, load_campaign(path), "consent-start")

    assert _reasons(ledger, "consent-start")[("sms", "c-001")] is None
    assert not ledger.lift(Kind.SMS, "+14155552671")  # not suppressed any more


def test_the_frequency_cap_counts_sends_across_campaigns(campaign_dir: CampaignDir) -> None:
    capped = CAMPAIGN.replace(
        '    postal_address: "Team Example',
        '    frequency_cap: {max: 2, per: 7d}\n    postal_address: "Team Example',
    )
    first = campaign_dir.campaign(capped)
    second = campaign_dir.write("other.yaml", capped.replace("name: test-appeal", "name: other-appeal"))
    ledger = _ledger()

    plan_run(ledger, load_campaign(first), "cap-1")
    plan_run(ledger, load_campaign(second), "cap-2")  # the second email this week: still under the cap of 2
    plan_run(ledger, load_campaign(first), "cap-3")
    plan_run(ledger, load_campaign(first), "cap-3")  # a resumed run does not count against itself

    assert _reasons(ledger, "cap-2")[("email", "c-001")] is None
    assert _reasons(ledger, "cap-3")[("email", "c-001")] == "frequency_cap"
    assert _reasons(ledger, "cap-3")[("sms", "c-001")] is None  # texts have no cap in this campaign


def test_skipped_sends_do_not_count_against_the_cap(campaign_dir: CampaignDir) -> None:
    capped = CAMPAIGN.replace(
        '    postal_address: "Team Example',
        '    frequency_cap: {max: 1, per: 1d}\n    postal_address: "Team Example',
    )
    path = campaign_dir.campaign(capped)
    ledger = _ledger()
    ledger.suppress([Suppression(Kind.EMAIL, "ada@example.org", "manual", "test")])
    plan_run(ledger, load_campaign(path), "cap-skip-1")  # Ada suppressed: nothing planned for her
    ledger.lift(Kind.EMAIL, "ada@example.org")

    plan_run(ledger, load_campaign(path), "cap-skip-2")

    assert _reasons(ledger, "cap-skip-2")[("email", "c-001")] is None


def test_the_ledger_keeps_no_address_beside_a_send(campaign_dir: CampaignDir) -> None:
    ledger = _ledger()
    plan_run(ledger, load_campaign(campaign_dir.campaign()), "no-pii")

    rows = list(ledger.sends("no-pii"))
    text = repr(rows)
    assert "ada@example.org" not in text and "4155552671" not in text
    key = address_key(ClarionSettings().signing_key(), Kind.EMAIL, "ada@example.org")
    assert key in {r.address_key for r in rows}


@pytest.mark.parametrize(
    ("value", "given"),
    [("yes", True), ("Y", True), ("true", True), ("1", True), ("opted_in", True), ("no", False), ("", False)],
)
def test_consent_values(value: str, given: bool) -> None:
    assert consent_given(value) is given


def test_an_unclear_consent_value_is_an_error() -> None:
    with pytest.raises(ValueError, match="neither yes nor no"):
        consent_given("maybe")


@pytest.mark.parametrize(
    "text", ["STOP", "stop", "Stop.", " STOPALL ", "unsubscribe", "Cancel", "end", "QUIT"]
)
def test_stop_keywords(text: str) -> None:
    assert classify_reply(text) == "stop"


@pytest.mark.parametrize("text", ["stop it", "please stop", "STOPP", "", "halt"])
def test_other_texts_are_not_keywords(text: str) -> None:
    assert classify_reply(text) is None


def test_normalise_refuses_what_is_not_an_address() -> None:
    with pytest.raises(ClarionError, match="not a valid email"):
        normalise(Kind.EMAIL, "ada at example")
    with pytest.raises(ClarionError, match="phone number"):
        normalise(Kind.SMS, "call me")


# -- clarion suppress --------------------------------------------------------------------------------


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_suppress_add_list_export_remove_round_trip(tmp_path: Path) -> None:
    assert _cli("suppress", "add", "Ada@Example.org", "+1 (415) 555-2671")[0] == 0
    code, listing = _cli("suppress", "list")
    assert code == 0 and "ada@example.org" in listing and "+14155552671" in listing

    assert _cli("suppress", "remove", "ada@example.org")[0] == 0
    export = tmp_path / "out.csv"
    assert _cli("suppress", "export", "--out", str(export), "--include-lifted")[0] == 0
    lines = export.read_text().splitlines()
    assert lines[0] == "kind,address,reason,source,created_at,lifted_at"
    assert any(line.startswith("sms,+14155552671,manual,cli,") and line.endswith(",") for line in lines)
    assert any(line.startswith("email,ada@example.org,") and not line.endswith(",") for line in lines)

    code, output = _cli("suppress", "remove", "ada@example.org")
    assert code == 1 and "not suppressed: ada@example.org" in output


def test_suppress_import_names_each_bad_line_and_adds_nothing(tmp_path: Path) -> None:
    file = tmp_path / "optouts.csv"
    file.write_text("email,phone\nbo@example.org,\n,+12025550123\nnot-an-email,\n")

    code, output = _cli("suppress", "import", str(file))

    assert code == 1
    assert "optouts.csv:4: email: 'not-an-email' is not a valid email address" in output
    assert _ledger().suppressed(Kind.EMAIL) == set()

    code, _ = _cli("suppress", "import", str(file), "--skip-invalid")
    assert code == 1  # still says some lines were bad
    assert _ledger().suppressed(Kind.EMAIL) == {"bo@example.org"}
    assert _ledger().suppressed(Kind.SMS) == {"+12025550123"}


def test_suppress_export_neutralises_formulas(tmp_path: Path) -> None:
    ledger = _ledger()
    ledger.suppress([Suppression(Kind.EMAIL, "x@example.org", "manual", '=HYPERLINK("http://evil")')])

    code, output = _cli("suppress", "export")

    assert code == 0
    assert "'=HYPERLINK" in output


def test_suppress_import_without_an_address_column_says_what_it_needs(tmp_path: Path) -> None:
    file = tmp_path / "x.csv"
    file.write_text("name,mail\nbo,bo@example.org\n")

    code, output = _cli("suppress", "import", str(file))

    assert code == 1 and "needs an address, email or phone column (found: name, mail)" in output


def test_the_approval_preview_says_who_will_not_be_sent_and_why(campaign_dir: CampaignDir) -> None:
    from clarion.engine.context import RunContext
    from clarion.engine.preflight import approval_request, preview_markdown
    from clarion.engine.schedule import utcnow

    path = campaign_dir.campaign()
    ledger = _ledger()
    ledger.suppress([Suppression(Kind.EMAIL, "ada@example.org", "unsubscribe_link", "test")])
    plan_run(ledger, load_campaign(path), "preview-skips")

    page = preview_markdown(
        approval_request(RunContext(ledger, load_campaign(path), "preview-skips"), [], utcnow())
    )

    assert "## Not sent" in page
    assert "- email: 1 no_address, 1 suppressed" in page
    assert "- sms: 1 no_address" in page
