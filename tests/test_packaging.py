"""What `pip install .` installs: one import package, `clarion`, with its templates, migrations and report
template inside, its console script, and the built-in providers in the `clarion.channels` group."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
    )
    [built] = list(Path(out).glob("clarion-*.whl"))
    return zipfile.ZipFile(built)


def test_the_wheel_holds_one_import_package_and_its_data(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    tops = {name.split("/")[0] for name in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"clarion"}
    for needed in (
        "clarion/templates/email/appeal.html.j2",  # the default templates
        "clarion/channels/sendgrid/adapter.py",  # channels/ and flows/ as real files, not links
        "clarion/flows/launch.py",
        "clarion/ledger/migrations/env.py",
        "clarion/ledger/migrations/script.py.mako",
        "clarion/analysis/report/report.html.j2",
    ):
        assert needed in names, f"the wheel lacks {needed}"


def test_the_wheel_declares_the_command_and_the_providers(wheel: zipfile.ZipFile) -> None:
    [entry_points] = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(entry_points).decode()
    assert "clarion = clarion.cli.main:main" in text
    section = text.split("[clarion.channels]", 1)[1].split("[", 1)[0]
    declared = {line.split("=")[0].strip() for line in section.strip().splitlines()}
    assert declared == {"sendgrid", "twilio", "x", "bluesky", "mastodon", "linkedin", "threads"}
    # and each one's settings on their own, for the start-up check that loads no adapter
    section = text.split("[clarion.settings]", 1)[1].split("[", 1)[0]
    assert {line.split("=")[0].strip() for line in section.strip().splitlines()} == declared
