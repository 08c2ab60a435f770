"""The README and the examples tell the truth: every campaign in them validates as written."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from clarion.campaign.model import Campaign
from clarion.messages.validate import validate_campaign
from tests.conftest import REPO

EXAMPLES = sorted((REPO / "examples").glob("*/campaign.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.parent.name for p in EXAMPLES])
def test_every_example_validates(path: Path) -> None:
    report = validate_campaign(path)
    assert report.contacts > 0
    assert set(report.reachable) == {
        cid for cid, c in report.loaded.campaign.channels.items() if c.provider != "x"
    }


def test_there_are_examples() -> None:
    assert {p.parent.name for p in EXAMPLES} >= {"debate-night", "b2b-cta-test"}


def _readme_campaigns() -> list[str]:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    return [b for b in blocks if b.lstrip().startswith("name:")]


def test_readme_campaign_validates_beside_the_example_contacts(tmp_path: Path) -> None:
    [campaign] = _readme_campaigns()
    shutil.copy(REPO / "examples/debate-night/contacts.csv", tmp_path / "contacts.csv")
    path = tmp_path / "campaign.yaml"
    path.write_text(campaign)
    report = validate_campaign(path)
    assert report.contacts == 10_000


def test_readme_documents_every_top_level_key() -> None:
    readme = (REPO / "README.md").read_text()
    for name, field in Campaign.model_fields.items():
        key = field.alias or name
        assert f"`{key}" in readme, f"README does not document the top-level key {key!r}"


def test_readme_quickstart_is_exactly_make_demo_and_make_test() -> None:
    readme = (REPO / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1].split("##", 1)[0]
    [block] = re.findall(r"```sh\n(.*?)```", quickstart, flags=re.S)
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
