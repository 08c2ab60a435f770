"""The README and the examples tell the truth: every campaign in them validates as written."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

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
        cid
        for cid, c in report.loaded.campaign.channels.items()
        if c.provider not in ("x", "bluesky", "mastodon", "linkedin", "threads")  # posts: no addresses
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


# -- documentation that cannot drift from the code ------------------------------------------------------


def _section(title: str) -> str:
    readme = (REPO / "README.md").read_text()
    return readme.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _commands() -> list[tuple[str, list[str]]]:
    """Every command of `clarion --help` (sub-commands included) with its long options."""
    import typer.main

    from clarion.cli.main import app

    found: list[tuple[str, list[str]]] = []

    def walk(command: Any, path: str) -> None:
        if hasattr(command, "commands"):
            for name, sub in sorted(command.commands.items()):
                walk(sub, f"{path} {name}")
        else:
            options = [o for p in command.params for o in p.opts if o.startswith("--")]
            found.append((path, options))

    walk(typer.main.get_command(app), "clarion")
    return found


def test_the_readme_lists_every_command_and_its_options() -> None:
    [block] = re.findall(r"```sh\n(.*?)```", _section("Commands"), flags=re.S)
    lines = block.splitlines()
    for command, options in _commands():
        mine = [line for line in lines if line.startswith(command + " ") or line == command]
        assert mine, f"the README's command list lacks `{command}`"
        for option in options:
            assert any(re.search(rf"{re.escape(option)}\b", line) for line in mine), (
                f"the README's command list shows `{command}` without its option {option}"
            )


def _variables_read() -> set[str]:
    """Every environment variable Clarion reads: its settings classes' fields, every provider's
    credentials, and the names its code reads directly (CLARION_*, provider webhook keys)."""
    from clarion import channels
    from clarion.base.settings import ClarionSettings, ConsoleSettings, TrackingSettings

    names = {f"CLARION_{name.upper()}" for name in ClarionSettings.model_fields}
    names |= {name.upper() for name in (*TrackingSettings.model_fields, *ConsoleSettings.model_fields)}
    for adapter in channels.adapters():
        for field in adapter.settings_model.model_fields.values():
            if isinstance(field.validation_alias, str):
                names.add(field.validation_alias)
    source = "\n".join(p.read_text() for p in (REPO / "clarion").rglob("*.py"))
    source += "\n".join(p.read_text() for d in ("channels", "flows") for p in (REPO / d).rglob("*.py"))
    names |= set(re.findall(r"[\"'](CLARION_[A-Z0-9_]+)[\"']", source))
    names |= set(re.findall(r"_VARIABLE = [\"']([A-Z0-9_]+)[\"']", source))
    return names


def test_every_variable_the_code_reads_is_documented() -> None:
    readme = (REPO / "README.md").read_text()
    tables = _section("Settings (environment)") + readme.split("### Credentials", 1)[1].split("\n##", 1)[0]
    missing = sorted(name for name in _variables_read() if f"`{name}`" not in tables)
    assert not missing, f"environment variables read but not in the README's settings tables: {missing}"


def _status_rows() -> list[tuple[str, str, list[str]]]:
    rows = []
    for line in _section("Status").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[1] in ("done", "planned"):
            rows.append((cells[0], cells[1], re.findall(r"`([^`]+)`", cells[2])))
    return rows


def _exists(place: str) -> bool:
    import importlib.util

    if place.startswith("clarion "):
        return any(command == place for command, _ in _commands())
    try:
        return importlib.util.find_spec(place) is not None
    except ModuleNotFoundError:
        return False


def test_the_status_table_matches_what_exists() -> None:
    rows = _status_rows()
    assert rows, "the README's status table has no rows"
    for capability, state, places in rows:
        assert places, f"status row {capability!r} names no command or module"
        for place in places:
            if state == "done":
                assert _exists(place), f"status row {capability!r} is done but {place} does not exist"
            else:
                assert not _exists(place), f"status row {capability!r} is planned but {place} exists"


def test_the_layout_section_matches_the_tree() -> None:
    [block] = re.findall(r"```\n(.*?)```", _section("Layout"), flags=re.S)
    top = {m for m in re.findall(r"^([a-z]+)/", block, flags=re.M)}
    inner = {m for m in re.findall(r"^  ([a-z]+)/", block, flags=re.M)}
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    folders = {path.split("/")[0] for path in tracked if "/" in path and not path.startswith(".")}
    assert top == folders, f"README layout lists {sorted(top)}, the repository has {sorted(folders)}"
    packages = {p.parent.name for p in (REPO / "clarion").glob("*/__init__.py")}
    packages |= {p.name for p in (REPO / "clarion").iterdir() if p.is_symlink()}
    assert inner == packages, f"README layout lists {sorted(inner)}, clarion/ holds {sorted(packages)}"
