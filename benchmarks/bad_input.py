"""The bad-input harness (tests/badinput/) for a fixed budget: wrong values for every parameter of every
`clarion` command, every setting of the README's tables, and wrong requests for every endpoint of
`clarion serve` and `clarion sandbox`; prints the inputs tried per target, the failures found, and the time.

    .venv/bin/python benchmarks/bad_input.py [--seconds 900] [--seed 17] [--only cli|settings|http]

A failure is a case that did not end in a clear message with exit 1 or 2 (HTTP: a 4xx), or printed or
logged a traceback, or wrote to the ledger, CLARION_HOME or the working folder. The first failing input
of each target is printed. `make test` runs the same cases, fewer of them and seeded
(tests/test_badinput.py); `make fuzz` runs this.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

BATCH = 5  # inputs per seeded batch; batches run until the target's share of the budget is spent


@dataclass
class Tally:
    kind: str
    target: str
    tried: int = 0
    failures: list[str] = field(default_factory=list)


def drive(
    tally: Tally, strategy: st.SearchStrategy[Any], check: Callable[[Any], list[str]], budget: float, rng: int
) -> None:
    """Draw inputs from `strategy` in seeded batches until `budget` seconds are spent; `check` lists what
    went wrong with one (an exception escaping it is a failure too)."""
    stop = time.monotonic() + budget

    def one(value: Any) -> None:
        tally.tried += 1
        try:
            problems = check(value)
        except Exception as exc:  # a 500 raised through the ASGI transport, a hang stopped by the alarm
            problems = [f"raised {type(exc).__name__}: {str(exc)[:200]}"]
        if problems:
            shown = repr(value)
            shown = shown if len(shown) < 200 else shown[:200] + "..."
            tally.failures.append(f"{shown}: {'; '.join(problems)[:600]}")

    batch = 0
    while time.monotonic() < stop:
        seed(rng * 1_000_003 + batch)(
            settings(
                max_examples=BATCH,
                deadline=None,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )(given(value=strategy)(one))
        )()
        batch += 1


@contextlib.contextmanager
def fresh_home(root: Path, name: str) -> Iterator[Path]:
    """A CLARION_HOME and working folder of the target's own, like each test gets."""
    work = root / name.replace(" ", "_").replace(":", "-").replace("/", "_")[:80]
    home = work / "home"
    home.mkdir(parents=True)
    os.environ["CLARION_HOME"] = str(home)
    previous = Path.cwd()
    os.chdir(work)
    try:
        yield work
    finally:
        os.chdir(previous)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=900.0, help="the whole budget (default 900)")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--only", choices=["cli", "settings", "http"])
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import logging

    logging.raiseExceptions = False  # Prefect's console handler may outlive a case's captured stream

    from tests.badinput import cli, environment
    from tests.badinput.world import CLEARED, endpoints, prepare, send, services
    from tests.conftest import TEST_SECRET, CampaignDir

    root = Path(tempfile.mkdtemp(prefix="clarion-bad-input-"))
    os.environ["CLARION_SECRET_KEY"] = TEST_SECRET
    os.environ.setdefault("PREFECT_HOME", str(root / "prefect"))
    for var in (*CLEARED, "CLARION_DATABASE_URL", "CLARION_REDIS_URL", "CLARION_SEND_POOL", "CLARION_SHARDS"):
        os.environ.pop(var, None)
    files = cli.Files(root / "cases")

    params = cli.parameters() if args.only in (None, "cli") else []
    variables = environment.variables() if args.only in (None, "settings") else []
    routes = endpoints() if args.only in (None, "http") else []
    count = len(params) + len(variables) + len(routes)
    share = args.seconds / max(count, 1)
    tallies: list[Tally] = []
    started = time.monotonic()

    for p in params:
        tally = Tally("command", f"clarion {p.id}")
        tallies.append(tally)
        with fresh_home(root, "cli-" + p.id) as work:
            world = prepare(work, files)

            def check_value(value: str, p: cli.Param = p, world: Any = world) -> list[str]:
                return cli.run_case(p, value, world.files, world.base, world.watched).problems

            drive(tally, cli.strategy_for(p), check_value, share, args.seed)

    for name in variables:
        tally = Tally("setting", name)
        tallies.append(tally)
        with fresh_home(root, "env-" + name) as work:
            world = prepare(work, files)

            def check_setting(value: str, name: str = name, world: Any = world) -> list[str]:
                from tests.badinput.state import snapshot

                value = world.files.resolve(value)
                before = snapshot(*world.watched)
                saved = os.environ.get(name)
                os.environ[name] = value
                try:
                    result = cli.invoke(["runs"])
                finally:
                    if saved is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = saved
                problems = []
                if result.exception is not None and not isinstance(result.exception, SystemExit):
                    problems.append(f"raised {type(result.exception).__name__}")
                if result.exit_code != 1 or name not in result.output or "Traceback" in result.output:
                    problems.append(f"exit {result.exit_code}: {result.output[-300:]!r}")
                problems += before.changes(snapshot(*world.watched))
                return problems

            drive(tally, environment.strategy_for(name), check_setting, share, args.seed)

    if routes:
        from tests.badinput import http

        with fresh_home(root, "http") as work, services(CampaignDir(work / "campaign")) as clients:
            home = Path(os.environ["CLARION_HOME"])
            for endpoint in routes:
                tally = Tally("endpoint", endpoint.id)
                tallies.append(tally)

                def check_request(request: http.Request, endpoint: http.Endpoint = endpoint) -> list[str]:
                    return send(clients[endpoint.service], request, endpoint, home).problems

                drive(tally, http.requests(endpoint), check_request, share, args.seed)

    elapsed = time.monotonic() - started
    report(tallies, elapsed, args)
    return 1 if any(t.failures for t in tallies) else 0


def report(tallies: list[Tally], elapsed: float, args: argparse.Namespace) -> None:
    width = max(len(t.target) for t in tallies)
    print(f"{'target':<{width}}  {'inputs':>7}  failures")
    for t in tallies:
        print(f"{t.target:<{width}}  {t.tried:>7,}  {len(t.failures)}")
    print()
    for kind in ("command", "setting", "endpoint"):
        mine = [t for t in tallies if t.kind == kind]
        if mine:
            tried = sum(t.tried for t in mine)
            failed = sum(len(t.failures) for t in mine)
            print(f"{kind}s: {len(mine)} targets, {tried:,} inputs tried, {failed} failures")
    total = sum(t.tried for t in tallies)
    failures = sum(len(t.failures) for t in tallies)
    print(
        f"all: {total:,} inputs in {elapsed:.0f} s ({total / max(elapsed, 1e-9):.1f}/s), {failures} failures "
        f"(budget {args.seconds:.0f} s, seed {args.seed}; a shared machine: times vary with its load)"
    )
    for t in tallies:
        for failure in t.failures[:3]:
            print(f"FAILED {t.target}: {failure}")


if __name__ == "__main__":
    raise SystemExit(main())
