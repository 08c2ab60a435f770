"""Starting local send helper processes early: light on purpose (the standard library only), so that
`clarion run` can start them before it imports Prefect and the rest of Clarion.

A helper's interpreter spends about a second importing Clarion before it can do anything. `prestart` lets
`clarion run` start it at once (it imports while the launch imports, on the other core) and wait, blocked on
its stdin, for the configuration that `Helpers.start` (clarion/engine/helpers.py) writes once the launch's
flow has begun. A helper started so and never used reads the end of its stdin, when `clarion run` exits,
and leaves without a word.

`prestart(count, check=campaign file)` also asks the first helper to validate the campaign's files (as
`clarion validate` does, and remembered as it remembers) before it reads its configuration: a launch of
files that never validated then plans without checking every message itself, while the helper checks them
on the other core, and holds every send until the helper's answer is in (clarion.engine.plan.Checker).
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported for its type only: this module stays light
    from clarion.campaign.loader import LoadedCampaign

#: `auto` starts a helper for an audience file at least this large (about 10,000 contacts): below it, the
#: helper's start-up (an interpreter, imports, about 1.7 CPU s and 200 MB) buys nothing.
HELPER_AUDIENCE_BYTES = 1_000_000
#: not `-m`: what a helper sends back must unpickle as clarion.engine.helpers' classes. It ignores SIGINT
#: and SIGTERM from its first line, not only once imported: a Ctrl-C to the terminal's process group while
#: it imports is the launch's to handle (and would print a traceback here)
COMMAND = (
    sys.executable,
    "-c",
    "import signal\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "from clarion.engine.helper_process import main\n"
    "main()",
)

_spares: list[subprocess.Popen[bytes]] = []
_checking: dict[int, Path] = {}  # spares asked to validate a campaign first (pid: its file), until handed out


def spawn() -> subprocess.Popen[bytes]:
    """A new helper process, importing, its stdin open for its configuration (never in argv: `ps` shows
    argv). Its environment is this one's; `Helpers.start` sends this process's environment as it is then
    (a sandbox or a test may have changed it since)."""
    return subprocess.Popen(list(COMMAND), stdin=subprocess.PIPE)


def prestart(count: int, check: Path | None = None) -> None:
    """Start `count` helpers now, for the launch this process is about to run (`spare` hands them out).
    `check`: the campaign file the first of them validates before anything else (`asked_to_check`)."""
    if not _spares:
        atexit.register(_release)
    for number in range(count):
        proc = spawn()
        _spares.append(proc)
        if check is not None and number == 0:
            _checking[proc.pid] = ask_to_check(proc, check)


def ask_to_check(proc: subprocess.Popen[bytes], campaign: Path) -> Path:
    """Ask a helper just spawned to validate the campaign file first, before it reads its configuration
    (clarion/engine/helper_process.py); the file's resolved path, which its answer names."""
    assert proc.stdin is not None
    path = campaign.resolve()
    proc.stdin.write(json.dumps({"check": str(path)}).encode() + b"\n")
    proc.stdin.flush()
    return path


def asked_to_check(proc: subprocess.Popen[bytes]) -> Path | None:
    """The campaign file `proc` (a spare, handed out) was asked to validate before its configuration, or
    None; forgotten once told (a later helper may get the same pid)."""
    return _checking.pop(proc.pid, None)


def spare() -> subprocess.Popen[bytes] | None:
    """A helper `prestart` started that is still alive, or None."""
    while _spares:
        proc = _spares.pop(0)
        if proc.poll() is None:
            return proc
        _checking.pop(proc.pid, None)
    return None


def wanted(setting: str, loaded: LoadedCampaign) -> int:
    """How many helpers a launch of `loaded` starts: CLARION_SEND_HELPERS as a number, or for `auto` one on
    a machine with two cores or more when the audience file is at least HELPER_AUDIENCE_BYTES (none for a
    query audience)."""
    if setting != "auto":
        return int(setting)
    if (os.cpu_count() or 1) < 2 or not loaded.campaign.audience.contacts:
        return 0
    try:
        return 1 if loaded.contacts_path.stat().st_size >= HELPER_AUDIENCE_BYTES else 0
    except OSError:
        return 0


def _release() -> None:
    """Helpers started early and never used: the end of their stdin tells them to go; one still validating
    (which may take seconds, and only leaves a record behind, written whole or not at all) is killed."""
    while _spares:
        proc = _spares.pop()
        try:
            if _checking.pop(proc.pid, None) is not None:
                proc.kill()
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()


__all__ = [
    "COMMAND",
    "HELPER_AUDIENCE_BYTES",
    "ask_to_check",
    "asked_to_check",
    "prestart",
    "spare",
    "spawn",
    "wanted",
]
