"""A launch's socket folder (where its send helpers call it): removed when the launch ends, and by the next
launch on the machine when one was killed without removing it; where it cannot be made, the launch sends
alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from clarion.engine.coordination import LocalCoordination
from clarion.engine.helpers import FOLDER_PREFIX, Helpers, sweep
from clarion.flows.launch import launch
from clarion.sandbox import Sandbox
from tests.flows.conftest import write_campaign
from tests.flows.test_launch import expected_recipients

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no sockets in folders there")

HOLD = (
    "import time\n"
    "from clarion.engine.coordination import LocalCoordination\n"
    "from clarion.engine.helpers import Helpers\n"
    "Helpers(LocalCoordination(), 0)\n"
    "print('ready', flush=True)\n"
    "time.sleep(300)\n"
)


def _launch_holding_a_folder(parent: Path) -> subprocess.Popen[bytes]:
    """A process that made a launch's socket folder in `parent` and holds it until killed."""
    env = {**os.environ, "TMPDIR": str(parent)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    if proc.stdout.readline() != b"ready\n":
        proc.kill()
        pytest.fail(f"the launch's stand-in did not start: {proc.communicate()[1].decode()}")
    return proc


def _end(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()  # SIGKILL: no chance to remove its folder
    proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _folders(parent: Path) -> set[Path]:
    return set(parent.glob(f"{FOLDER_PREFIX}*"))


@pytest.fixture
def parent() -> Iterator[Path]:
    """A temporary folder of a short path: a socket's path has room for about 100 characters, and pytest's
    own temporary folders under xdist take most of it."""
    folder = Path(tempfile.mkdtemp(prefix="cs-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_killed_launchs_folder_is_removed_by_the_next_launch_and_a_live_ones_kept(
    parent: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    killed = _launch_holding_a_folder(parent)
    (stale,) = _folders(parent)
    live = _launch_holding_a_folder(parent)
    try:
        (kept,) = _folders(parent) - {stale}
        _end(killed)
        assert stale.exists()
        monkeypatch.setattr(tempfile, "tempdir", str(parent))
        helpers = Helpers(LocalCoordination(), 0)
        try:
            (made,) = _folders(parent) - {stale, kept}
            assert not stale.exists()
            assert kept.exists() and (kept / "launch.sock").exists()  # its launch still listens there
            assert made.stat().st_mode & 0o077 == 0  # only this user
        finally:
            helpers.close()
        assert not made.exists()
    finally:
        _end(live)
    assert sweep(parent) == [kept]  # killed too, now: its folder goes as well
    assert not _folders(parent)


@pytest.mark.usefixtures("prefect_server")
def test_a_temporary_folder_too_deep_for_a_socket_leaves_the_launch_to_send_alone(
    tmp_path: Path, providers: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A helper is a speed-up: where the launch's socket cannot be made (here a temporary folder whose path
    leaves its name no room), the launch sends everything itself, and leaves no folder behind."""
    monkeypatch.setenv("CLARION_SEND_HELPERS", "1")
    deep = tmp_path / ("d" * 120)
    deep.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    path = write_campaign(tmp_path, 200)
    result = launch(str(path), "helpers-deep-tmp")
    assert result.status == "completed", result.errors
    assert not result.helpers
    expected = expected_recipients(path)
    emails = [m["to"] for m in providers.messages("sendgrid")]
    assert sorted(emails) == sorted(expected["email"])
    assert not _folders(deep)


def test_where_files_cannot_be_locked_the_folder_is_made_without_a_lock(
    parent: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file system without locks (flock answers ENOLCK) costs only the clean-up after a kill: the launch
    still gets its socket, and removes its folder when it ends."""
    import errno
    import fcntl

    def refuse(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(tempfile, "tempdir", str(parent))
    monkeypatch.setattr(fcntl, "flock", refuse)
    helpers = Helpers(LocalCoordination(), 0)
    try:
        (made,) = _folders(parent)
        assert sorted(p.name for p in made.iterdir()) == ["launch.sock"]
    finally:
        helpers.close()
    assert not _folders(parent)
