"""The `clarion` command line as people and scripts use it: exit codes, what goes to stdout and to stderr.

Everything runs in-process through typer's CliRunner, which keeps stdout (`result.stdout`) apart from stderr
(`result.stderr`). COLUMNS is pinned so that rich lays output out the same on every machine.
"""

from __future__ import annotations

import csv
import json
import traceback
from itertools import product
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jsonschema
import pytest
import yaml
from click.testing import Result
from markupsafe import escape
from typer.testing import CliRunner

from clarion.cli.main import app
from tests.conftest import CAMPAIGN, CONTACTS, REPO, UNTRACKED, CampaignDir

DEBATE = REPO / "examples" / "debate-night" / "campaign.yaml"
B2B = REPO / "examples" / "b2b-cta-test" / "campaign.yaml"
WIDE = "250"


def _invoke(*args: str | Path, columns: str = WIDE) -> Result:
    return CliRunner(env={"COLUMNS": columns}).invoke(app, [str(a) for a in args])


def _no_crash(result: Result) -> None:
    """A user mistake ends in an exit status, never in an exception (or a traceback on any stream)."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        assert result.exc_info is not None
        pytest.fail("the CLI crashed:\n" + "".join(traceback.format_exception(*result.exc_info)))
    assert "Traceback" not in result.output


def _contact_count(campaign: Path) -> int:
    with (campaign.parent / "contacts.csv").open(newline="", encoding="utf-8") as fh:
        return sum(1 for row in csv.reader(fh) if row) - 1


def _summary(stdout: str, path: Path) -> str:
    [line] = [line for line in stdout.splitlines() if str(path) in line]
    return line


# -- validate ----------------------------------------------------------------------------------------


def test_validate_both_examples_reports_each_valid_with_its_contact_count() -> None:
    result = _invoke("validate", DEBATE, B2B)

    _no_crash(result)
    assert result.exit_code == 0, result.output
    # only the power warnings of the debate example's hoped-for lift (its 2% holdout cannot detect it)
    assert all(line.startswith("warning: power: ") for line in result.stderr.splitlines()), result.stderr
    for path in (DEBATE, B2B):
        line = _summary(result.stdout, path)
        assert line.startswith("valid: ")
        assert f"{_contact_count(path):,} contacts" in line
        assert "reachable: email" in line


def test_validate_several_files_reports_the_good_one_and_fails_for_the_bad(
    campaign_dir: CampaignDir,
) -> None:
    good = campaign_dir.campaign()
    text = CAMPAIGN.replace("provider: twilio", "provider: twillio")
    bad = campaign_dir.write("bad.yaml", text)
    line = text.splitlines().index("    provider: twillio") + 1

    result = _invoke("validate", bad, good)

    _no_crash(result)
    assert result.exit_code == 1
    assert _summary(result.stdout, good).startswith(f"valid: {good}: 4 contacts")
    assert str(bad) not in result.stdout
    assert f"{bad}:{line}:15: channels.sms.provider: unknown provider 'twillio'" in result.stderr
    assert "1 of 2 campaign file(s) invalid" in result.stderr


@pytest.mark.parametrize(
    ("region", "ids", "refused"),
    [
        # NGP VAN's ids (9 digits), Shopify's (13), an all-digit UUID: none is a US phone number
        ("US", ["100234567", "4012345678901", "17855872-6861-4682-8810-054263754649", "c-004"], None),
        ("US", ["100234567", "+44 20 7946 0958", "c-003", "c-004"], 3),  # a number in E.164, any region
        ("US", ["100234567", "c-002", "2025550123", "c-004"], 4),  # ten digits: a US number
        ("GB", ["100234567", "c-002", "2025550123", "c-004"], None),  # not a UK one
        ("GB", ["c-001", "07946 095800", "c-003", "c-004"], 3),  # a UK mobile, written nationally
    ],
    ids=["crm-numbers", "e164", "us-national", "us-digits-in-gb", "gb-national"],
)
def test_validate_refuses_an_id_that_is_a_phone_number_and_takes_numeric_crm_ids(
    campaign_dir: CampaignDir, region: str, ids: list[str], refused: int | None
) -> None:
    """Contact ids go to providers as metadata: one that is a phone number (where the campaign texts) is
    refused on its line; numeric ids from a CRM are ids, and the audience validates."""
    header, *rows = CONTACTS.splitlines()
    contacts = [header, *(f"{i},{row.split(',', 1)[1]}" for i, row in zip(ids, rows, strict=True))]
    text = CAMPAIGN.replace(
        '    from: "+15005550006"', f'    from: "+15005550006"\n    default_region: {region}'
    )
    path = campaign_dir.campaign(text, contacts="\n".join(contacts) + "\n")

    result = _invoke("validate", path)

    _no_crash(result)
    if refused is None:
        assert result.exit_code == 0, result.stderr
        assert _summary(result.stdout, path).startswith(f"valid: {path}: 4 contacts")
    else:
        assert result.exit_code == 1
        assert f"contacts.csv:{refused}:1: id: contact id looks like an email address or phone number" in (
            result.stderr
        )


def test_validate_a_missing_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"

    result = _invoke("validate", missing)

    _no_crash(result)
    assert result.exit_code == 1
    assert f"{missing}: file not found" in result.stderr
    assert result.stdout == ""


def test_validate_summary_is_one_line_per_file_at_80_columns(campaign_dir: CampaignDir) -> None:
    path = campaign_dir.campaign()

    result = _invoke("validate", path, columns="80")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [_summary(result.stdout, path)]
    assert "4 contacts (a " in result.stdout and "reachable: email 3, sms 3" in result.stdout


def test_validate_prints_a_path_with_square_brackets_as_it_is(campaign_dir: CampaignDir) -> None:
    path = CampaignDir(campaign_dir.root / "[draft]").campaign()

    result = _invoke("validate", path)

    _no_crash(result)
    assert result.exit_code == 0, result.output
    assert f"valid: {path}: 4 contacts" in result.stdout


@pytest.mark.parametrize("command", ["deploy", "worker"])
def test_deploy_and_worker_check_every_contact_before_asking_the_server(
    campaign_dir: CampaignDir, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    """A bad contact row is found when the campaign is deployed or served, not when its event comes; the
    files that validated are remembered, so the worker's launches check no message again."""
    from clarion.campaign.loader import load_campaign
    from clarion.messages.validated import recall

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    header, *rows = CONTACTS.splitlines()
    rows[2] = "someone@example.org," + rows[2].split(",", 1)[1]
    bad = campaign_dir.campaign(contacts="\n".join([header, *rows]) + "\n")

    result = _invoke(command, bad)

    _no_crash(result)
    assert result.exit_code == 1
    assert "contacts.csv:4:1: id: contact id looks like an email address or phone number" in result.stderr
    assert "Prefect server" not in result.stderr, "the server was asked before the contacts were checked"
    assert recall(load_campaign(bad)) is None

    good = campaign_dir.campaign()
    result = _invoke(command, good)

    _no_crash(result)
    assert result.exit_code == 1  # checked, then: no server here
    assert f"clarion {command} needs a Prefect server" in result.stderr
    assert recall(load_campaign(good)) is not None


# -- preview -----------------------------------------------------------------------------------------


def _preview_json(*args: str | Path) -> list[dict[str, object]]:
    result = _invoke("preview", *args, "--json")
    _no_crash(result)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert isinstance(rows, list)
    return rows


def _campaign_arms(path: Path) -> set[tuple[str, str]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    variants = [v["id"] for v in data["experiment"]["variants"]]
    return set(product(data["channels"], variants))


@pytest.mark.parametrize("path", [DEBATE, B2B], ids=["debate-night", "b2b-cta-test"])
def test_preview_json_has_every_channel_and_variant_with_its_measures(path: Path) -> None:
    rows = _preview_json(path)

    assert {(r["channel"], r["variant"]) for r in rows} == _campaign_arms(path)
    assert len(rows) == len(_campaign_arms(path))
    first = _first_contact(path)
    for row in rows:
        assert {"channel", "provider", "variant", "contact", "text", "link"} <= row.keys()
        assert isinstance(row["text"], str) and row["text"].strip()
        assert str(row["link"]).startswith("https://go.example.")  # both examples set tracking.base_url
        # every channel's length and limit, as its platform counts them
        assert isinstance(row["length"], int) and isinstance(row["limit"], int), row
        assert 0 < row["length"] <= row["limit"]
        if row["kind"] == "social":
            assert row["contact"] is None  # a post goes to everyone
        if row["provider"] == "x":
            assert isinstance(row["weighted_length"], int) and 0 < row["weighted_length"] <= 280
            assert (row["length"], row["limit"]) == (row["weighted_length"], 280)
        elif row["provider"] in ("bluesky", "mastodon"):
            assert row["limit"] == {"bluesky": 300, "mastodon": 500}[row["provider"]]
        else:
            assert row["kind"] == "social" or row["contact"] == first
        if row["provider"] == "sendgrid":
            assert isinstance(row["subject"], str) and row["subject"].strip()
            assert isinstance(row["html"], str) and str(escape(row["link"])) in row["html"]
        if row["provider"] == "twilio":
            assert row["encoding"] in ("GSM-7", "UCS-2")
            assert isinstance(row["segments"], int) and row["segments"] >= 1


def _first_contact(path: Path) -> str:
    with (path.parent / "contacts.csv").open(newline="", encoding="utf-8") as fh:
        return next(csv.DictReader(fh))["id"]


def test_preview_links_carry_utm_parameters_without_a_tracking_service(campaign_dir: CampaignDir) -> None:
    rows = _preview_json(campaign_dir.campaign(UNTRACKED))

    kinds = {"x": "social", "email": "email", "sms": "sms"}
    assert len(rows) == 6
    for row in rows:
        link = str(row["link"])
        assert link.startswith("https://donate.example.org/appeal?")
        query = parse_qs(urlsplit(link).query)
        assert query["utm_source"] == [row["channel"]]
        assert query["utm_medium"] == [kinds[str(row["channel"])]]
        assert query["utm_campaign"] == ["test-appeal"]
        assert query["utm_content"] == [row["variant"]]
        assert link in str(row["text"])  # the link people click is the one in the message


def test_preview_contact_option_renders_for_that_contact(campaign_dir: CampaignDir) -> None:
    rows = _preview_json(campaign_dir.campaign(), "--contact", "c-002")

    personal = [r for r in rows if r["provider"] != "x"]
    assert personal and {r["contact"] for r in personal} == {"c-002"}
    assert {r["to"] for r in personal} == {"ben@example.org", "+12025550123"}
    assert all(str(r["text"]).startswith("Ben, ") for r in rows if r["channel"] == "sms")


def test_preview_unknown_contact_names_the_id_and_the_file(campaign_dir: CampaignDir) -> None:
    result = _invoke("preview", campaign_dir.campaign(), "--contact", "c-999")

    _no_crash(result)
    assert result.exit_code == 1
    assert "c-999" in result.stderr
    assert "contacts.csv" in result.stderr
    assert result.stdout == ""


def test_preview_of_a_broken_campaign_lists_its_problems(campaign_dir: CampaignDir) -> None:
    path = campaign_dir.campaign(CAMPAIGN.replace("https://donate.example.org/appeal", "donate.example.org"))

    result = _invoke("preview", path, "--json")

    _no_crash(result)
    assert result.exit_code == 1
    assert f"{path}:3:8: cta.url: 'donate.example.org' is not an http(s) URL" in result.stderr
    assert result.stdout == ""


def test_preview_table_shows_square_brackets_literally(campaign_dir: CampaignDir) -> None:
    text = CAMPAIGN.replace('"Chip in now."', '"[urgent] Chip in [b]now[/b]."')

    result = _invoke("preview", campaign_dir.campaign(text))

    _no_crash(result)
    assert result.exit_code == 0, result.output
    assert "[urgent] Chip in [b]now[/b]." in result.stdout


def test_preview_table_names_the_contact_it_rendered_for(campaign_dir: CampaignDir) -> None:
    result = _invoke("preview", campaign_dir.campaign())

    assert result.exit_code == 0, result.output
    assert "preview for contact c-001" in result.stdout


# -- schema ------------------------------------------------------------------------------------------


def _schema() -> dict[str, object]:
    result = _invoke("schema")
    _no_crash(result)
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    assert isinstance(schema, dict)
    return schema


def test_schema_is_valid_json_schema_that_accepts_both_examples() -> None:
    schema = _schema()

    validator = jsonschema.validators.validator_for(schema)
    validator.check_schema(schema)
    for path in (DEBATE, B2B):
        validator(schema).validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def test_schema_rejects_a_misspelt_key_and_an_unknown_provider() -> None:
    schema = _schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    data = yaml.safe_load(DEBATE.read_text(encoding="utf-8"))

    misspelt = {**data, "descripton": data["description"]}
    assert not validator.is_valid(misspelt)
    unknown = {
        **data,
        "channels": {**data["channels"], "sms": {**data["channels"]["sms"], "provider": "nope"}},
    }
    assert not validator.is_valid(unknown)
