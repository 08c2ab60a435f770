"""The send ledger's own cost for one email campaign, phase by phase: what the SDK loop never pays.

    .venv/bin/python benchmarks/ledger_ops.py                         # 100,000 sends, SQLite, 3 rounds
    .venv/bin/python benchmarks/ledger_ops.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python benchmarks/ledger_ops.py --against /tmp/base     # beside another checkout, interleaved
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \\
        .venv/bin/python benchmarks/ledger_ops.py --contacts 5000 --rounds 1 --callgrind

What `clarion run` asks of the ledger for N email recipients, through the Ledger's own API and nothing
else: the assignments and sends written at planning (5,000 a statement), then per batch of 5,000 the due
sends read and, per request of 1,000, the claim before the provider call and the settlement after (all
sent, one message id a request, as SendGrid answers). Each round runs in a child process of its own on a
fresh ledger (a new SQLite file, or a new PostgreSQL schema dropped afterwards); it prints wall and CPU
seconds (the child's own, user + system, so PostgreSQL's server work is not in CPU) per phase, then the
medians. With --against TREE the same from another checkout (a `git worktree` of an earlier commit, put
first on PYTHONPATH), the two interleaved in alternating order: the machine is shared and its speed moves
by tens of percent between runs, so only interleaved figures compare.

With --callgrind (under valgrind's callgrind) each phase is dumped on its own (`callgrind_control`), so the
instructions of each are in /tmp/cg.out.2 (assignments), .3 (sends), .4 (sending): a count that does not
move with the machine's speed, for changes too small to see on its clock.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from send_throughput import child_scratch_schema  # noqa: E402

PHASES = ("assignments", "plan sends", "sending")


def child(count: int, url: str, callgrind: bool) -> None:
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
    ids = [f"sup-{seq:07d}" for seq in range(count)]
    batch_of = [0 if seq < opening else 1 + (seq - opening) // batch for seq in range(count)]
    figures: dict[str, list[float]] = {}
    dump("start")
    wall, cpu = time.perf_counter(), time.process_time()

    def lap(name: str) -> None:
        nonlocal wall, cpu
        figures[name] = [time.perf_counter() - wall, time.process_time() - cpu]
        dump(name.replace(" ", "_"))
        wall, cpu = time.perf_counter(), time.process_time()

    ledger.add_assignments(run, [(seq, cid, "ab"[seq % 2]) for seq, cid in enumerate(ids)])
    lap(PHASES[0])
    ledger.plan_sends(
        run,
        [
            PlannedSend("email", "ab"[seq % 2], cid, cid, seq, batch_of[seq], None, f"{seq:032x}")
            for seq, cid in enumerate(ids)
        ],
    )
    lap(PHASES[1])
    sent = 0
    for number in sorted(set(batch_of)):
        due = ledger.due_in_batch(run, "email", number)
        for start in range(0, len(due), request):
            claimed = ledger.begin(run, "email", [row.recipient for row in due[start : start + request]])
            message_id = f"msg-{number}-{start}"
            sent += ledger.settle(
                run, "email", [Settlement(r, SendState.SENT, provider_id=message_id) for r in claimed]
            )
    lap(PHASES[2])
    if sent != count:
        raise SystemExit(f"settled {sent} of {count}")
    print(json.dumps(figures))


def _round(count: int, database: str | None, tree: Path | None) -> dict[str, list[float]]:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="ledger-ops-") as folder, child_scratch_schema(database) as url:
        ledger = url or f"sqlite:///{folder}/ledger.db"  # a scratch schema, or a fresh SQLite file
        out = subprocess.run(
            [sys.executable, __file__, "--child", ledger, "--contacts", str(count)],
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
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.contacts, args.child, args.callgrind)
        return
    if args.callgrind:
        with tempfile.TemporaryDirectory(prefix="ledger-ops-") as folder:
            child(args.contacts, args.postgres or f"sqlite:///{folder}/ledger.db", callgrind=True)
        return
    trees: list[tuple[str, Path | None]] = [("this checkout", None)]
    if args.against is not None:
        trees.append((args.against.name, args.against))
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(f"{args.contacts:,} email sends, {backend} ledger, {args.rounds} rounds (wall s / CPU s):")
    print(f"  {'':24} {'round':>5}  " + "  ".join(f"{phase:>15}" for phase in PHASES))
    results: dict[str, list[dict[str, list[float]]]] = {name: [] for name, _ in trees}
    for turn in range(args.rounds):
        for name, tree in trees if turn % 2 == 0 else trees[::-1]:
            figures = _round(args.contacts, args.postgres, tree)
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
