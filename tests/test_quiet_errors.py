"""The three defects issue 17 opened with, as a user meets them: the real `clarion` command in a process of
its own, its exit status, what it printed, and what it left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CampaignDir

CLARION = str(Path(sys.executable).with_name("clarion"))


def _clarion(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLARION, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )


@pytest.mark.parametrize("port", ["99999", "-1", "65536", "0"])
def test_serve_on_a_port_out_of_range_says_the_range(port: str, tmp_path: Path) -> None:
    """It was an OverflowError traceback, three times over."""
    done = _clarion("serve", f"--port={port}", cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "OverflowError" not in done.stderr
    assert "--port" in done.stderr and ("65535" in done.stderr or "greater than or equal to 1" in done.stderr)


@pytest.mark.parametrize("run_id", ["../../etc", "a/b", "Debate", "run id", "x\n", "-x"])
def test_a_run_id_outside_the_pattern_is_refused_before_anything_starts(
    run_id: str, campaign_dir: CampaignDir, tmp_path: Path
) -> None:
    """`--run-id ../../etc` was accepted ("run ../../etc: starting"): it reaches Prefect names, artifact
    keys and the ledger."""
    campaign = campaign_dir.campaign()
    home = Path(os.environ["CLARION_HOME"])
    before = sorted(home.rglob("*"))
    done = _clarion("run", str(campaign), "--sandbox", f"--run-id={run_id}", cwd=tmp_path)
    assert done.returncode == 2
    assert ": starting" not in done.stdout + done.stderr
    flat = " ".join(line.strip("│ ") for line in done.stderr.splitlines())
    assert "--run-id" in flat and "lowercase letters, digits" in flat
    assert sorted(home.rglob("*")) == before  # nothing written: no ledger, no key


def test_the_same_pattern_holds_in_the_campaign_file_and_for_events(campaign_dir: CampaignDir) -> None:
    from clarion.base.errors import CampaignInvalid
    from clarion.base.identifiers import HINT
    from clarion.campaign.loader import load_campaign
    from tests.conftest import CAMPAIGN

    bad = CAMPAIGN.replace("name: test-appeal", 'name: "appeal\\n"').replace("- id: a\n", "- id: A/b\n")
    with pytest.raises(CampaignInvalid) as caught:
        load_campaign(campaign_dir.campaign(bad))
    assert str(caught.value).count(HINT) == 2  # the name's trailing newline no longer slips through
    event = CAMPAIGN + "schedule:\n  on_event: Debate:Ended\n"
    with pytest.raises(CampaignInvalid, match="event name"):
        load_campaign(campaign_dir.campaign(event))


def test_prefect_telemetry_is_off_for_every_command(tmp_path: Path) -> None:
    """Prefect's server heartbeat and its client analytics cannot reach anything from an offline machine;
    the server's failure printed a traceback before Clarion's own output. Every command turns both off
    (unless the user set them), and the servers it starts inherit that."""
    script = (
        "import os\n"
        "from typer.testing import CliRunner\n"
        "from clarion.cli.main import app\n"
        "assert CliRunner().invoke(app, ['runs']).exit_code == 0\n"
        "from prefect.settings import get_current_settings\n"
        "from prefect._internal.analytics.enabled import is_telemetry_enabled\n"
        "print(get_current_settings().server.analytics_enabled, is_telemetry_enabled())\n"
    )
    env = {
        k: v for k, v in os.environ.items() if k not in ("PREFECT_SERVER_ANALYTICS_ENABLED", "DO_NOT_TRACK")
    }
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]
    assert "telemetry" not in done.stderr.lower()


@pytest.mark.parametrize("command", ["serve", "sandbox"])
def test_a_port_in_use_is_said_before_anything_is_written(command: str, tmp_path: Path) -> None:
    """uvicorn said it (exit 3) after `clarion serve` had created the ledger."""
    import socket

    home = Path(os.environ["CLARION_HOME"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _clarion(command, f"--port={port}", cwd=tmp_path)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "--port" in done.stderr
    assert "Traceback" not in done.stderr
    assert not any(home.iterdir())
