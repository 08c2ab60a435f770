"""A local send helper's process (clarion/engine/helpers.py has the launch's side, and says why).

`Helpers.start` runs `main()` in a new interpreter with its configuration on stdin: the launch's socket and
key, the campaign's path, the run id and the ledger's URL. The helper loads the campaign, warms the
adapters it may send with, then takes batches from the launch's board, sends each with the same
`send_batch` as the launch's threads (through `RemoteCoordination`, the launch's own coordination), and
answers for each, until the launch says to go.

A helper `clarion run` started early may first be asked to validate the campaign's files (a line before
the configuration, clarion/engine/spawn.py): it does, while the launch imports and plans, and its first
call once configured tells the launch the validation digest of the files it found valid (or None).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import sys
import threading
from multiprocessing.connection import Client
from typing import Any

from clarion.engine.context import RunContext
from clarion.engine.coordination import Coordination, Gate
from clarion.engine.helpers import TAKE_WAIT, Answer, key_of
from clarion.engine.plan import write_rows
from clarion.engine.send import ChannelStopped

log = logging.getLogger("clarion.engine")


class _Remote:
    """Calls into the launch process, one connection per thread of the helper."""

    def __init__(self, address: str, key: bytes, name: str) -> None:
        self._address, self._key, self._name = address, key, name
        self._local = threading.local()

    def call(self, method: str, *args: Any) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = Client(self._address, family="AF_UNIX", authkey=self._key)
            conn.send(self._name)
        conn.send((method, args))
        ok, reply = conn.recv()
        if not ok:
            raise RuntimeError(f"the launch refused {method}: {reply}")
        return reply


class _RemoteGate(Gate):
    """A helper's batches are never openings: each waits for the run's opening, in the launch."""

    def __init__(self, remote: _Remote, run_id: str) -> None:
        self._remote, self._run_id, self._waited = remote, run_id, False

    def open(self) -> None:
        if not self._waited:
            self._waited = True
            self._remote.call("wait_opened", self._run_id)

    def leave(self) -> None:
        self._waited = True


class RemoteCoordination(Coordination):
    """The launch's coordination, as a helper process sees it."""

    def __init__(self, remote: _Remote) -> None:
        self._remote = remote

    def stopped(self, run_id: str, channel: str) -> str | None:
        return self._remote.call("stopped", run_id, channel)  # type: ignore[no-any-return]

    def chunk_done(self, run_id: str, channel: str, *, exhausted: bool, why: str) -> None:
        self._remote.call("chunk_done", run_id, channel, exhausted, why)

    def open_gate(self, run_id: str, parties: int) -> None:
        raise NotImplementedError("the launch opens its gates")

    def gate(self, run_id: str, opening: bool) -> Gate:
        if opening:
            raise ValueError("a send helper never takes an opening batch")
        return _RemoteGate(self._remote, run_id)

    def close_gate(self, run_id: str) -> None:
        raise NotImplementedError("the launch closes its gates")

    def interrupt(self, run_id: str) -> None:
        raise NotImplementedError("the launch interrupts its runs")

    def pace(self, run_id: str, channel: str, pacing: Any, messages: int) -> None:
        if pacing.messages_per_second or pacing.requests_per_second:  # an unpaced channel never waits
            self._remote.call("pace", run_id, channel, pacing, messages)

    def request_stop(self, why: str) -> None:
        raise NotImplementedError("the launch decides when to stop")

    def stop_requested(self) -> str | None:
        return self._remote.call("stop_requested")  # type: ignore[no-any-return]

    def wait_for_stop(self, seconds: float) -> bool:
        return bool(self._remote.call("wait_for_stop", seconds))

    def enter_request(self) -> bool:
        return bool(self._remote.call("enter_request"))

    def leave_request(self) -> None:
        self._remote.call("leave_request")

    def settled(self, timeout: float) -> bool:
        raise NotImplementedError("the launch waits for its sends to settle")


def _write_rows(remote: _Remote, ledger: Any) -> None:
    """Write the chunks of planning's rows the launch hands out, answering for each, until it says to go.
    One thread takes the next chunks (the launch pickles them, this process unpickles them) while this one
    writes: at most MERGED_CHUNKS - 1 wait here, and those waiting when a write ends are written together.

    Together, because each write's cost grows with the pages it touches: with contact ids that do not follow
    the file's order (UUIDs, a CRM's keys), every row of a chunk lands on an index page of its own, and a
    helper writing chunk by chunk fell behind the launch's planning (at a million such contacts, a chunk
    took twice as long as planning it did). Several chunks in one transaction share their pages; a helper
    that keeps up still writes one chunk at a time."""
    ahead: queue.Queue[Any] = queue.Queue(maxsize=MERGED_CHUNKS - 1)
    threading.Thread(target=_take_rows, args=(remote, ahead), name="clarion-helper-take", daemon=True).start()
    try:
        while (rows := ahead.get()) is not None:
            chunks, ending = [rows], False
            while len(chunks) < MERGED_CHUNKS and not ahead.empty():
                more = ahead.get()
                if more is None:
                    ending = True
                    break
                chunks.append(more)
            for run_id in dict.fromkeys(c.run_id for c in chunks):  # one launch plans one run at a time
                same = [c for c in chunks if c.run_id == run_id]
                failed = None
                try:
                    write_rows(
                        ledger,
                        run_id,
                        [a for c in same for a in c.assignments],
                        [s for c in same for s in c.sends],
                    )
                except Exception as exc:  # the launch writes them again itself
                    failed = f"{type(exc).__name__}: {exc}"
                    log.warning("planning's rows %s not written here: %s", [c.number for c in same], failed)
                for chunk in same:
                    remote.call("rows_written", chunk.number, failed)
            if ending:
                return
    except (EOFError, OSError):  # the launch is gone: a resume plans again
        return
    except BaseException as exc:  # the launch would wait for rows nobody writes: it writes them once we go
        log.error("planning's rows: %s: %s; stopping", type(exc).__name__, exc)
        os._exit(1)


#: Chunks of planning's rows a helper writes in one transaction at most (clarion.engine.helpers.HANDED_ROWS
#: rows each): the four the board holds for it (MAX_UNTAKEN), or a PLAN_ROWS transaction's worth
MERGED_CHUNKS = 4


def _take_rows(remote: _Remote, ahead: queue.Queue[Any]) -> None:
    """Take chunks of rows for `_write_rows`; None when the launch ends (or is gone)."""
    try:
        while (rows := remote.call("take_rows", TAKE_WAIT)) is not False:
            if rows is not None:
                ahead.put(rows)
    except (EOFError, OSError):
        pass
    except BaseException as exc:  # as in _write_rows: a chunk taken and never written would be waited for
        log.error("planning's rows: %s: %s; stopping", type(exc).__name__, exc)
        os._exit(1)
    ahead.put(None)


def _plan_parts(remote: _Remote, ledger: Any, loaded: Any) -> None:
    """Plan the part of a big contacts file the launch offers (clarion.engine.plan.plan_part), and answer
    for it, until the launch says to go."""
    from clarion.engine.plan import plan_part

    try:
        while (part := remote.call("take_part", TAKE_WAIT)) is not False:
            if part is None:
                continue
            try:
                result = plan_part(ledger, loaded, part)
            except Exception as exc:  # the launch plans it again (planning's inserts skip what is here)
                result = f"{type(exc).__name__}: {exc}"
                log.warning("the second half of the contacts not planned here: %s", result)
            remote.call("part_done", result)
    except (EOFError, OSError):  # the launch is gone: a resume plans again
        return
    except BaseException as exc:  # the launch would wait for an answer nobody gives: it plans once we go
        log.error("planning: %s: %s; stopping", type(exc).__name__, exc)
        os._exit(1)


def _check(path: str) -> str | None:
    """Validate the campaign at `path` as `clarion validate` does (remembered, or checked now and remembered
    when valid): the validation digest of the files found valid, else None (the launch checks them itself,
    and reports what is wrong)."""
    from clarion.base.errors import ClarionError
    from clarion.campaign.loader import load_campaign
    from clarion.messages.validated import validate_once, validation_digest

    try:
        loaded = load_campaign(path)
        digest = validation_digest(loaded)
        validate_once(loaded, digest=digest)
    except ClarionError:  # CampaignInvalid among them: the launch's own pass lists the problems
        return None
    except Exception as exc:
        log.warning("the campaign's files not validated here: %s: %s", type(exc).__name__, exc)
        return None
    return digest


def _helper(config: dict[str, Any], validated: tuple[str | None] | None = None) -> int:
    """A helper process: load, warm, then send batches from the launch's board until it says to go.
    `validated`: (the digest `_check` answered) when it was asked to validate the files first."""
    from clarion.base.runtime import bulk_work
    from clarion.campaign.loader import campaign_digest, load_campaign
    from clarion.engine.send import send_batch
    from clarion.ledger import Ledger
    from clarion.messages.validate import check_kits

    remote = _Remote(config["address"], bytes.fromhex(config["key"]), config["name"])
    if validated is not None:
        remote.call("checked", validated[0])  # before anything else: the launch may be holding its sends
    ledger = Ledger.open(config["ledger"])
    rows = threading.Thread(target=_write_rows, args=(remote, ledger), name="clarion-helper-rows")
    rows.daemon = True
    rows.start()  # the launch is planning: its rows can be written here before the campaign is loaded
    loaded = load_campaign(config["campaign"])
    kits = {kit.name: kit_campaign for kit, kit_campaign in check_kits(loaded)}
    run = RunContext(ledger, loaded, config["run_id"], kits, coordination=RemoteCoordination(remote))
    part = threading.Thread(target=_plan_parts, args=(remote, run.ledger, loaded), name="clarion-helper-part")
    part.daemon = True
    part.start()
    run.warm(networks=False)  # every post is an opening batch, which only the launch sends
    digests = {str(c.path): campaign_digest(c) for c in (loaded, *kits.values())}  # while the launch plans
    checked: dict[str, bool] = {}
    lock = threading.Lock()
    leave = threading.Event()

    def same_campaign(target: str) -> bool:
        with lock:
            if target not in checked:
                record = run.ledger.get_run(target)
                digest = digests[str(run.campaign(target).path)]
                checked[target] = record is not None and record.digest == digest
            return checked[target]

    def work() -> None:
        try:
            with bulk_work():
                take()
        except (EOFError, OSError):  # the launch is gone: what this thread had in flight stays so
            leave.set()

    def take() -> None:
        while not leave.is_set():
            batch = remote.call("take", TAKE_WAIT)
            if batch is False:
                return
            if batch is None:
                continue
            why = "the campaign changed since run %s was planned; stopping"
            try:
                same = same_campaign(batch.run_id)
            except Exception as exc:  # a run this campaign does not name (a kit since removed), the ledger:
                # given back all the same (a thread that died holding it left the launch waiting for ever)
                same, why = False, f"cannot check run %s's campaign ({type(exc).__name__}); stopping"
            if not same:
                log.error(why, batch.run_id)
                remote.call("give_back", batch)
                leave.set()
                return
            try:
                outcome = send_batch(run, batch)
                answer = Answer("sent", dict(outcome.counts), outcome.interrupted)
            except ChannelStopped as exc:
                answer = Answer("stopped", why=str(exc))
            except Exception as exc:
                answer = Answer("error", why=f"{type(exc).__name__}: {exc}")
            remote.call("done", key_of(batch), answer)

    threads = [
        threading.Thread(target=work, name=f"clarion-helper-{i}", daemon=True) for i in range(run.threads)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 0


def main() -> None:
    """The helper process's entry (`Helpers.start`): its configuration is one JSON line on stdin."""
    # a Ctrl-C, or a SIGTERM to the process group (a terminal, systemd), is the launch's to handle: it
    # asks the helper to stop through the coordination, and what the helper has in flight settles first
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="clarion send helper: %(message)s")
    line = sys.stdin.readline()  # a helper `clarion run` started early waits here, imported
    validated: tuple[str | None] | None = None
    if line.startswith('{"check":'):  # asked to validate the campaign first (clarion/engine/spawn.py)
        # the configuration is read meanwhile: the launch writing it never waits on a full pipe
        config_line: list[str] = []
        reader = threading.Thread(target=lambda: config_line.append(sys.stdin.readline()), daemon=True)
        reader.start()
        validated = (_check(json.loads(line)["check"]),)
        reader.join()
        line = config_line[0] if config_line else ""
    if not line.strip():  # started early and not used (clarion/engine/spawn.py): nothing to do
        os._exit(0)
    try:
        config = json.loads(line)
        os.environ.clear()  # the launch's environment as it is now (a sandbox may have set providers since)
        os.environ.update(config.pop("environ", {}))
        code = _helper(config, validated)
    except (EOFError, OSError):
        code = 1  # the launch is gone: what this helper had in flight stays in flight, for a resume
    except Exception as exc:  # it could not start: the launch sends everything itself
        log.error("not started: %s: %s", type(exc).__name__, exc)
        code = 1
    logging.shutdown()
    sys.stderr.flush()
    os._exit(code)  # no interpreter teardown: every answer was given, the ledger committed each settlement


__all__ = ["RemoteCoordination", "main"]
