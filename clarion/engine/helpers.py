"""Local send helpers: one launch's batches sent from more than one process of one machine, without Redis.

A launch sends from one interpreter, and its send path is bound by that interpreter (rendering, the
ledger, the provider SDK), so a second core sits mostly idle. With `CLARION_SEND_HELPERS` (default `auto`:
one helper on a machine with two cores or more, for an audience file of spawn.HELPER_AUDIENCE_BYTES or
more), the launch starts helper processes before it plans: each imports, loads the campaign and warms its
adapters while the launch plans. When a wave is sent, its batches are posted on the launch's `Board`; the
launch's own tasks take them from the front, the helpers from the back, so nobody waits for anybody's share.

Everything a run's sending shares stays in the launch process: a helper reaches the launch's
`LocalCoordination` (the opening gate, pacing, the stopped-channel breaker, the stop request, the count in
flight) and the board over an authenticated local socket (`multiprocessing.connection`, a key made for the
launch, the socket in a folder only its user can open). The ledger stays the exactly-once gate: a helper
claims sends exactly as a thread of the launch does, so two processes never send one message.

- The launch's task for a batch a helper took waits for the helper's answer, so the Prefect UI still shows
  each batch as a task run with its true end (a stopped channel, an error).
- A helper that dies (killed, out of memory) is noticed by that wait: what it had in flight in the batch is
  moved to `uncertain` (it may have gone out), and the launch sends the rest of the batch itself.
- A helper ignores SIGINT and SIGTERM (a Ctrl-C, or systemd stopping a service, signals the whole process
  group): the launch decides when to stop, and the helper sees it through the coordination, so what it has
  in flight settles as the launch's does. A helper whose launch died stops at its next call.
- A helper never takes an opening batch: those meet at the launch's gate, in its threads.
- A helper checks that the campaign it loaded is the one the run was planned with (the run's digest), and
  gives a batch back, and stops, if not.

Planning uses the helper too, before there is anything to send. On SQLite the launch reads, checks and
plans every contact, and its ledger writes (about 40% of planning) go to the board as chunks
(`HelperWriter`) that a helper writes while the launch reads on. At planning's end the launch writes itself
the chunks no helper took, and waits for those a helper holds; a chunk whose helper died or failed is
written again by the launch (planning's inserts skip rows already there). On PostgreSQL, where two
processes write at once, a new run's big contacts file is planned in halves: the launch plans the first
and writes its rows, a helper plans and writes the second (`Part`, clarion.engine.plan.plan_part), and
the launch plans it after all when the helper was not up, declined, failed or died. Nothing is sent
before every row is committed.

On SQLite, validation uses one too, for files that never validated: `clarion run` asks the helper it starts
early to validate them before anything else (clarion/engine/spawn.py), a launch that starts its helpers
itself (a worker's flow run) asks the first it starts, and the launch plans meanwhile without
rendering and checking every message itself (`Check`, a clarion.engine.plan.Checker): the helper's first
call says whether they are valid. Until then nothing is sent; if they are not valid, or the helper could
not say (it failed, died, or found other files), the launch checks every message itself, as before.

The helper's own side is clarion/engine/helper_process.py. Not here: helpers on other machines (that is
the send pool's job, clarion/flows/shard.py, with Redis).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, Listener
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # not on Windows: a killed launch's socket folder is left there
    fcntl = None  # type: ignore[assignment]

from clarion.engine.context import RunContext
from clarion.engine.coordination import LocalCoordination
from clarion.engine.plan import Batch, Part, PartPlanner, PartResult, write_rows
from clarion.engine.send import BatchOutcome, ChannelStopped, send_batch
from clarion.engine.spawn import ask_to_check, asked_to_check, spare, spawn
from clarion.ledger import Ledger, PlannedSend, SendFields

log = logging.getLogger("clarion.engine")

TAKE_WAIT = 1.0  # seconds a helper's idle thread waits for a batch before looking again
REAP_WAIT = 60.0  # seconds a helper has to end once its launch has (a request in flight settles), or killed
#: What a helper may call in the launch process (its coordination's methods and the board's).
CALLS = frozenset(
    {
        "stopped",
        "chunk_done",
        "pace",
        "stop_requested",
        "wait_for_stop",
        "enter_request",
        "leave_request",
        "wait_opened",
        "take",
        "give_back",
        "done",
        "take_rows",
        "rows_written",
        "take_part",
        "part_done",
        "checked",
    }
)
#: Rows per chunk a launch hands its helpers while it plans: smaller than a chunk written in place
#: (PLAN_ROWS), so that the chunks left when planning ends (which the launch writes or waits for) are short
HANDED_ROWS = 12_500
#: Chunks waiting for a helper beyond this are written by the launch while no helper is up, or else wait
#: for the helper to take them (memory stays flat: a chunk is about 5 MB)
MAX_UNTAKEN = 4

Key = tuple[str, str, int]  # (run id, channel, batch number)
HERE = "launch"  # the Board's owner of a batch the launch's own task sends
#: The launch's socket folders, in the system's temporary folder; each holds `LOCK`, locked while its launch
#: lives, so that the folders of launches killed without removing theirs (kill -9) are found and removed
FOLDER_PREFIX = "clarion-helpers-"
LOCK = "launch.lock"


def key_of(batch: Batch) -> Key:
    return (batch.run_id, batch.channel, batch.number)


@dataclass
class Answer:
    """What became of a batch a helper took: sent (with its counts), its channel stopped, or an error."""

    kind: str  # "sent" | "stopped" | "error"
    counts: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False
    why: str = ""


@dataclass(frozen=True)
class Rows:
    """A chunk of planning's rows, for a helper to write (or the launch, if no helper takes it)."""

    number: int
    run_id: str
    assignments: list[tuple[int, str, str]]
    sends: Sequence[SendFields]  # PlannedSend's; a helper gets plain tuples of their fields

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled with plain tuples: a helper unpickles them in a tenth of the time of named tuples."""
        return (Rows, (self.number, self.run_id, self.assignments, [tuple(s) for s in self.sends]))

    @property
    def count(self) -> int:
        return len(self.assignments) + len(self.sends)


class Board:
    """The batches of the wave being sent, as the launch's tasks and its helpers take them; and while the
    launch plans, the chunks of rows it hands them (`Rows`)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open: OrderedDict[Key, Batch] = OrderedDict()  # posted, not taken, in plan order
        self._owner: dict[Key, str] = {}  # who took a posted batch (HERE or a helper's name)
        self._answers: dict[Key, Answer] = {}
        self._closed = False
        self.taken: dict[str, int] = {}  # batches each helper took (and kept), over the launch
        self._rows: OrderedDict[int, Rows] = OrderedDict()  # chunks posted, not taken, oldest first
        self._writing: dict[int, tuple[str, Rows]] = {}  # chunks a helper took and has not answered for
        self._again: list[Rows] = []  # chunks a helper failed to write: the launch writes them
        self._counted = 0  # rows helpers wrote since the launch last asked (rows_held)
        self.wrote: dict[str, int] = {}  # rows each helper wrote, over the launch
        self._rows_takers: set[str] = set()  # helpers that took rows: up, and writing them
        self._part: Part | None = None  # a part of planning offered, not yet taken
        self._part_owner: str | None = None  # the helper planning it
        self._part_result: PartResult | str | None = None
        self._checks: dict[str, str | None] = {}  # the validation digest each helper asked to check found

    def post(self, batches: list[Batch]) -> None:
        """A wave starts: its batches but the openings may be taken by helpers."""
        with self._cond:
            self._open = OrderedDict((key_of(b), b) for b in batches if not b.opening)
            self._owner, self._answers = {}, {}
            self._cond.notify_all()

    def withdraw(self) -> None:
        """The wave ended: nothing more is taken from it."""
        with self._cond:
            self._open.clear()

    def close(self) -> None:
        """The launch ends: helpers waiting for a batch are told to go."""
        with self._cond:
            self._closed = True
            self._open.clear()
            self._cond.notify_all()

    def take_here(self, batch: Batch) -> str | None:
        """The launch's task takes `batch`: None when the launch sends it, else the helper that has it."""
        key = key_of(batch)
        with self._cond:
            owner = self._owner.get(key)
            if owner is None:
                self._open.pop(key, None)
                self._owner[key] = HERE
            return owner

    def take(self, helper: str, wait: float) -> Batch | bool | None:
        """A helper's thread takes the last batch still open (waiting up to `wait` s for one); None when
        there is none yet, False when the launch is ending."""
        with self._cond:
            self._cond.wait_for(lambda: self._open or self._closed, timeout=wait)
            if self._closed:
                return False
            if not self._open:
                return None
            key, batch = self._open.popitem(last=True)
            self._owner[key] = helper
            self.taken[helper] = self.taken.get(helper, 0) + 1
            return batch

    def give_back(self, batch: Batch) -> None:
        """A helper that may not send it: the launch's task will."""
        key = key_of(batch)
        with self._cond:
            helper = self._owner.get(key)
            if helper not in (None, HERE):
                del self._owner[key]
                self._answers.pop(key, None)
                self.taken[helper] -= 1
            self._cond.notify_all()

    def busy(self) -> bool:
        """Whether a helper holds a batch it has not answered for (the launch is ending early)."""
        with self._cond:
            return any(o != HERE and k not in self._answers for k, o in self._owner.items())

    def done(self, key: Key, answer: Answer) -> None:
        with self._cond:
            self._answers[key] = answer
            self._cond.notify_all()

    # -- planning's rows ----------------------------------------------------------------------------

    def post_rows(self, rows: Rows) -> None:
        with self._cond:
            self._rows[rows.number] = rows
            self._cond.notify_all()

    def take_rows(self, helper: str, wait: float) -> Rows | bool | None:
        """A helper takes the oldest chunk of rows (waiting up to `wait` s); None when there is none,
        False when the launch is ending."""
        with self._cond:
            self._cond.wait_for(lambda: self._rows or self._closed, timeout=wait)
            if self._closed:
                return False
            if not self._rows:
                return None
            number, rows = self._rows.popitem(last=False)
            self._writing[number] = (helper, rows)
            self._rows_takers.add(helper)
            self._cond.notify_all()
            return rows

    def launch_rows(self, alive: Callable[[str], bool], limit: int) -> Rows | None:
        """With more than `limit` chunks untaken: while no live helper has taken rows, the oldest, for the
        launch to write itself; once one has, None after waiting until it took enough (SQLite has one
        writer at a time: the launch writing beside a helper would make both wait on each other)."""
        with self._cond:
            while len(self._rows) > limit:
                if not any(alive(h) for h in self._rows_takers):
                    return self._rows.popitem(last=False)[1]
                self._cond.wait(0.1)
            return None

    def rows_written(self, helper: str, number: int, failed: str | None) -> None:
        """A helper's answer for a chunk: written (the chunk is let go), or why not (the launch writes it)."""
        with self._cond:
            taken = self._writing.get(number)
            if taken is not None and taken[0] == helper:
                del self._writing[number]
                if failed is None:
                    self.wrote[helper] = self.wrote.get(helper, 0) + taken[1].count
                    self._counted += taken[1].count
                else:
                    self._again.append(taken[1])
            self._cond.notify_all()

    def rows_held(self, alive: Callable[[str], bool]) -> tuple[int, list[Rows]]:
        """Wait until no live helper holds a chunk it has not answered for; then (how many rows helpers
        wrote since the last call, the chunks the launch must write itself: their helper died, or failed)."""
        with self._cond:  # an RLock's: rows_held_through takes it again
            again = self.rows_held_through(None, alive)
            counted, self._counted = self._counted, 0
            return counted, again

    def launch_rows_through(self, number: int) -> list[Rows]:
        """The chunks numbered up to `number` that no helper took, for the launch to write now."""
        with self._cond:
            mine = [rows for n, rows in self._rows.items() if n <= number]
            for rows in mine:
                del self._rows[rows.number]
            return mine

    def rows_held_through(self, number: int | None, alive: Callable[[str], bool]) -> list[Rows]:
        """Wait until no live helper holds a chunk numbered up to `number` (None: any chunk); then the
        chunks up to it the launch must write itself (their helper died, or failed). Later chunks are left
        as they are."""

        def upto(n: int) -> bool:
            return number is None or n <= number

        with self._cond:
            while any(upto(n) and alive(h) for n, (h, _) in self._writing.items()):
                self._cond.wait(0.1)
            again = [rows for rows in self._again if upto(rows.number)]
            self._again = [rows for rows in self._again if not upto(rows.number)]
            for n in [n for n in self._writing if upto(n)]:  # their helper died
                again.append(self._writing.pop(n)[1])
            return again

    def drop_rows(self) -> None:
        """Planning failed: chunks no helper took are not written."""
        with self._cond:
            self._rows.clear()

    # -- a part of planning ---------------------------------------------------------------------------

    def post_part(self, part: Part) -> None:
        with self._cond:
            self._part, self._part_owner, self._part_result = part, None, None
            self._cond.notify_all()

    def take_part(self, helper: str, wait: float) -> Part | bool | None:
        """A helper takes the part offered (waiting up to `wait` s); None when there is none, False when
        the launch is ending."""
        with self._cond:
            self._cond.wait_for(lambda: self._part is not None or self._closed, timeout=wait)
            if self._closed:
                return False
            part, self._part = self._part, None
            if part is not None:
                self._part_owner = helper
            return part

    def claim_part(self) -> str | None:
        """Planning reached the part: the helper that took it, or None (withdrawn: nobody will)."""
        with self._cond:
            self._part = None
            return self._part_owner

    def part_done(self, helper: str, result: PartResult | str) -> None:
        with self._cond:
            if helper == self._part_owner:
                self._part_result = result
                if isinstance(result, PartResult):
                    self.wrote[helper] = self.wrote.get(helper, 0) + result.rows
                self._cond.notify_all()

    def part_result(self, alive: Callable[[str], bool]) -> PartResult | str | None:
        """Wait for the answer of the helper that took the part; None when it died first."""
        with self._cond:
            owner = self._part_owner
            while self._part_result is None:
                if owner is None or not alive(owner):
                    return None
                self._cond.wait(0.1)
            return self._part_result

    # -- the files' validation -------------------------------------------------------------------------

    def checked(self, helper: str, digest: str | None) -> None:
        with self._cond:
            self._checks[helper] = digest
            self._cond.notify_all()

    def check(self, helper: str, alive: Callable[[str], bool], wait: bool) -> tuple[bool, str | None]:
        """(whether `helper` answered, the digest it found valid), waiting with `wait` while it is alive."""
        with self._cond:
            while helper not in self._checks and wait and alive(helper):
                self._cond.wait(0.1)
            return helper in self._checks, self._checks.get(helper)

    def answer(self, batch: Batch, helper: str, alive: Callable[[], bool]) -> Answer | None:
        """Wait for the helper's answer about `batch`; None when the helper died, or gave it back."""
        key = key_of(batch)
        with self._cond:
            while True:
                if key in self._answers:
                    return self._answers[key]
                if self._owner.get(key) != helper or not alive():
                    self._owner[key] = HERE
                    return None
                self._cond.wait(0.2)


class _Line:
    """What one helper calls in the launch process: the launch's coordination and board, and a count of
    the helper's chunks in flight (given back if the helper dies, so a stop does not wait for them)."""

    def __init__(self, name: str, coordination: LocalCoordination, board: Board) -> None:
        self.name, self.coordination, self.board = name, coordination, board
        self._lock = threading.Lock()
        self.in_flight = 0

    def stopped(self, run_id: str, channel: str) -> str | None:
        return self.coordination.stopped(run_id, channel)

    def chunk_done(self, run_id: str, channel: str, exhausted: bool, why: str) -> None:
        self.coordination.chunk_done(run_id, channel, exhausted=exhausted, why=why)

    def pace(self, run_id: str, channel: str, pacing: Any, messages: int) -> None:
        self.coordination.pace(run_id, channel, pacing, messages)

    def stop_requested(self) -> str | None:
        return self.coordination.stop_requested()

    def wait_for_stop(self, seconds: float) -> bool:
        return self.coordination.wait_for_stop(seconds)

    def enter_request(self) -> bool:
        entered = self.coordination.enter_request()
        if entered:
            with self._lock:
                self.in_flight += 1
        return entered

    def leave_request(self) -> None:
        with self._lock:
            self.in_flight -= 1
        self.coordination.leave_request()

    def wait_opened(self, run_id: str) -> None:
        self.coordination.gate(run_id, opening=False).open()

    def take(self, wait: float) -> Batch | bool | None:
        return self.board.take(self.name, wait)

    def give_back(self, batch: Batch) -> None:
        self.board.give_back(batch)

    def done(self, key: Key, answer: Answer) -> None:
        self.board.done(key, answer)

    def take_rows(self, wait: float) -> Rows | bool | None:
        return self.board.take_rows(self.name, wait)

    def rows_written(self, number: int, failed: str | None) -> None:
        self.board.rows_written(self.name, number, failed)

    def take_part(self, wait: float) -> Part | bool | None:
        return self.board.take_part(self.name, wait)

    def part_done(self, result: PartResult | str) -> None:
        self.board.part_done(self.name, result)

    def checked(self, digest: str | None) -> None:
        self.board.checked(self.name, digest)

    def abandon(self) -> None:
        """The helper died: its chunks in flight will never leave; stop counting them."""
        with self._lock:
            left, self.in_flight = self.in_flight, 0
        for _ in range(max(left, 0)):
            self.coordination.leave_request()


class HelperWriter:
    """Planning's rows handed to the launch's helpers (a clarion.engine.plan.RowWriter): each chunk is
    posted on the board for a helper to write while the launch plans on. `wait` writes here the chunks no
    helper took, waits for those a helper holds, and writes again any whose helper died or failed."""

    rows = HANDED_ROWS

    def __init__(self, helpers: Helpers, ledger: Ledger) -> None:
        self.helpers, self.board, self.ledger = helpers, helpers.board, ledger
        self._numbers = 0
        self.parts: PartPlanner | None = _Parts(helpers)

    def write(self, run_id: str, assignments: list[tuple[int, str, str]], sends: list[PlannedSend]) -> None:
        self._numbers += 1
        self.board.post_rows(Rows(self._numbers, run_id, assignments, sends))
        # a few left untaken: no helper is up yet (the launch writes), or it falls behind (the launch waits)
        if (rows := self.board.launch_rows(self.helpers.alive, MAX_UNTAKEN)) is not None:
            self._write(rows)

    def wait(self) -> None:
        while (rows := self.board.launch_rows(self.helpers.alive, 0)) is not None:
            self._write(rows)
        counted, again = self.board.rows_held(self.helpers.alive)
        for rows in again:
            log.warning("run %s: planning's rows %d written here, not by a helper", rows.run_id, rows.number)
            self._write(rows)
        self.ledger.inserted_elsewhere(counted)

    def mark(self) -> int:
        return self._numbers

    def wait_through(self, mark: int) -> None:
        """Every chunk numbered up to `mark` committed: those no helper took written here, those a helper
        holds waited for, those whose helper died or failed written here again."""
        for rows in self.board.launch_rows_through(mark):
            self._write(rows)
        for rows in self.board.rows_held_through(mark, self.helpers.alive):
            log.warning("run %s: planning's rows %d written here, not by a helper", rows.run_id, rows.number)
            self._write(rows)

    def drop(self) -> None:
        self.board.drop_rows()

    def _write(self, rows: Rows) -> None:
        write_rows(self.ledger, rows.run_id, rows.assignments, rows.sends)


class _Parts:
    """The second half of a big contacts file, planned by whichever helper takes it (a PartPlanner)."""

    def __init__(self, helpers: Helpers) -> None:
        self.helpers, self.board = helpers, helpers.board

    def offer(self, part: Part) -> None:
        self.board.post_part(part)

    def taken(self) -> bool:
        return self.board.claim_part() is not None

    def result(self) -> PartResult | str | None:
        return self.board.part_result(self.helpers.alive)


class Check:
    """The validation of the campaign's files by the helper `clarion run` asked to (a Checker)."""

    def __init__(self, helpers: Helpers, name: str, campaign: Path) -> None:
        self.helpers, self.name, self.campaign = helpers, name, campaign

    def valid(self, digest: str, wait: bool = False) -> bool | None:
        """True when the helper found these files (`digest`) valid; False when it found them invalid, could
        not check them, checked other files or died; None while it has not answered (`wait` False)."""
        answered, found = self.helpers.board.check(self.name, self.helpers.alive, wait)
        if not answered:
            return False if wait or not self.helpers.alive(self.name) else None
        return found == digest


def socket_folder() -> tuple[Path, int | None]:
    """A new folder (0700: only this user) for a launch's socket, and the descriptor of its lock, held until
    the launch closes it (None where files cannot be locked). Folders of launches that died without
    removing theirs are removed first (`sweep`). Raises OSError when the folder or its lock cannot be made,
    the folder removed again."""
    parent = Path(tempfile.gettempdir())
    sweep(parent)
    folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX, dir=parent))
    if fcntl is None:
        return folder, None
    made, fd = folder / f"{LOCK}.new", None
    try:
        fd = os.open(made, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a file system without locks: the folder is left if the launch is killed, as before
            os.close(fd)
            fd = None
            made.unlink(missing_ok=True)
            return folder, None
        os.rename(made, folder / LOCK)  # the lock appears locked: a sweep never sees it free while we live
    except OSError:  # no space, say: no folder left behind (a sweep leaves folders without a lock)
        if fd is not None:
            os.close(fd)
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder, fd


def sweep(parent: Path) -> list[Path]:
    """Remove the launch socket folders in `parent` whose lock nobody holds: their launch died without
    removing its folder (killed with SIGKILL, or its machine stopped). A lock is let go by the kernel when its
    process ends, whatever the way, and holds across process namespaces; a folder without a lock (being made,
    or an older Clarion's) is left. Returns the folders removed."""
    if fcntl is None:
        return []
    removed = []
    for folder in parent.glob(f"{FOLDER_PREFIX}*"):
        try:
            fd = os.open(folder / LOCK, os.O_RDWR | os.O_CLOEXEC)
        except OSError:  # no lock (not ours to judge), or another user's folder
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # its launch lives
            continue
        else:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        finally:
            os.close(fd)
    if removed:
        log.info("removed %d socket folder(s) of launches that ended without removing them", len(removed))
    return removed


class Helpers:
    """The launch's side: the socket its helpers call, the board, and the helper processes."""

    def __init__(self, coordination: LocalCoordination, count: int) -> None:
        """Raises OSError when the socket cannot be made (a temporary folder whose path leaves a socket's
        name no room, about 100 characters, or no space), its folder removed again."""
        self.coordination, self.board = coordination, Board()
        self._folder, self._lock = socket_folder()
        self._key = secrets.token_bytes(32)
        try:
            self._listener = Listener(str(self._folder / "launch.sock"), family="AF_UNIX", authkey=self._key)
        except OSError:
            self._remove_folder()
            raise
        self._lines = {
            f"helper-{i + 1}": _Line(f"helper-{i + 1}", coordination, self.board) for i in range(count)
        }
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._connected: set[str] = set()  # helpers that called: a helper that never did has done nothing
        self.check: Check | None = None  # the helper validating the campaign's files, if one was asked to
        self._closed = False
        threading.Thread(target=self._accept, name="clarion-helpers", daemon=True).start()

    def start(self, campaign_path: Path, run_id: str, ledger_url: str, *, check: bool = False) -> None:
        """Start every helper process (or hand the configuration to one `clarion run` started early,
        clarion/engine/spawn.py); each loads the campaign and warms its adapters on its own. `check`: when
        no helper started early was asked to validate the campaign's files, the first this starts is (a
        flow run a worker started, or `clarion run` whose early helper died), as `clarion run` asks its
        early one: the launch then plans new files without rendering every message itself."""
        for name in self._lines:
            config = {
                "address": self._listener.address,
                "key": self._key.hex(),
                "name": name,
                "campaign": str(campaign_path.resolve()),
                "run_id": run_id,
                "ledger": ledger_url,
                "environ": dict(os.environ),  # as it is now: the same home, keys and providers as the launch
            }
            line = json.dumps(config).encode() + b"\n"
            proc = spare()
            if proc is not None:
                checking = asked_to_check(proc)
                try:
                    self._configure(proc, line)
                except OSError:  # it died since it started: a new one
                    proc = None
                else:
                    if checking is not None:
                        self.check = Check(self, name, checking)
            if proc is None:
                proc = spawn()
                if check and self.check is None:
                    self.check = Check(self, name, ask_to_check(proc, campaign_path))
                    log.info("run %s: send helper %s validates the campaign's files first", run_id, name)
                self._configure(proc, line)
            self._procs[name] = proc
            log.info("run %s: send helper %s started (pid %d)", run_id, name, proc.pid)

    def _remove_folder(self) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    @staticmethod
    def _configure(proc: subprocess.Popen[bytes], line: bytes) -> None:
        assert proc.stdin is not None
        proc.stdin.write(line)
        proc.stdin.close()

    def writer(self, ledger: Ledger) -> HelperWriter:
        """Where a plan's rows go while these helpers are there: to them, as they can take them."""
        return HelperWriter(self, ledger)

    def alive(self, name: str) -> bool:
        proc = self._procs.get(name)
        return proc is not None and proc.poll() is None

    def send(self, run: RunContext, batch: Batch) -> BatchOutcome:
        """One batch of the wave, by whoever took it: here, or a helper (whose answer is awaited)."""
        helper = self.board.take_here(batch)
        if helper is None:
            return send_batch(run, batch)
        answer = self.board.answer(batch, helper, lambda: self.alive(helper))
        if answer is None:  # the helper died holding it (or gave it back): what it had in flight is uncertain
            if not self.alive(helper):
                self._lines[helper].abandon()
                moved = run.ledger.mark_uncertain_batches(batch.run_id, [(batch.channel, batch.number)])
                log.warning(
                    "run %s: send helper %s died during %s batch %d (%d sends in flight now uncertain); "
                    "the launch sends the rest",
                    batch.run_id,
                    helper,
                    batch.channel,
                    batch.number,
                    moved,
                )
            return send_batch(run, batch)
        if answer.kind == "stopped":
            raise ChannelStopped(answer.why)
        if answer.kind == "error":
            raise RuntimeError(f"send helper {helper}: {answer.why}")
        return BatchOutcome(batch, answer.counts, answer.interrupted)

    def close(self) -> None:
        """Tell the helpers to go, wait for them (killing one that does not end in REAP_WAIT s), close the
        socket. Every batch a helper took was answered before its wave ended: nothing of theirs is in
        flight, and a helper leaves at once (`os._exit`: it has nothing to flush). A launch that ends with
        a helper still sending (it failed mid-wave) asks it to stop first: what it has in flight settles."""
        if self.board.busy():
            self.coordination.request_stop("the launch ended while its send helpers were sending")
        self.board.close()
        self._closed = True
        self._listener.close()  # the helpers' connections stay open: they hear `board.close` through them
        self._remove_folder()
        deadline = time.monotonic() + REAP_WAIT
        for name, proc in self._procs.items():
            if name not in self._connected:  # still importing, or validating the files: nothing in flight
                proc.kill()
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning("send helper %s did not end; killing it", name)
                proc.kill()
                proc.wait()
            self._lines[name].abandon()

    def _accept(self) -> None:
        while True:
            try:
                conn = self._listener.accept()
            except Exception:  # closed (the launch ended), or a caller without the key: refused
                if self._closed:
                    return
                continue
            threading.Thread(
                target=self._serve, args=(conn,), name="clarion-helper-line", daemon=True
            ).start()

    def _serve(self, conn: Connection) -> None:
        with conn:
            try:
                name = conn.recv()
                line = self._lines[name]
            except (EOFError, OSError, KeyError):
                return
            self._connected.add(name)
            while True:
                try:
                    method, args = conn.recv()
                except (EOFError, OSError):
                    return
                try:
                    if method not in CALLS:
                        raise ValueError(f"{method!r} is not a call a send helper makes")
                    reply = (True, getattr(line, method)(*args))
                except Exception as exc:
                    reply = (False, f"{type(exc).__name__}: {exc}")
                try:
                    conn.send(reply)
                except (EOFError, OSError):
                    return


__all__ = ["Answer", "Board", "Check", "HelperWriter", "Helpers", "Rows"]
