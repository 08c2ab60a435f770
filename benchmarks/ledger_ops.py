"""The send ledger's own cost for one email campaign, phase by phase: what the SDK loop never pays.

    .venv/bin/python benchmarks/ledger_ops.py                         # 100,000 sends, SQLite, 3 rounds
    .venv/bin/python benchmarks/ledger_ops.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python benchmarks/ledger_ops.py --against /tmp/base     # beside another checkout, interleaved
    .venv/bin/python benchmarks/ledger_ops.py --contacts 1000000 --uuid-ids --chunk 12500 --rounds 1
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \\
        .venv/bin/python benchmarks/ledger_ops.py --contacts 5000 --rounds 1 --callgrind

What `clarion run` asks of the ledger for N email recipients, through the Ledger's own API and nothing else:
the assignments and sends written at planning (5,000 a statement), then per batch of 5,000 the due sends
read and, per request of 1,000, the claim before the provider call and the settlement after (all sent, one
message id a request, as SendGrid answers), each row found by the id the batch's read gave, as a send task
finds it (by recipient in a tree from before). --chunk N writes planning's rows N at a time (a local send
helper's chunk is 12,500; four when it fell behind); --uuid-ids makes the contact ids random UUIDs, as a CRM
may export them, so that the indexes led by contact id take them at random places. Each round runs in a
child process of its own on a fresh ledger (a new SQLite file, or a new PostgreSQL schema dropped
afterwards); it prints wall and CPU seconds (the child's own, user + system, so PostgreSQL's server work is
not in CPU) per phase, then the medians. With --against TREE the same from another checkout (a `git
worktree` of an earlier commit, put first on PYTHONPATH), the two interleaved in alternating order: the
machine is shared and its speed moves by tens of percent between runs, so only interleaved figures compare.

With --callgrind (under valgrind's callgrind) each phase is dumped on its own (`callgrind_control`), so the
instructions of each are in /tmp/cg.out.2 (assignments), .3 (sends), .4 (sending): a count that does not
move with the machine's speed, for changes too small to see on its clock.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from send_throughput import child_scratch_schema  # noqa: E402

PHASES = ("assignments", "plan sends", "sending")


def child(count: int, url: str, callgrind: bool, uuid_ids: bool = False, chunk: int = 0) -> None:
    """One round, in this process: prints {phase: [wall, cpu]} as JSON. Batches and requests are the
    product's own sizes: email's default batch after a small opening one, a SendGrid request's recipients."""
    from clarion.channels.base import ChannelKind
    from clarion.channels.sendgrid.adapter import SendGridChannel
    from clarion.engine.plan import DEFAULT_BATCH, OPENING_BATCH
    from clarion.ledger import Ledger, PlannedSend, SendState, Settlement

    batch, opening, request = DEFAULT_BATCH[ChannelKind.EMAIL], OPENING_BATCH, SendGridChannel.max_batch

    def dump(name: str) -> None:
        if callgrind:
            subprocess.run(["callgrind_control", f"--dump={name}", str(os.getpid())], capture_output=True)

    ledger = Ledger(url)
    ledger.migrate()
    run = "ledger-ops-20261204t180000-abcd"
    ledger.create_run(run, campaign="ledger-ops", campaign_file="campaign.yaml", digest="d")
    keys = random.Random(11)
    ids = [
        str(uuid.UUID(int=keys.getrandbits(128), version=4)) if uuid_ids else f"sup-{seq:07d}"
        for seq in range(count)
    ]
    by_id = "ids" in inspect.signature(ledger.begin).parameters  # a tree from before finds them by recipient
    batch_of = [0 if seq < opening else 1 + (seq - opening) // batch for seq in range(count)]
    figures: dict[str, list[float]] = {}
    dump("start")
    wall, cpu = time.perf_counter(), time.process_time()

    def lap(name: str) -> None:
        nonlocal wall, cpu
        figures[name] = [time.perf_counter() - wall, time.process_time() - cpu]
        dump(name.replace(" ", "_"))
        wall, cpu = time.perf_counter(), time.process_time()

    step = chunk or count
    for start in range(0, count, step):
        part = range(start, min(start + step, count))
        ledger.add_assignments(run, [(seq, ids[seq], "ab"[seq % 2]) for seq in part])
    lap(PHASES[0])
    for start in range(0, count, step):
        part = range(start, min(start + step, count))
        ledger.plan_sends(
            run,
            [
                PlannedSend(
                    "email", "ab"[seq % 2], ids[seq], ids[seq], seq, batch_of[seq], None, f"{seq:032x}"
                )
                for seq in part
            ],
        )
    lap(PHASES[1])
    sent = 0
    for number in sorted(set(batch_of)):
        due = ledger.due_in_batch(run, "email", number)
        found: dict[str, Any] = {"ids": {row.recipient: row.id for row in due}} if by_id else {}
        for start in range(0, len(due), request):
            wanted = [row.recipient for row in due[start : start + request]]
            claimed = ledger.begin(run, "email", wanted, **found)
            message_id = f"msg-{number}-{start}"
            settled = [Settlement(r, SendState.SENT, provider_id=message_id) for r in claimed]
            sent += ledger.settle(run, "email", settled, **found)
    lap(PHASES[2])
    if sent != count:
        raise SystemExit(f"settled {sent} of {count}")
    print(json.dumps(figures))


def _round(count: int, database: str | None, tree: Path | None, options: list[str]) -> dict[str, list[float]]:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="ledger-ops-") as folder, child_scratch_schema(database) as url:
        ledger = url or f"sqlite:///{folder}/ledger.db"  # a scratch schema, or a fresh SQLite file
        out = subprocess.run(
            [sys.executable, __file__, "--child", ledger, "--contacts", str(count), *options],
            env=env,
            cwd=folder,  # not this checkout: PYTHONPATH decides which Clarion runs
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    figures: dict[str, list[float]] = json.loads(out.splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL database (a scratch schema in it)")
    parser.add_argument("--against", type=Path, metavar="TREE", help="another checkout, interleaved")
    parser.add_argument("--callgrind", action="store_true", help="dump each phase (under callgrind)")
    parser.add_argument("--uuid-ids", action="store_true", help="contact ids that are random UUIDs")
    parser.add_argument("--chunk", type=int, default=0, help="planning's rows written this many at a time")
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.contacts, args.child, args.callgrind, args.uuid_ids, args.chunk)
        return
    if args.callgrind:
        with tempfile.TemporaryDirectory(prefix="ledger-ops-") as folder:
            url = args.postgres or f"sqlite:///{folder}/ledger.db"
            child(args.contacts, url, True, args.uuid_ids, args.chunk)
        return
    trees: list[tuple[str, Path | None]] = [("this checkout", None)]
    if args.against is not None:
        trees.append((args.against.name, args.against))
    backend = "PostgreSQL" if args.postgres else "SQLite"
    options = (["--uuid-ids"] if args.uuid_ids else []) + (["--chunk", str(args.chunk)] if args.chunk else [])
    shape = (", contact ids random UUIDs" if args.uuid_ids else "") + (
        f", planned {args.chunk:,} rows at a time" if args.chunk else ""
    )
    print(f"{args.contacts:,} email sends, {backend} ledger{shape}, {args.rounds} rounds (wall s / CPU s):")
    print(f"  {'':24} {'round':>5}  " + "  ".join(f"{phase:>15}" for phase in PHASES))
    results: dict[str, list[dict[str, list[float]]]] = {name: [] for name, _ in trees}
    for turn in range(args.rounds):
        for name, tree in trees if turn % 2 == 0 else trees[::-1]:
            figures = _round(args.contacts, args.postgres, tree, options)
            results[name].append(figures)
            cells = "  ".join(f"{figures[p][0]:6.2f} / {figures[p][1]:5.2f}" for p in PHASES)
            print(f"  {name:24} {turn + 1:5}  {cells}", flush=True)
    for name, rounds in results.items():
        cells = "  ".join(
            f"{statistics.median(r[p][0] for r in rounds):6.2f} / "
            f"{statistics.median(r[p][1] for r in rounds):5.2f}"
            for p in PHASES
        )
        print(f"  {name:24} {'med':>5}  {cells}")
    print(f"  load average when it ended: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
